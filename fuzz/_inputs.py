"""How the targets turn fuzz bytes into what a peer sends: framed messages, and reads."""

from __future__ import annotations

from collections.abc import Iterator

from iii_protocol.strategies import OP_BINARY, OP_CONTINUATION, OP_PING, OP_TEXT, ws_frame

#: Between two messages of a framed payload.
SEPARATOR = b"\xff\xff"


def framed(payload: bytes, *, binary: bool, fragmented: bool) -> Iterator[bytes]:
    """Each ``SEPARATOR``-separated message of ``payload`` as unmasked frames
    (an engine's): one text frame (``binary``: binary), or (``fragmented``)
    three fragments with a ping between the first two."""
    opcode = OP_BINARY if binary else OP_TEXT
    for i, message in enumerate(payload.split(SEPARATOR)):
        if fragmented and len(message) >= 3:
            third = len(message) // 3
            parts = [message[:third], message[third : 2 * third], message[2 * third :]]
            yield ws_frame(parts[0], opcode=opcode, fin=False)
            yield ws_frame(b"p%d" % i, opcode=OP_PING)
            yield ws_frame(parts[1], opcode=OP_CONTINUATION, fin=False)
            yield ws_frame(parts[2], opcode=OP_CONTINUATION)
        else:
            yield ws_frame(message, opcode=opcode)


def reads(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` as successive socket reads of ``size`` bytes (0: one read)."""
    if size == 0:
        yield data
        return
    for i in range(0, len(data), size):
        yield data[i : i + size]
