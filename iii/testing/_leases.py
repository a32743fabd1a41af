"""Leases: live connections, their namespaces and their names (sections 4.1, 4.3, 4.5).

A connection holds its worker id (and reattach token) while it lives, its
namespace once announced (or once the grace period ran out), and its name in
that namespace while nobody else holds it.  Registrations a connection sends
before its namespace is known wait in its backlog.  Nothing here sends a
frame: the core acts on what these methods answer.
"""

from __future__ import annotations

import logging
from typing import Optional

from iii_protocol import Reattach
from iii_protocol._json import JSONObject

from ._records import DEFAULT, BuiltinError, Worker, canonical_uuid, sanitize_text

__all__ = ["BACKLOG_LIMIT", "Leases"]

log = logging.getLogger("iii.testing")

#: Registrations buffered before the namespace is known; past this the reader
#: pauses until the namespace resolves (announce or grace timer).
BACKLOG_LIMIT = 65536


class Leases:
    """The live connections of one engine run, and the names they hold."""

    def __init__(self) -> None:
        self.workers: dict[str, Worker] = {}
        self.names: dict[tuple[str, str], Worker] = {}

    def add(self, w: Worker) -> None:
        self.workers[w.worker_id] = w

    def release(self, w: Worker) -> None:
        """``w`` is gone: its worker id and name are free again."""
        if self.workers.get(w.worker_id) is w:
            del self.workers[w.worker_id]
        w.backlog = []
        if w.resolved is not None:
            w.resolved.set()
        if w.name is not None and w.namespace is not None:
            key = (w.namespace, w.name)
            if self.names.get(key) is w:
                del self.names[key]

    def fix_namespace(self, w: Worker, ns: str) -> bool:
        """Bind ``w`` to ``ns`` (once); True when that happened now."""
        if w.namespace is None:
            w.namespace = ns
            return True
        if w.namespace != ns:
            log.warning(
                "worker %s announced namespace %r but is already bound to %r",
                w.worker_id,
                ns,
                w.namespace,
            )
        return False

    def drain(self, w: Worker) -> None:
        """Apply the registrations ``w`` sent before its namespace was known."""
        backlog, w.backlog = w.backlog, []
        for apply, frame in backlog:
            if w.closing:
                break
            apply(w, frame)
        if w.resolved is not None:
            w.resolved.set()

    def read_announce(self, w: Worker, fields: JSONObject) -> tuple[str, Optional[str]]:
        """Take the announce's metadata into ``w``; returns (namespace, name).

        Raises:
            BuiltinError: a blank namespace.
        """
        declared = fields.get("namespace")
        if isinstance(declared, str) and not declared.strip():
            raise BuiltinError("INVALID_NAMESPACE", "namespace must not be blank")
        runtime = fields.get("runtime")
        w.runtime = runtime if isinstance(runtime, str) else "unknown"
        version, os_name, isolation = (fields.get(k) for k in ("version", "os", "isolation"))
        w.version = version if isinstance(version, str) else None
        w.os = os_name if isinstance(os_name, str) else None
        w.isolation = isolation if isinstance(isolation, str) else None
        description = fields.get("description")
        w.description = sanitize_text(description if isinstance(description, str) else None)
        pid = fields.get("pid")
        w.pid = pid if isinstance(pid, int) else None
        w.telemetry = fields.get("telemetry")
        features = fields.get("features")
        w.features = (
            [x for x in features if isinstance(x, str)] if isinstance(features, list) else None
        )
        w.announced = True
        raw_name = fields.get("name")
        name = sanitize_text(raw_name if isinstance(raw_name, str) else None)
        return (declared if isinstance(declared, str) else DEFAULT), name

    def claim_name(self, w: Worker, name: str) -> Optional[Worker]:
        """Give ``w`` the name ``name`` in its namespace; returns the live holder
        that keeps it instead (the claim then failed)."""
        assert w.namespace is not None
        key = (w.namespace, name)
        holder = self.names.get(key)
        if holder is not None and holder is not w and not holder.closing:
            log.warning(
                "worker %s: name %r in namespace %r is held by %s; rejecting",
                w.worker_id,
                name,
                w.namespace,
                holder.worker_id,
            )
            return holder
        if w.name is not None and w.name != name:
            old = (w.namespace, w.name)
            if self.names.get(old) is w:
                del self.names[old]
        self.names[key] = w
        w.name = name
        return None

    def reattached(self, w: Worker, f: Reattach) -> Optional[Worker]:
        """The previous connection ``w``'s ``reattach`` names, when the token proves it."""
        previous = canonical_uuid(f.previous_worker_id)
        if previous is None or previous == w.worker_id:
            return None
        old = self.workers.get(previous)
        if old is None:
            log.info("reattach from %s: previous worker %s is unknown", w.worker_id, previous)
            return None
        if f.reattach_token is None or f.reattach_token != old.reattach_token:
            log.warning(
                "reattach from %s: wrong token for worker %s; ignored", w.worker_id, previous
            )
            return None
        log.info("reattach: worker %s evicts its previous connection %s", w.worker_id, previous)
        return old
