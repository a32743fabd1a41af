"""Hypothesis strategies for iii protocol conformance testing.

Use them to test *your* engine or client against the protocol: valid frames of
every type, their JSON text, and hostile input (truncated, oversized, invalid
UTF-8, wrong types, unknown types, fragmented WebSocket messages with control
frames in between, broken WebSocket framing).  They need ``hypothesis``
(``pip install 'iii-sdk[hypothesis]'``; importing this module without it raises
``ModuleNotFoundError`` saying so); ``import iii_protocol`` does not import it.

Three layers, each built on the one before:

* **frames**: ``frames`` (any frame), ``frames_of(*classes)``, ``engine_frames``
  (what an engine may send a worker), ``worker_frames`` (what a worker may send
  an engine), and the nested values they are made of (``json_values()``,
  ``error_bodies``, ``formats``, ...).  ``decode_frame(encode_frame(f)) == f``
  holds for every frame drawn.
* **JSON text**: ``frame_texts()`` (valid), ``hostile_frame_texts()`` (valid
  JSON of the wrong shape, truncated text, unknown types, deep nesting, wide
  integers...) and ``hostile_payloads()`` (the same as bytes, plus invalid
  UTF-8).  A conforming peer answers each with a frame or a protocol error.
* **WebSocket bytes**: ``ws_frame()`` builds one RFC 6455 frame;
  ``ws_messages()`` fragments a message and interleaves control frames;
  ``hostile_ws_frames()`` breaks the framing; ``ws_streams()`` mixes all of
  it into the bytes one side of a socket sends after the handshake.
  ``masked=True`` for client (worker) to server (engine) bytes.
  ``upgrade_requests()`` and ``handshake_responses()`` cover the HTTP upgrade;
  ``chunked()`` splits any bytes at arbitrary read boundaries.

Example (a property test of your own decoder)::

    from hypothesis import given
    from iii_protocol import strategies as iii_st

    @given(iii_st.hostile_payloads())
    def test_my_decoder(raw: bytes) -> None:
        try:
            my_decode(raw)
        except MyProtocolError:
            pass  # the only exception allowed
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Sequence
from typing import Any, Optional, Union

try:
    from hypothesis import strategies as st
except ModuleNotFoundError as exc:  # hypothesis is an extra: say which one
    if exc.name is None or exc.name.partition(".")[0] != "hypothesis":
        raise
    raise ModuleNotFoundError(
        "iii_protocol.strategies needs hypothesis: pip install 'iii-sdk[hypothesis]'",
        name="hypothesis",
    ) from exc

from ._codec import encode_frame, to_json_value
from ._frames import (
    KNOWN_FRAMES,
    ErrorBody,
    ErrorFrame,
    Frame,
    HttpAuthApiKey,
    HttpAuthBearer,
    HttpAuthHmac,
    HttpInvocationRef,
    InvocationResult,
    InvokeFunction,
    Ping,
    Pong,
    Reattach,
    RegisterFunction,
    RegisterFunctionFormat,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    StreamChannelRef,
    TriggerActionEnqueue,
    TriggerActionVoid,
    TriggerRegistrationResult,
    UnknownFrame,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    WorkerRegistered,
)
from ._json import JSON, dumps

__all__ = [
    "ENGINE_TO_WORKER",
    "FIELDS",
    "FRAME_STRATEGIES",
    "KNOWN_TYPES",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "WORKER_TO_ENGINE",
    "AnyFrame",
    "accept_key",
    "chunked",
    "deep_json_texts",
    "engine_frames",
    "error_bodies",
    "formats",
    "frame_texts",
    "frames",
    "frames_of",
    "fuzzed_frame_objects",
    "handshake_responses",
    "hostile_frame_texts",
    "hostile_payloads",
    "hostile_ws_frames",
    "http_auths",
    "http_invocations",
    "invalid_utf8",
    "json_objects",
    "json_scalars",
    "json_values",
    "mutated_frame_objects",
    "stream_refs",
    "texts",
    "trigger_actions",
    "unknown_frames",
    "unknown_types",
    "upgrade_requests",
    "worker_frames",
    "ws_close_payload",
    "ws_frame",
    "ws_messages",
    "ws_streams",
]

#: A decoded frame: one of the known frame classes, or ``UnknownFrame``.
AnyFrame = Union[Frame, UnknownFrame]

#: The ``type`` tag of every frame class this library knows.
KNOWN_TYPES: frozenset[str] = frozenset(cls.TYPE for cls in KNOWN_FRAMES)

#: Frames an engine sends a worker (docs/protocol.md#frames).
ENGINE_TO_WORKER: tuple[type[Any], ...] = (
    WorkerRegistered,
    RegistrationRejected,
    RegisterTrigger,
    UnregisterTrigger,
    TriggerRegistrationResult,
    InvokeFunction,
    InvocationResult,
    Ping,
    Pong,
    ErrorFrame,
)

#: Frames a worker sends an engine (docs/protocol.md#frames).
WORKER_TO_ENGINE: tuple[type[Any], ...] = (
    RegisterFunction,
    UnregisterFunction,
    RegisterTriggerType,
    UnregisterTriggerType,
    RegisterTrigger,
    UnregisterTrigger,
    TriggerRegistrationResult,
    InvokeFunction,
    InvocationResult,
    RegisterService,
    Ping,
    Pong,
    Reattach,
)

# -- JSON data ---------------------------------------------------------------------

#: Short strings (any code point but lone surrogates).
texts: st.SearchStrategy[str] = st.text(max_size=12)
_opt_texts: st.SearchStrategy[Optional[str]] = st.none() | texts

#: JSON scalars; integers are unbounded (wider than 64 bits is valid JSON).
json_scalars: st.SearchStrategy[JSON] = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)


def json_values(max_leaves: int = 8) -> st.SearchStrategy[JSON]:
    """Any strict JSON value (no NaN/Infinity, no lone surrogates)."""
    return st.recursive(
        json_scalars,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=6), children, max_size=3)
        ),
        max_leaves=max_leaves,
    )


#: JSON objects with arbitrary values.
json_objects: st.SearchStrategy[dict[str, JSON]] = st.dictionaries(
    st.text(max_size=6), json_values(), max_size=4
)

# -- nested values -----------------------------------------------------------------

#: Error objects (``code``, ``message``, optional ``stacktrace``).
error_bodies: st.SearchStrategy[ErrorBody] = st.builds(
    ErrorBody, code=texts, message=texts, stacktrace=_opt_texts
)
#: ``void`` and ``enqueue`` call actions.
trigger_actions: st.SearchStrategy[Union[TriggerActionVoid, TriggerActionEnqueue]] = st.builds(
    TriggerActionVoid
) | st.builds(TriggerActionEnqueue, queue=texts)
#: The auth descriptions of an HTTP-invoked function.
http_auths: st.SearchStrategy[Union[HttpAuthBearer, HttpAuthHmac, HttpAuthApiKey]] = (
    st.builds(HttpAuthBearer, token_key=texts)
    | st.builds(HttpAuthHmac, secret_key=texts)
    | st.builds(HttpAuthApiKey, header=texts, value_key=texts)
)
#: HTTP-invoked function descriptions (``registerfunction.invocation``).
http_invocations: st.SearchStrategy[HttpInvocationRef] = st.builds(
    HttpInvocationRef,
    url=texts,
    method=_opt_texts,
    timeout_ms=st.none() | st.integers(min_value=0, max_value=2**40),
    headers=st.none() | st.dictionaries(texts, texts, max_size=3),
    auth=st.none() | http_auths,
)
_format_types = st.sampled_from(["object", "array", "string", "number", "boolean"])
#: ``RegisterFunctionFormat`` trees (the SDK's request/response format objects).
formats: st.SearchStrategy[RegisterFunctionFormat] = st.recursive(
    st.builds(
        RegisterFunctionFormat,
        type=_format_types,
        name=_opt_texts,
        description=_opt_texts,
        required=st.booleans(),
    ),
    lambda children: st.builds(
        RegisterFunctionFormat,
        type=_format_types,
        name=_opt_texts,
        description=_opt_texts,
        body=st.none() | st.lists(children, max_size=2),
        items=st.none() | children,
        required=st.booleans(),
    ),
    max_leaves=6,
)
#: Channel refs of either direction.
stream_refs: st.SearchStrategy[StreamChannelRef] = st.builds(
    StreamChannelRef,
    channel_id=texts,
    access_key=texts,
    direction=st.sampled_from(["read", "write"]),
)

# -- frames ------------------------------------------------------------------------

_opt_json = json_values()

#: One strategy per frame class (``UnknownFrame`` included).
FRAME_STRATEGIES: dict[type[Any], st.SearchStrategy[Any]] = {
    WorkerRegistered: st.builds(
        WorkerRegistered,
        worker_id=texts,
        reattach_token=_opt_texts,
        features=st.none() | st.lists(texts, max_size=3),
    ),
    RegistrationRejected: st.builds(
        RegistrationRejected,
        code=st.sampled_from(["WORKER_NAMESPACE_CONFLICT", "FUNCTION_NAMESPACE_CONFLICT"]) | texts,
        namespace=texts,
        owner_worker_id=texts,
        worker_name=_opt_texts,
        function_id=_opt_texts,
    ),
    RegisterFunction: st.builds(
        RegisterFunction,
        id=texts,
        description=_opt_texts,
        request_format=_opt_json | formats.map(to_json_value),
        response_format=_opt_json,
        metadata=_opt_json,
        invocation=st.none() | http_invocations,
        observe=_opt_json,
    ),
    UnregisterFunction: st.builds(UnregisterFunction, id=texts),
    RegisterTriggerType: st.builds(
        RegisterTriggerType,
        id=texts,
        description=texts,
        trigger_request_format=_opt_json,
        call_request_format=_opt_json,
        namespace=_opt_texts,
    ),
    UnregisterTriggerType: st.builds(UnregisterTriggerType, id=texts, namespace=_opt_texts),
    RegisterTrigger: st.builds(
        RegisterTrigger,
        id=texts,
        trigger_type=texts,
        function_id=texts,
        config=_opt_json,
        metadata=_opt_json,
        namespace=_opt_texts,
        trigger_namespace=_opt_texts,
    ),
    UnregisterTrigger: st.builds(UnregisterTrigger, id=texts, trigger_type=_opt_texts),
    TriggerRegistrationResult: st.builds(
        TriggerRegistrationResult,
        id=texts,
        trigger_type=texts,
        function_id=texts,
        error=st.none() | error_bodies,
    ),
    InvokeFunction: st.builds(
        InvokeFunction,
        function_id=texts,
        data=_opt_json,
        invocation_id=_opt_texts,
        traceparent=_opt_texts,
        baggage=_opt_texts,
        action=st.none() | trigger_actions,
        metadata=_opt_json,
        namespace=_opt_texts,
        caller=_opt_json,
        observe_depth=st.none() | st.integers(min_value=0, max_value=2**31),
        activation=_opt_json,
    ),
    InvocationResult: st.builds(
        InvocationResult,
        invocation_id=texts,
        function_id=texts,
        result=_opt_json,
        error=st.none() | error_bodies,
        traceparent=_opt_texts,
        baggage=_opt_texts,
    ),
    RegisterService: st.builds(
        RegisterService,
        id=texts,
        name=_opt_texts,
        description=_opt_texts,
        parent_service_id=_opt_texts,
    ),
    Ping: st.just(Ping()),
    Pong: st.just(Pong()),
    Reattach: st.builds(Reattach, previous_worker_id=texts, reattach_token=_opt_texts),
    ErrorFrame: st.builds(ErrorFrame, error=error_bodies),
}

#: ``type`` tags this library does not know (newer engines add some).
unknown_types: st.SearchStrategy[str] = st.text(min_size=1, max_size=16).filter(
    lambda t: t not in KNOWN_TYPES
)


@st.composite
def unknown_frames(draw: st.DrawFn) -> UnknownFrame:
    """A JSON object with an unknown ``type``, as ``decode_frame`` returns it."""
    tag = draw(unknown_types)
    raw = draw(json_objects)
    raw["type"] = tag
    return UnknownFrame(type=tag, raw=raw)


FRAME_STRATEGIES[UnknownFrame] = unknown_frames()


def frames_of(*classes: type[Any]) -> st.SearchStrategy[AnyFrame]:
    """Frames of the given classes (``UnknownFrame`` allowed)."""
    if not classes:
        raise ValueError("frames_of() needs at least one frame class")
    return st.one_of(*(FRAME_STRATEGIES[cls] for cls in classes))


#: Any frame, known or not.
frames: st.SearchStrategy[AnyFrame] = st.one_of(*FRAME_STRATEGIES.values())
#: Frames an engine may send (plus unknown ones, which a worker must tolerate).
engine_frames: st.SearchStrategy[AnyFrame] = frames_of(*ENGINE_TO_WORKER, UnknownFrame)
#: Frames a worker may send (plus unknown ones, which an engine must tolerate).
worker_frames: st.SearchStrategy[AnyFrame] = frames_of(*WORKER_TO_ENGINE, UnknownFrame)

#: The field names of every known frame class, by ``type``.
FIELDS: dict[str, tuple[str, ...]] = {
    cls.TYPE: tuple(a.name for a in cls.__attrs_attrs__) for cls in KNOWN_FRAMES
}

# -- JSON text ---------------------------------------------------------------------


def frame_texts(of: Optional[st.SearchStrategy[AnyFrame]] = None) -> st.SearchStrategy[str]:
    """The compact JSON text of frames drawn from ``of`` (default: any frame)."""
    return (frames if of is None else of).map(encode_frame)


@st.composite
def fuzzed_frame_objects(draw: st.DrawFn) -> dict[str, JSON]:
    """A JSON object with a known ``type`` and arbitrary values for some of its fields."""
    tag = draw(st.sampled_from(sorted(KNOWN_TYPES)))
    names = draw(st.lists(st.sampled_from(FIELDS[tag] or ("x",)), unique=True, max_size=6))
    obj: dict[str, JSON] = {name: draw(json_values(max_leaves=4)) for name in names}
    obj["type"] = tag
    return obj


@st.composite
def mutated_frame_objects(draw: st.DrawFn) -> dict[str, JSON]:
    """A valid encoded frame with one key replaced by arbitrary JSON, or removed."""
    frame = draw(frames_of(*KNOWN_FRAMES))
    obj = to_json_value(frame)
    assert isinstance(obj, dict)
    keys = sorted(k for k in obj if k != "type")
    if keys:
        key = draw(st.sampled_from(keys))
        if draw(st.booleans()):
            del obj[key]
        else:
            obj[key] = draw(json_values(max_leaves=4))
    return obj


@st.composite
def deep_json_texts(draw: st.DrawFn, max_depth: int = 1100) -> str:
    """A frame whose payload nests arrays/objects deeply (around common parser limits:
    128 for serde_json, 255 for orjson's writer, 1 000 for Python's recursion, 1 024
    for orjson's reader), sometimes holding an integer wider than 64 bits."""
    depth = draw(
        st.sampled_from([127, 128, 129, 254, 255, 256, 990, 1000, 1023, 1024, 1025])
        | st.integers(min_value=1, max_value=max_depth)
    )
    depth = min(depth, max_depth)
    leaf = draw(st.sampled_from(["1", "null", '"x"', "1" + "0" * 25, "-" + "9" * 21]))
    if draw(st.booleans()):
        inner = "[" * depth + leaf + "]" * depth
    else:
        inner = '{"a":' * depth + leaf + "}" * depth
    tag = draw(st.sampled_from(sorted(KNOWN_TYPES)) | unknown_types)
    key = draw(st.sampled_from(["data", "result", "metadata", "config", "x"]))
    head = dumps({"type": tag, "function_id": "f", "invocation_id": "i", "id": "i"})
    return head[:-1] + f',"{key}":{inner}}}'


_NOT_OBJECTS = st.sampled_from(
    ["null", "true", "1", "-0", "1e400", '"ping"', "[]", '[{"type":"ping"}]', '""', "[[[]]]"]
)
_GARBAGE = st.sampled_from(
    [
        "",
        " ",
        "\t\n\r ",
        "{",
        "}",
        '{"type":',
        '{"type":"ping"',
        '{"type":"ping"}}',
        '{"type":"ping"} {"type":"pong"}',
        "\ufeff" + '{"type":"ping"}',
        '{"type":"ping",}',
        "{'type':'ping'}",
        '{"type":"ping","a":NaN}',
        '{"type":"ping","a":Infinity}',
        '{"type":"ping","a":01}',
        '{"type":"ping","a":"\\ud800"}',
        '{"type":"ping","a":"\\udc00\\ud800"}',
        '{"type":"ping","a":"\\x41"}',
        '{"type":"ping","a":"\u0001"}',
        '{"type":"ping","type":"pong"}',
        '{"type":"pong","type":1}',
        '{"type":null}',
        '{"type":["ping"]}',
        '{"type":{"type":"ping"}}',
        '{"type":""}',
        '{"TYPE":"ping"}',
        '{"type":"PING"}',
        '{"type":"ping\\u0000"}',
    ]
)


def _truncations(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(text, st.integers(min_value=0)).map(lambda t: t[0][: t[1] % max(len(t[0]), 1)])


def hostile_frame_texts() -> st.SearchStrategy[str]:
    """JSON text a conforming peer must survive: valid frames, frames with wrong
    or missing fields, unknown types, non-objects, truncated or non-JSON text,
    deep nesting, wide integers, duplicate keys, escaped lone surrogates."""
    return st.one_of(
        frame_texts(),
        fuzzed_frame_objects().map(dumps),
        mutated_frame_objects().map(dumps),
        unknown_frames().map(encode_frame),
        _truncations(frame_texts()),
        _NOT_OBJECTS,
        _GARBAGE,
        deep_json_texts(),
        json_values().map(dumps),
        st.text(max_size=40),
    )


#: Byte strings that are not valid UTF-8 (what a text frame must never carry).
invalid_utf8: st.SearchStrategy[bytes] = st.one_of(
    st.sampled_from(
        [
            b"\xff",
            b"\xc0\x80",  # overlong NUL
            b"\xe0\x80\xaf",  # overlong
            b"\xed\xa0\x80",  # an encoded surrogate
            b"\xf4\x90\x80\x80",  # above U+10FFFF
            b"\xe2\x82",  # truncated sequence
            b"\x80",  # lone continuation byte
            b'{"type":"ping","a":"\xe9"}',  # Latin-1 inside JSON
        ]
    ),
    st.binary(min_size=1, max_size=24).filter(lambda b: not _is_utf8(b)),
)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def hostile_payloads() -> st.SearchStrategy[bytes]:
    """Message payloads as bytes: ``hostile_frame_texts()`` encoded, invalid UTF-8
    spliced into them, and arbitrary bytes."""
    return st.one_of(
        hostile_frame_texts().map(str.encode),
        st.tuples(hostile_frame_texts(), invalid_utf8, st.integers(min_value=0)).map(
            lambda t: _splice(t[0].encode(), t[1], t[2])
        ),
        st.binary(max_size=64),
    )


def _splice(data: bytes, insert: bytes, at: int) -> bytes:
    at %= len(data) + 1
    return data[:at] + insert + data[at:]


# -- WebSocket framing (RFC 6455) --------------------------------------------------

# WebSocket opcodes (RFC 6455 section 5.2), for ``ws_frame``.
#: Opcode of a continuation frame.
OP_CONTINUATION = 0x0
#: Opcode of a text frame.
OP_TEXT = 0x1
#: Opcode of a binary frame.
OP_BINARY = 0x2
#: Opcode of a Close frame.
OP_CLOSE = 0x8
#: Opcode of a Ping frame.
OP_PING = 0x9
#: Opcode of a Pong frame.
OP_PONG = 0xA

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(
    payload: bytes,
    *,
    opcode: int = OP_TEXT,
    fin: bool = True,
    mask: Optional[bytes] = None,
    rsv: int = 0,
    length: Optional[int] = None,
    long_form: Optional[int] = None,
) -> bytes:
    """One WebSocket frame, exactly as given (no validation: hostile frames too).

    Args:
        payload: the unmasked payload.
        opcode: 0-15; see the ``OP_*`` constants.
        fin: the FIN bit.
        mask: a 4-byte masking key (client to server frames must have one).
        rsv: the three RSV bits (0-7); nothing negotiates an extension, so any is an error.
        length: the declared payload length (default ``len(payload)``); a different
            value makes a frame that lies about its size.
        long_form: force the 2 (``126``) or 8 (``127``) byte length encoding,
            even when the length would fit in fewer bytes (non-minimal).
    """
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)
    mbit = 0x80 if mask is not None else 0
    if long_form == 127 or n > 0xFFFF:
        head = struct.pack("!BBQ", b0, mbit | 127, n & 0xFFFFFFFFFFFFFFFF)
    elif long_form == 126 or n >= 126:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = bytes((b0, mbit | n))
    if mask is None:
        return head + payload
    if len(mask) != 4:
        raise ValueError("a masking key is 4 bytes")
    key = (mask * (len(payload) // 4 + 1))[: len(payload)]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
        len(payload), "big"
    )
    return head + mask + body


def ws_close_payload(code: Optional[int], reason: bytes = b"") -> bytes:
    """The payload of a Close frame (``code=None``: empty payload)."""
    return b"" if code is None else struct.pack("!H", code) + reason


_masks = st.binary(min_size=4, max_size=4)


def _mask_for(draw: st.DrawFn, masked: bool) -> Optional[bytes]:
    return draw(_masks) if masked else None


@st.composite
def _control_frame(draw: st.DrawFn, masked: bool) -> bytes:
    opcode = draw(st.sampled_from([OP_PING, OP_PONG]))
    return ws_frame(draw(st.binary(max_size=125)), opcode=opcode, mask=_mask_for(draw, masked))


@st.composite
def ws_messages(
    draw: st.DrawFn,
    payloads: Optional[st.SearchStrategy[bytes]] = None,
    *,
    masked: bool,
    binary: Optional[bool] = False,
    max_fragments: int = 4,
    control: bool = True,
) -> bytes:
    """One complete WebSocket message: its payload split into 1 to ``max_fragments``
    frames (text or binary, then continuations), with ping/pong frames between
    the fragments when ``control``.

    Args:
        payloads: the message payload (default: ``frame_texts()`` as UTF-8).
        masked: mask every frame (client to server).
        binary: a binary message; ``None`` draws text or binary.
        max_fragments: at most this many data frames.
        control: interleave ping and pong frames.
    """
    payload = draw(frame_texts().map(str.encode) if payloads is None else payloads)
    is_binary = draw(st.booleans()) if binary is None else binary
    count = draw(st.integers(min_value=1, max_value=max(1, min(max_fragments, len(payload) or 1))))
    cuts = sorted(
        draw(
            st.lists(
                st.integers(min_value=0, max_value=len(payload)),
                min_size=count - 1,
                max_size=count - 1,
            )
        )
    )
    parts = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    out = bytearray()
    for i, part in enumerate(parts):
        opcode = (OP_BINARY if is_binary else OP_TEXT) if i == 0 else OP_CONTINUATION
        out += ws_frame(part, opcode=opcode, fin=i == len(parts) - 1, mask=_mask_for(draw, masked))
        if control and i < len(parts) - 1:
            for frame in draw(st.lists(_control_frame(masked), max_size=2)):
                out += frame
    return bytes(out)


@st.composite
def hostile_ws_frames(draw: st.DrawFn, *, masked: bool, max_message_size: int = 4096) -> bytes:
    """One frame (or a short sequence) that breaks RFC 6455 or a size limit:
    reserved opcodes and RSV bits, oversized or fragmented control frames, a
    continuation with nothing to continue, a new message inside a fragmented one,
    the wrong masking for the direction, invalid Close codes and reasons,
    non-minimal or absurd lengths, a message over ``max_message_size``."""
    mask = _mask_for(draw, masked)
    wrong_mask = None if masked else draw(_masks)
    small = draw(st.binary(max_size=16))
    kind = draw(st.integers(min_value=0, max_value=12))
    if kind == 0:  # reserved opcode
        opcode = draw(st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]))
        return ws_frame(small, opcode=opcode, mask=mask)
    if kind == 1:  # RSV bits without an extension
        rsv = draw(st.integers(min_value=1, max_value=7))
        return ws_frame(b'{"type":"ping"}', rsv=rsv, mask=mask)
    if kind == 2:  # control frame over 125 bytes
        opcode = draw(st.sampled_from([OP_PING, OP_PONG, OP_CLOSE]))
        return ws_frame(bytes(126), opcode=opcode, mask=mask)
    if kind == 3:  # fragmented control frame
        return ws_frame(small, opcode=OP_PING, fin=False, mask=mask)
    if kind == 4:  # continuation with nothing to continue
        return ws_frame(small, opcode=OP_CONTINUATION, fin=draw(st.booleans()), mask=mask)
    if kind == 5:  # a new data frame inside a fragmented message
        return ws_frame(b'{"type":', opcode=OP_TEXT, fin=False, mask=mask) + ws_frame(
            b'"ping"}', opcode=draw(st.sampled_from([OP_TEXT, OP_BINARY])), mask=mask
        )
    if kind == 6:  # the wrong masking for the direction
        return ws_frame(b'{"type":"ping"}', mask=wrong_mask)
    if kind == 7:  # Close with a bad code or a 1-byte payload
        payload = draw(
            st.sampled_from([b"\x03", b"\x03\xe8\xff", b"\x03\xe8\xed\xa0\x80"])
            | st.sampled_from([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]).map(
                ws_close_payload
            )
        )
        return ws_frame(payload, opcode=OP_CLOSE, mask=mask)
    if kind == 8:  # non-minimal length encoding
        return ws_frame(b'{"type":"ping"}', long_form=draw(st.sampled_from([126, 127])), mask=mask)
    if kind == 9:  # a length far beyond what follows (the stream then ends)
        n = draw(st.sampled_from([2**16, 2**24, 2**31, 2**63 - 1, 2**63, 2**64 - 1]))
        return ws_frame(small, length=n, mask=mask)
    if kind == 10:  # a message over the size limit, in one frame or in fragments
        big = b" " * (max_message_size + 1)
        if draw(st.booleans()):
            return ws_frame(big, mask=mask)
        half = len(big) // 2
        return ws_frame(big[:half], fin=False, mask=mask) + ws_frame(
            big[half:], opcode=OP_CONTINUATION, mask=mask
        )
    if kind == 11:  # invalid UTF-8 in a text frame, whole or across fragments
        bad = draw(invalid_utf8)
        if draw(st.booleans()) or len(bad) < 2:
            return ws_frame(bad, mask=mask)
        return ws_frame(bad[:1], fin=False, mask=mask) + ws_frame(
            bad[1:], opcode=OP_CONTINUATION, mask=mask
        )
    # kind 12: a binary message (engines read JSON in it; workers must refuse it)
    return ws_frame(draw(hostile_payloads()), opcode=OP_BINARY, mask=mask)


