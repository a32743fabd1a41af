"""The transcript: every message on every socket, both directions, as JSON lines.

Recording is one tuple append per message (the hot path pays nothing else);
entries are rendered to dictionaries only when somebody reads them.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Optional, Union

import anyio

from iii_protocol._json import JSONObject

from . import _jsonio as jsonio

__all__ = ["Transcript"]

#: Binary payloads longer than this are rendered by size only.
_BINARY_PREVIEW = 4096

Payload = Union[str, bytes, None]
#: (wall time, connection label, "in"/"out", kind, payload)
Entry = tuple[float, str, str, str, Payload]


class Transcript:
    """An append-only log of socket traffic.

    ``kind`` is ``text`` or ``binary`` for messages, ``open``/``close`` for
    connection lifecycle (payload: route or reason), ``ping``/``pong`` for
    WebSocket control frames and ``raw`` for bytes injected by a test.
    """

    __slots__ = ("_changed", "entries", "max_entries")

    def __init__(self, max_entries: Optional[int] = None) -> None:
        self.entries: list[Entry] = []
        self.max_entries = max_entries
        self._changed: Optional[anyio.Event] = None

    def record(self, conn: str, direction: str, kind: str, payload: Payload) -> None:
        entries = self.entries
        entries.append((time.time(), conn, direction, kind, payload))
        if self.max_entries is not None and len(entries) > self.max_entries:
            del entries[: len(entries) - self.max_entries]
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def changed(self) -> anyio.Event:
        """An event set at the next append (for waiters)."""
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    def clear(self) -> None:
        self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)

    @staticmethod
    def render(entry: Entry) -> JSONObject:
        ts, conn, direction, kind, payload = entry
        out: JSONObject = {"ts": ts, "conn": conn, "dir": direction, "kind": kind}
        if isinstance(payload, bytes) and kind == "text":
            payload = payload.decode("utf-8", "replace")
        if isinstance(payload, str):
            if kind == "text":
                try:
                    out["frame"] = jsonio.loads(payload)
                except ValueError:
                    out["text"] = payload
            else:
                out["info"] = payload
        elif isinstance(payload, bytes):
            out["size"] = len(payload)
            if len(payload) <= _BINARY_PREVIEW:
                out["base64"] = base64.b64encode(payload).decode()
        return out

    def iter_rendered(self, start: int = 0) -> Iterator[JSONObject]:
        for entry in self.entries[start:]:
            yield self.render(entry)

    def jsonl(self) -> str:
        return "".join(jsonio.dumps_line(e) for e in self.iter_rendered())
