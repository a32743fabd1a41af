"""Fuzz the frame decoder: ``decode_frame`` on arbitrary bytes.

Invariant: every input decodes to a known frame or an ``UnknownFrame``, or
raises ``RemoteProtocolError``; nothing else.  Reading the same input as
``bytes``, ``str`` (when it is UTF-8), ``bytearray`` or ``memoryview`` gives the
same answer.  A decoded frame encodes back (or, when a payload is nested
beyond what can be written, raises ``PayloadError``) and decodes to an equal
frame: whatever we accept, we can forward.

    python fuzz/fuzz_decode.py -max_total_time=60
"""

from __future__ import annotations

import attrs

from iii_protocol import (
    KNOWN_FRAMES,
    PayloadError,
    RemoteProtocolError,
    UnknownFrame,
    decode_frame,
    encode_frame,
)

_FRAME_CLASSES = (*KNOWN_FRAMES, UnknownFrame)


def _outcome(raw: object) -> object:
    try:
        frame = decode_frame(raw)  # type: ignore[arg-type]
    except RemoteProtocolError as exc:
        assert str(exc), "a protocol error says what was wrong"
        assert exc.frame_type is None or isinstance(exc.frame_type, str)
        assert exc.close_code is None, "a bad frame is skipped, not a reason to close"
        return ("error", exc.frame_type)
    assert isinstance(frame, _FRAME_CLASSES), type(frame)
    return frame


def _same(a: object, b: object) -> bool:
    """``a == b`` (and the same types) without recursion: a payload may nest
    deeper (``MAX_READ_DEPTH``) than ``==`` can compare within Python's stack."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if attrs.has(type(x)):
            names = [f.name for f in attrs.fields(type(x))]  # type: ignore[arg-type]
            stack.extend((getattr(x, name), getattr(y, name)) for name in names)
        elif isinstance(x, dict):
            if x.keys() != y.keys():  # type: ignore[attr-defined]
                return False
            stack.extend((x[k], y[k]) for k in x)  # type: ignore[index]
        elif isinstance(x, (list, tuple)):
            if len(x) != len(y):  # type: ignore[arg-type]
                return False
            stack.extend(zip(x, y, strict=True))  # type: ignore[call-overload]
        elif x != y:
            return False
    return True


def TestOneInput(data: bytes) -> None:
    first = _outcome(data)
    assert _same(_outcome(bytearray(data)), first)
    assert _same(_outcome(memoryview(data)), first)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        assert isinstance(first, tuple), f"invalid UTF-8 accepted: {first!r}"
    else:
        assert _same(_outcome(text), first)
    if isinstance(first, tuple):
        return
    try:
        encoded = encode_frame(first)  # type: ignore[arg-type]
    except PayloadError:
        return  # nested deeper than the writer goes (documented)
    again = decode_frame(encoded)
    assert again == first, (first, again)
    assert encode_frame(again) == encoded


if __name__ == "__main__":
    from _harness import main

    main("decode", TestOneInput, ("iii_protocol", "cattrs"))