@st.composite
def ws_streams(
    draw: st.DrawFn,
    *,
    masked: bool,
    texts: Optional[st.SearchStrategy[str]] = None,
    max_message_size: int = 4096,
    max_messages: int = 6,
    hostile: bool = True,
) -> bytes:
    """What one side sends on an open WebSocket: messages (fragmented, with control
    frames between the fragments), hostile payloads and, when ``hostile``, broken
    frames; sometimes a Close; sometimes cut off mid-frame.

    Args:
        masked: client (worker) to server (engine) bytes.
        texts: the JSON text of the well-formed messages (default:
            ``hostile_frame_texts()``, so payloads are hostile too).
        max_message_size: the receiver's limit, for the oversized cases.
        max_messages: at most this many messages or broken frames.
        hostile: include broken framing, Close frames and truncation.
    """
    source = hostile_frame_texts() if texts is None else texts
    message = ws_messages(source.map(str.encode), masked=masked, binary=None)
    parts: list[st.SearchStrategy[bytes]] = [message]
    if hostile:
        parts.append(hostile_ws_frames(masked=masked, max_message_size=max_message_size))
        parts.append(
            ws_messages(hostile_payloads(), masked=masked, binary=None),
        )
    out = b"".join(draw(st.lists(st.one_of(*parts), max_size=max_messages)))
    if hostile and draw(st.booleans()):
        code = draw(st.sampled_from([None, 1000, 1001, 1002, 1011, 4000]))
        out += ws_frame(ws_close_payload(code), opcode=OP_CLOSE, mask=_mask_for(draw, masked))
    if hostile and out and draw(st.integers(min_value=0, max_value=3)) == 0:
        out = out[: draw(st.integers(min_value=0, max_value=len(out) - 1))]
    return out


