"""The transcript: the messages on every socket, both directions, as JSON lines.

Recording is one tuple append per message (the hot path pays nothing else);
entries are rendered to dictionaries only when somebody reads them.
"""

from __future__ import annotations

import base64
import itertools
import time
from collections import deque
from collections.abc import Iterator
from typing import Optional, Union

import anyio

from iii_protocol._json import JSONObject

from . import _jsonio as jsonio

__all__ = ["DEFAULT_TRANSCRIPT_LIMIT", "Transcript"]

#: Binary payloads longer than this are rendered by size only.
_BINARY_PREVIEW = 4096

Payload = Union[str, bytes, None]
#: (wall time, connection label, "in"/"out", kind, payload)
Entry = tuple[float, str, str, str, Payload]


#: Entries kept by default: the last ten thousand (``transcript_limit``).
DEFAULT_TRANSCRIPT_LIMIT = 10_000


class Transcript:
    """A log of socket traffic: a ring of the last ``limit`` entries.

    ``limit=None`` keeps everything (memory then grows with the traffic).
    ``recorded`` counts every entry ever appended, ``discarded`` those the ring
    let go.

    ``kind`` is ``text`` or ``binary`` for messages, ``open``/``close``/``end``
    for connection lifecycle (payload: route or reason), ``ping``/``pong`` for
    WebSocket control frames, ``raw`` for bytes injected by a test and
    ``dropped`` for a frame the engine received and refused (payload: why).
    """

    __slots__ = ("_changed", "entries", "limit", "recorded")

    def __init__(self, limit: Optional[int] = DEFAULT_TRANSCRIPT_LIMIT) -> None:
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ValueError(f"transcript_limit must be a positive int or None, not {limit!r}")
        self.entries: deque[Entry] = deque(maxlen=limit)
        self.limit = limit
        self.recorded = 0
        self._changed: Optional[anyio.Event] = None

    def record(self, conn: str, direction: str, kind: str, payload: Payload) -> None:
        self.entries.append((time.time(), conn, direction, kind, payload))
        self.recorded += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    @property
    def discarded(self) -> int:
        return self.recorded - len(self.entries)

    def changed(self) -> anyio.Event:
        """An event set at the next append (for waiters)."""
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    def clear(self) -> None:
        self.entries.clear()
        self.recorded = 0

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
        for entry in itertools.islice(self.entries, start, None):
            yield self.render(entry)

    def jsonl(self) -> str:
        return "".join(jsonio.dumps_line(e) for e in self.iter_rendered())
