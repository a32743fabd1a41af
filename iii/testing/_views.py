"""Views of a running engine: introspection, the transcript, and waits.

``Views`` and ``Waits`` are parts of the ``Engine`` handle.  They read the
current run's registries (``EngineCore``) and the transcript; they change
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import anyio

from iii_protocol._json import JSON, JSONObject

from ._core import EngineCore
from ._records import Worker
from ._server import Server
from ._transcript import Transcript
from ._workers.channels import Channels
from ._workers.pubsub import PubSub
from ._workers.queue import MemoryQueue

__all__ = ["Views", "Waits", "describe_worker"]


def describe_worker(w: Worker) -> JSONObject:
    return {
        "worker_id": w.worker_id,
        "name": w.name,
        "namespace": w.namespace,
        "announced": w.announced,
        "runtime": w.runtime,
        "version": w.version,
        "pid": w.pid,
        "description": w.description,
        "listener": w.listener,
        "ip_address": w.remote_ip,
        "connected_at_ms": w.connected_at_ms,
        "functions": list[JSON](
            sorted(f"{ns}/{fid}" if ns != "default" else fid for ns, fid in w.functions)
        ),
        "trigger_types": list[JSON](sorted(t for _, t in w.trigger_types)),
        "bindings": list[JSON](sorted(w.bindings)),
    }


class Views:
    """Introspection and the transcript (a part of ``Engine``)."""

    _server: Server
    _transcript: Optional[Transcript]

    @property
    def core(self) -> EngineCore:
        """The current run's registries (advanced use; replaced by ``restart``)."""
        core = self._server.core
        if core is None:
            raise RuntimeError("the engine is not running")
        return core

    # -- introspection ---------------------------------------------------------------

    def workers(self) -> list[JSONObject]:
        """Connected workers: ids, announce metadata, namespace, functions."""
        return [describe_worker(w) for w in self.core.iter_workers()]

    def worker(self, name_or_id: str) -> JSONObject:
        """One connected worker by announced name or id (``KeyError`` if none)."""
        for w in self.core.iter_workers():
            if w.worker_id == name_or_id or w.name == name_or_id:
                return describe_worker(w)
        raise KeyError(name_or_id)

    def functions(self, namespace: Optional[str] = None) -> list[JSONObject]:
        """Registered functions (all, or one ``namespace``'s), sorted by namespace and id."""
        return [
            {
                "function_id": e.id,
                "namespace": e.namespace,
                "worker_id": e.owner.worker_id,
                "description": e.description,
                "metadata": e.metadata,
                "http": e.http is not None,
            }
            for e in sorted(self.core.functions.values(), key=lambda e: (e.namespace, e.id))
            if namespace is None or e.namespace == namespace
        ]

    def trigger_types(self) -> list[JSONObject]:
        """Registered trigger types: the engine's own and the workers'."""
        return [
            {
                "id": e.id,
                "namespace": e.namespace,
                "description": e.description,
                "provider": e.provider.worker_id if e.provider is not None else None,
            }
            for e in self.core.trigger_types.values()
        ]

    def bindings(self) -> list[JSONObject]:
        """Trigger bindings: owner, provider, config, and whether parked or acknowledged."""
        out: list[JSONObject] = []
        for b in self.core.bindings.values():
            provider = b.provider
            if provider is None:
                where: Optional[str] = None
            else:
                where = provider.provider.worker_id if provider.provider is not None else "engine"
            out.append(
                {
                    "id": b.id,
                    "trigger_type": b.trigger_type,
                    "function_id": b.function_id,
                    "namespace": b.namespace,
                    "config": b.config,
                    "metadata": b.metadata,
                    "owner": b.owner.worker_id if b.owner is not None else None,
                    "provider": where,
                    "parked": provider is None,
                    "acked": b.acked,
                }
            )
        return out

    def pending_invocations(self) -> list[JSONObject]:
        """Invocations the engine routed and has no answer for yet."""
        return [
            {
                "invocation_id": inv_id,
                "function_id": p.function_id,
                "caller": p.caller.worker_id if p.caller is not None else None,
                "handler": p.handler.worker_id if p.handler is not None else None,
            }
            for inv_id, p in self.core.pending.items()
        ]

    def channels(self) -> list[JSONObject]:
        """Open data channels and their ends."""
        module = self.core.module("channels")
        return module.describe() if isinstance(module, Channels) else []

    def queue_stats(self) -> JSONObject:
        """The queue module's counters: ``queued``, ``in_flight``, ``retrying``,
        ``delivered``, ``failed``, ``dead_letters``, each named queue's settings and
        counts (``queues``), the durable subscriptions (``topics``)."""
        module = self.core.module("queue")
        return module.stats() if isinstance(module, MemoryQueue) else {"enabled": False}

    def dead_letters(self) -> list[JSONObject]:
        """Every dead-lettered job, oldest first: ``queue`` (or topic), ``kind``,
        ``id``, ``function_id``, ``namespace``, ``data``, ``messageReceiptId``,
        ``attempts``, ``error`` (the last failure), ``reason``, ``failed_at_ms``."""
        module = self.core.module("queue")
        return module.dead_letters() if isinstance(module, MemoryQueue) else []

    def pubsub_stats(self) -> JSONObject:
        """The pubsub module's counters: ``published``, ``deliveries`` (subscriber
        calls made), ``topics`` (subscriptions per topic)."""
        module = self.core.module("pubsub")
        return module.stats() if isinstance(module, PubSub) else {"enabled": False}

    def stats(self) -> JSONObject:
        """Counters: workers, functions, pending calls, bad frames, connections, transcript."""
        core = self.core
        transcript = self._transcript
        return {
            "workers": len(core.workers),
            "functions": len(core.functions),
            "pending_invocations": len(core.pending),
            "bad_frames": core.bad_frames,
            "telemetry_frames": core.telemetry_frames,
            "connections": len(self._server.conns),
            "generation": self._server.generation,
            "transcript_entries": len(transcript) if transcript is not None else 0,
            "transcript_discarded": transcript.discarded if transcript is not None else 0,
        }

    # -- transcript ------------------------------------------------------------------

    @property
    def transcript_limit(self) -> Optional[int]:
        """How many transcript entries are kept (None: all; also None without a transcript)."""
        return self._transcript.limit if self._transcript is not None else None

    def _need_transcript(self) -> Transcript:
        if self._transcript is None:
            raise RuntimeError("this engine was started with transcript=False")
        return self._transcript

    def transcript(self) -> list[JSONObject]:
        """Every kept entry: ``{ts, conn, dir, kind, frame|text|info|size}``."""
        return list(self._need_transcript().iter_rendered())

    def transcript_jsonl(self) -> str:
        """The transcript as JSON lines."""
        return self._need_transcript().jsonl()

    def dump_transcript(self, path: str) -> None:
        """Write the transcript to ``path`` as JSON lines."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.transcript_jsonl())

    def clear_transcript(self) -> None:
        """Forget every transcript entry kept so far."""
        self._need_transcript().clear()

    def frames(
        self,
        worker_id: Optional[str] = None,
        *,
        direction: Optional[str] = None,
        type: Optional[str] = None,
    ) -> list[JSONObject]:
        """Protocol frames from the transcript (parsed JSON objects), filtered.

        ``direction`` is ``"in"`` (worker to engine) or ``"out"``.
        """
        out: list[JSONObject] = []
        for entry in self._need_transcript().entries:
            _, conn, dirn, kind, payload = entry
            if kind not in ("text", "binary") or payload is None:
                continue
            if worker_id is not None and conn != worker_id:
                continue
            if direction is not None and dirn != direction:
                continue
            rendered = Transcript.render(entry)
            frame = rendered.get("frame")
            if not isinstance(frame, dict):
                continue
            if type is not None and frame.get("type") != type:
                continue
            out.append(frame)
        return out


class Waits(Views):
    """Waiting for the engine to reach a state (a part of ``Engine``)."""

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every registry or
        transcript change); returns its value.  Raises ``TimeoutError``."""
        with anyio.move_on_after(timeout):
            while True:
                value = predicate()
                if value:
                    return value
                events = [self.core.changed()]
                if self._transcript is not None:
                    events.append(self._transcript.changed())
                await _first(events, 0.5)
        value = predicate()
        if value:
            return value
        raise TimeoutError(f"condition not met within {timeout}s")

    async def wait_for_worker(
        self,
        name: Optional[str] = None,
        *,
        namespace: Optional[str] = None,
        announced: bool = True,
        timeout: float = 5.0,
    ) -> JSONObject:
        """Wait for a connected worker (by announced name, or any) and return it."""

        def find() -> Optional[JSONObject]:
            for w in self.core.iter_workers():
                if announced and not w.announced:
                    continue
                if name is not None and w.name != name:
                    continue
                if namespace is not None and w.namespace != namespace:
                    continue
                return describe_worker(w)
            return None

        result: JSONObject = await self.wait_for(find, timeout)
        return result

    async def wait_for_function(
        self, function_id: str, namespace: str = "default", *, timeout: float = 5.0
    ) -> JSONObject:
        def find() -> Optional[JSONObject]:
            entry = self.core.functions.get((namespace, function_id))
            if entry is None:
                return None
            return {
                "function_id": entry.id,
                "namespace": namespace,
                "worker_id": entry.owner.worker_id,
            }

        result: JSONObject = await self.wait_for(find, timeout)
        return result

    async def wait_for_trigger_type(
        self, type_id: str, namespace: str = "default", *, timeout: float = 5.0
    ) -> JSONObject:
        def find() -> Optional[JSONObject]:
            for e in self.trigger_types():
                if e["id"] == type_id and e["namespace"] == namespace:
                    return e
            return None

        result: JSONObject = await self.wait_for(find, timeout)
        return result

    async def wait_for_binding(
        self, binding_id: str, *, acked: bool = False, timeout: float = 5.0
    ) -> JSONObject:
        def find() -> Optional[JSONObject]:
            for b in self.bindings():
                if b["id"] == binding_id and (not acked or b["acked"]):
                    return b
            return None

        result: JSONObject = await self.wait_for(find, timeout)
        return result

    async def wait_for_frame(
        self,
        type: Optional[str] = None,
        *,
        worker_id: Optional[str] = None,
        direction: Optional[str] = None,
        where: Optional[Callable[[JSONObject], bool]] = None,
        count: int = 1,
        timeout: float = 5.0,
    ) -> JSONObject:
        """Wait until the transcript holds ``count`` matching frames; return the last."""

        def find() -> Optional[JSONObject]:
            frames = [
                f
                for f in self.frames(worker_id, direction=direction, type=type)
                if where is None or where(f)
            ]
            return frames[count - 1] if len(frames) >= count else None

        result: JSONObject = await self.wait_for(find, timeout)
        return result


async def _first(events: list[anyio.Event], timeout: float) -> None:
    """Wait until one of ``events`` is set (or ``timeout``)."""
    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as tg:

            async def wait(event: anyio.Event) -> None:
                await event.wait()
                tg.cancel_scope.cancel()

            for event in events:
                tg.start_soon(wait, event)