def chunked(data: bytes, max_chunks: int = 16) -> st.SearchStrategy[list[bytes]]:
    """``data`` split at arbitrary points, as successive socket reads deliver it."""
    return st.lists(st.integers(min_value=0, max_value=len(data)), max_size=max_chunks - 1).map(
        lambda cuts: _split(data, cuts)
    )


def _split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted(set(cuts))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


# -- the HTTP upgrade --------------------------------------------------------------


def accept_key(key: Union[str, bytes]) -> str:
    """The ``Sec-WebSocket-Accept`` value answering a ``Sec-WebSocket-Key``."""
    raw = key.encode() if isinstance(key, str) else key
    return base64.b64encode(hashlib.sha1(raw.strip() + _GUID).digest()).decode()


_keys = st.binary(min_size=16, max_size=16).map(lambda b: base64.b64encode(b).decode())
_header_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(
    lambda h: h not in ("upgrade", "connection", "host")
)
_header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20
).map(str.strip)


@st.composite
def upgrade_requests(draw: st.DrawFn, *, hostile: bool = True) -> bytes:
    """The HTTP upgrade request a worker opens the control socket with (``GET /``),
    sometimes with extra headers or a query string, and, when ``hostile``, broken
    ones (wrong method, version or path, missing headers, bad key, header floods,
    garbage).  The request head ends with a blank line; for valid requests the
    accept key is ``accept_key(<Sec-WebSocket-Key>)``."""
    key = draw(_keys)
    target = draw(st.sampled_from(["/", "/?token=abc", "/?a=1&b=%20"]))
    headers = [
        ("Host", "127.0.0.1:49134"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
    headers += draw(st.lists(st.tuples(_header_names, _header_values), max_size=3))
    method, version = "GET", "HTTP/1.1"
    if hostile and draw(st.booleans()):
        fault = draw(st.integers(min_value=0, max_value=9))
        if fault == 0:
            method = draw(st.sampled_from(["POST", "get", "GET GET", ""]))
        elif fault == 1:
            version = draw(st.sampled_from(["HTTP/1.0", "HTTP/2", "HTTP/1.1x", ""]))
        elif fault == 2:
            target = draw(st.sampled_from(["/nope", "/otel", "/ws/channels/x", "*", "//", ""]))
        elif fault == 3:
            drop = draw(st.sampled_from(["Upgrade", "Connection", "Sec-WebSocket-Key", "Host"]))
            headers = [h for h in headers if h[0] != drop]
        elif fault == 4:
            headers = [
                (k, draw(st.sampled_from(["", "x", "====", "a" * 30])))
                if k == "Sec-WebSocket-Key"
                else (k, "8" if k == "Sec-WebSocket-Version" else v)
                for k, v in headers
            ]
        elif fault == 5:
            headers += [("X-Flood", "a" * 1000)] * draw(st.integers(min_value=1, max_value=80))
        elif fault == 6:
            headers.append(("Bad Header", "x"))
        elif fault == 7:
            return draw(st.binary(max_size=64)) + b"\r\n\r\n"
        elif fault == 8:
            headers.append(("Sec-WebSocket-Extensions", "permessage-deflate"))
        else:
            headers.append(("Sec-WebSocket-Protocol", "iii"))
    lines = [f"{method} {target} {version}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@st.composite
def handshake_responses(draw: st.DrawFn, key: str, *, hostile: bool = True) -> bytes:
    """An engine's answer to an upgrade request whose key was ``key``: ``101`` with
    the right accept value, or, when ``hostile``, a refusal (4xx/5xx with a body),
    a wrong accept value, a missing ``Upgrade``, a subprotocol or extension nobody
    asked for, or garbage."""
    accept = accept_key(key)
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept),
    ]
    status = "101 Switching Protocols"
    if hostile and draw(st.booleans()):
        fault = draw(st.integers(min_value=0, max_value=6))
        if fault == 0:
            code = draw(st.sampled_from([400, 401, 403, 404, 426, 500, 503]))
            body = draw(st.binary(max_size=32))
            return f"HTTP/1.1 {code} Nope\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
        if fault == 1:
            headers[2] = ("Sec-WebSocket-Accept", accept_key(key + "x"))
        elif fault == 2:
            headers = headers[1:]
        elif fault == 3:
            headers.append(("Sec-WebSocket-Protocol", "iii"))
        elif fault == 4:
            headers.append(("Sec-WebSocket-Extensions", "permessage-deflate"))
        elif fault == 5:
            status = "200 OK"
        else:
            return draw(st.binary(max_size=64))
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
