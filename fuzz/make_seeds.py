"""Write the seed corpora and dictionaries of the fuzz targets (deterministic).

    python fuzz/make_seeds.py

Seeds are hand-picked protocol situations (``fuzz/corpus/<target>/<name>``),
the golden frames of ``tests/data/frames.jsonl`` and a derandomized sample of
the hostile inputs from ``iii_protocol.strategies``.  Files named
``regress-*`` reproduce bugs fuzzing found; they are written here too, so a
regenerated corpus keeps them.  Inputs found later by libFuzzer that are worth
keeping go into the same folders under their own names (this script never
deletes files).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iii_protocol import KNOWN_FRAMES
from iii_protocol import strategies as iii_st
from iii_protocol.strategies import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    ws_close_payload,
    ws_frame,
)

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
SEP = b"\xff\xff"
UUID = "6f1e1b1e-1111-4111-8111-11111111111{}"


def _j(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _sample(strategy: st.SearchStrategy[T], n: int) -> list[T]:
    out: list[T] = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: T) -> None:
        out.append(value)

    collect()
    return out


def _write(target: str, seeds: Iterable[tuple[str, bytes]]) -> int:
    folder = ROOT / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for name, data in seeds:
        (folder / name).write_bytes(data)
        n += 1
    return n


def _hashed(prefix: str, values: Iterable[bytes]) -> Iterable[tuple[str, bytes]]:
    seen: set[bytes] = set()
    for data in values:
        if data not in seen:
            seen.add(data)
            yield f"{prefix}-{hashlib.sha1(data).hexdigest()[:12]}", data


def _golden() -> list[bytes]:
    lines = (REPO / "tests" / "data" / "frames.jsonl").read_text(encoding="utf-8").splitlines()
    return [_j(json.loads(line)["frame"]) for line in lines if line.strip()]


def _deep(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


# -- decode ------------------------------------------------------------------------


def decode_seeds() -> Iterable[tuple[str, bytes]]:
    yield from _hashed("golden", _golden())
    hostile = [t.encode() for t in _sample(iii_st.hostile_frame_texts(), 60)]
    yield from _hashed("hostile", hostile)
    yield from _hashed("payload", [b for b in _sample(iii_st.hostile_payloads(), 30)])
    # RecursionError escaped decode_frame: orjson reads 1 024 levels, the stdlib
    # fallback for wide integers ran out of stack first.
    yield (
        "regress-deep-wide-int",
        (
            '{"type":"invokefunction","function_id":"f","data":' + _deep(1000, "1" + "0" * 25) + "}"
        ).encode(),
    )


# -- connection --------------------------------------------------------------------

_ENGINE_FRAMES: dict[str, object] = {
    "ping": {"type": "ping"},
    "pong": {"type": "pong"},
    "greet": {"type": "workerregistered", "worker_id": "w-9", "reattach_token": "t-9"},
    "invoke": {
        "type": "invokefunction",
        "function_id": "f",
        "invocation_id": "in-2",
        "data": {"a": 1, "_caller_worker_id": "w-0"},
    },
    "invoke-void": {"type": "invokefunction", "function_id": "f", "data": [1]},
    "invoke-http": {
        "type": "invokefunction",
        "function_id": "h",
        "invocation_id": "in-3",
        "data": None,
    },
    "invoke-unknown": {
        "type": "invokefunction",
        "function_id": "nope",
        "invocation_id": "in-4",
        "data": None,
    },
    "invoke-again": {
        "type": "invokefunction",
        "function_id": "f",
        "invocation_id": "in-1",
        "data": None,
    },
    "result": {
        "type": "invocationresult",
        "invocation_id": "id-3",
        "function_id": "g",
        "result": {"ok": True},
    },
    "result-held": {
        "type": "invocationresult",
        "invocation_id": "id-1",
        "function_id": "g",
        "result": 1,
    },
    "result-error": {
        "type": "invocationresult",
        "invocation_id": "id-3",
        "function_id": "g",
        "error": {"code": "boom", "message": "failed"},
    },
    "result-announce": {
        "type": "invocationresult",
        "invocation_id": "id-2",
        "function_id": "engine::workers::register",
        "result": {"success": True},
    },
    "result-malformed": {"type": "invocationresult", "invocation_id": "id-3", "result": 1},
    "result-unknown": {"type": "invocationresult", "invocation_id": "zz", "function_id": "g"},
    "binding": {
        "type": "registertrigger",
        "id": "b9",
        "trigger_type": "tt",
        "function_id": "f",
        "config": {"path": "/x"},
    },
    "binding-unknown": {
        "type": "registertrigger",
        "id": "b8",
        "trigger_type": "nope",
        "function_id": "f",
        "config": None,
    },
    "unbinding": {"type": "unregistertrigger", "id": "b9", "trigger_type": "tt"},
    "binding-error": {
        "type": "triggerregistrationresult",
        "id": "b1",
        "trigger_type": "tt",
        "function_id": "f",
        "error": {"code": "bad", "message": "no"},
    },
    "reject-function": {
        "type": "registrationrejected",
        "code": "FUNCTION_NAMESPACE_CONFLICT",
        "namespace": "default",
        "function_id": "f",
        "owner_worker_id": "w-0",
    },
    "reject-worker": {
        "type": "registrationrejected",
        "code": "WORKER_NAMESPACE_CONFLICT",
        "namespace": "default",
        "worker_name": "fuzz",
        "owner_worker_id": "w-0",
    },
    "error": {"type": "error", "error": {"code": "AUTH_ERROR", "message": "no"}},
    "unknown": {"type": "observe", "x": [1, 2]},
    "worker-frame": {"type": "registerfunction", "id": "x"},
}

_ACCEPT_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: @@ACCEPT@@\r\n\r\n"
)


def connection_seeds() -> Iterable[tuple[str, bytes]]:
    frames = {name: _j(obj) for name, obj in _ENGINE_FRAMES.items()}
    everything = SEP.join(frames.values())
    for mode in (1, 2, 3):
        for extra in (0, 8, 32, 64, 96):
            yield f"all-m{mode}-f{extra}", bytes([mode | 4 | extra, 0]) + everything
        for name, text in frames.items():
            yield f"{name}-m{mode}", bytes([mode | 4, 0]) + text
        yield f"all-m{mode}-commands", bytes([mode | 4 | 128, 40]) + everything
        yield f"all-m{mode}-commands-timers", bytes([mode | 4 | 32 | 64 | 128, 90]) + everything
    yield "all-bytewise", bytes([2 | 4, 1]) + everything
    yield "all-binary", bytes([2 | 4 | 16, 0]) + everything
    yield "greet-then-all", bytes([1 | 4, 3]) + frames["greet"] + SEP + everything
    # Raw WebSocket bytes after the handshake (mode 2, not framed by the harness).
    raw = {
        "ws-ping": ws_frame(b"hello", opcode=OP_PING),
        "ws-pong": ws_frame(b"", opcode=OP_PONG),
        "ws-close": ws_frame(ws_close_payload(1000, b"bye"), opcode=OP_CLOSE),
        "ws-close-empty": ws_frame(b"", opcode=OP_CLOSE),
        "ws-close-bad-code": ws_frame(ws_close_payload(1005), opcode=OP_CLOSE),
        "ws-fragments": ws_frame(frames["invoke"][:10], fin=False)
        + ws_frame(b"p", opcode=OP_PING)
        + ws_frame(frames["invoke"][10:], opcode=OP_CONTINUATION),
        "ws-masked": ws_frame(frames["ping"], mask=b"abcd"),
        "ws-rsv": ws_frame(frames["ping"], rsv=4),
        "ws-opcode": ws_frame(b"x", opcode=3),
        "ws-continuation": ws_frame(b"x", opcode=OP_CONTINUATION),
        "ws-big-control": ws_frame(bytes(126), opcode=OP_PING),
        "ws-oversize": ws_frame(b" " * 3000),
        "ws-oversize-fragments": ws_frame(b" " * 1500, fin=False)
        + ws_frame(b" " * 1500, opcode=OP_CONTINUATION),
        "ws-huge-length": ws_frame(b"", length=2**63 - 1),
        "ws-bad-utf8": ws_frame(b'{"type":"ping","a":"\xed\xa0\x80"}'),
        "ws-split-utf8": ws_frame("é".encode()[:1], fin=False)
        + ws_frame("é".encode()[1:], opcode=OP_CONTINUATION),
        "ws-binary": ws_frame(frames["ping"], opcode=OP_BINARY),
        "ws-whitespace": ws_frame(b"  \n"),
        "ws-two": ws_frame(frames["ping"]) + ws_frame(frames["invoke"]),
    }
    for name, data in raw.items():
        yield name, bytes([2, 0]) + data
        yield name + "-bytewise", bytes([2, 1]) + data
    # The HTTP upgrade (mode 0): the answer, then frames.
    yield "hs-accept", bytes([0, 0]) + _ACCEPT_101 + ws_frame(frames["greet"])
    yield "hs-accept-framed", bytes([4, 0]) + _ACCEPT_101 + frames["greet"] + SEP + frames["invoke"]
    yield "hs-accept-bytewise", bytes([4, 1]) + _ACCEPT_101 + frames["greet"]
    yield "hs-reject", bytes([0, 0]) + b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno"
    yield "hs-wrong-accept", bytes([0, 0]) + _ACCEPT_101.replace(b"@@ACCEPT@@", b"AAAA")
    yield "hs-200", bytes([0, 0]) + b"HTTP/1.1 200 OK\r\n\r\n"
    yield "hs-garbage", bytes([0, 0]) + b"\x00\x01garbage\r\n\r\n"
    yield "hs-timeout", bytes([32, 0])
    yield "hs-accept-timers", bytes([4 | 32 | 64, 0]) + _ACCEPT_101 + frames["greet"]
    # Deep payloads: the worker must refuse or echo them without crashing.
    deep_wide = _deep(1000, "1" + "0" * 25).encode()
    yield (
        "regress-deep-wide-int",
        bytes([2 | 4, 0]) + b'{"type":"invokefunction","function_id":"f","invocation_id":"in-5",'
        b'"data":' + deep_wide + b"}",
    )
    yield (
        "deep-echo",
        bytes([2 | 4, 0]) + b'{"type":"invokefunction","function_id":"f","invocation_id":"in-6",'
        b'"data":' + _deep(600).encode() + b"}",
    )
    texts = [t.encode() for t in _sample(iii_st.hostile_frame_texts(), 40)]
    yield from _hashed("hostile", (bytes([2 | 4, 0]) + t for t in texts))
    streams = _sample(iii_st.ws_streams(masked=False, max_message_size=2048), 30)
    yield from _hashed("stream", (bytes([2, 0]) + s for s in streams))


# -- framing -----------------------------------------------------------------------

_UPGRADE_HEAD = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Accept: @@ACCEPT@@\r\n\r\n"
)


def framing_seeds() -> Iterable[tuple[str, bytes]]:
    frames = [_j(obj) for obj in _ENGINE_FRAMES.values()]
    texts = SEP.join([*frames, "é€😀".encode() * 20, b"", b" " * 130])
    bad = SEP.join([frames[0], b'{"a":"\xed\xa0\x80"}', frames[1]])
    for name, flags, first, second in [
        ("whole", 4, 0, 0),
        ("bytewise", 4, 1, 0),
        ("cuts-2-3", 4, 2, 3),
        ("cuts-7-61", 4, 7, 61),
        ("fragments", 4 | 8, 0, 0),
        ("fragments-bytewise", 4 | 8, 1, 0),
        ("sends", 4 | 16, 5, 0),
        ("sends-pings", 4 | 16 | 32, 9, 2),
        ("len126", 4 | 64, 0, 0),
        ("len126-cuts", 4 | 64, 7, 3),
        ("len8", 4 | 128, 0, 0),
        ("len8-cuts", 4 | 128, 200, 77),
        ("head-cut", 1 | 4, 3, 0),
        ("head-bytewise", 1 | 4, 1, 0),
    ]:
        yield f"m-{name}", bytes([flags, first, second]) + texts
        yield f"bad-utf8-{name}", bytes([flags, first, second]) + bad
    raw = {
        "ping": ws_frame(b"hello", opcode=OP_PING),
        "pong": ws_frame(b"", opcode=OP_PONG),
        "close": ws_frame(ws_close_payload(1000, b"bye"), opcode=OP_CLOSE),
        "close-bad-code": ws_frame(ws_close_payload(1005), opcode=OP_CLOSE),
        "fragments": ws_frame(frames[0][:10], fin=False)
        + ws_frame(b"p", opcode=OP_PING)
        + ws_frame(frames[0][10:], opcode=OP_CONTINUATION),
        "text-in-message": ws_frame(b"ab", fin=False) + ws_frame(b"cd"),
        "masked": ws_frame(frames[0], mask=b"abcd"),
        "rsv": ws_frame(frames[0], rsv=4),
        "opcode": ws_frame(b"x", opcode=3),
        "continuation": ws_frame(b"x", opcode=OP_CONTINUATION),
        "big-control": ws_frame(bytes(126), opcode=OP_PING),
        "non-minimal-2": ws_frame(frames[0], long_form=126),
        "non-minimal-8": ws_frame(frames[0], long_form=127),
        "oversize": ws_frame(b" " * 3000),
        "huge-length": ws_frame(b"", length=2**63 - 1),
        "msb-length": ws_frame(b"", length=2**63),
        "bad-utf8": ws_frame(b'{"a":"\xed\xa0\x80"}'),
        "cut-utf8": ws_frame("é€".encode()[:4]),
        "binary": ws_frame(frames[0], opcode=OP_BINARY),
        "two": ws_frame(frames[0]) + ws_frame(frames[1]),
    }
    for name, data in raw.items():
        after = data + ws_frame(frames[2])
        yield f"raw-{name}", bytes([0, 0, 0]) + after
        yield f"raw-{name}-bytewise", bytes([1, 1, 0]) + after
        yield f"raw-{name}-cuts", bytes([0, 3, 5]) + after
    yield "head-bare-lf", bytes([2, 0, 0]) + _UPGRADE_HEAD.replace(b"\r\n", b"\n") + raw["two"]
    yield "head-refused", bytes([2, 0, 0]) + b"HTTP/1.1 403 No\r\ncontent-length: 2\r\n\r\nno"
    yield "head-garbage", bytes([2, 1, 0]) + b"\x00garbage\r\n\r\n" + raw["two"]
    yield "no-upgrade", bytes([3, 0, 0]) + raw["two"]
    # A refused informational answer then a 101 in the same read: wsproto still
    # reads the 101 (and so a Close goes out); the fast path once stopped at the 100.
    yield (
        "regress-informational-then-101",
        bytes([2, 0, 0]) + b"HTTP/1.1 100 Continue\r\n\r\n" + _UPGRADE_HEAD + raw["two"],
    )
    streams = _sample(iii_st.ws_streams(masked=False, max_message_size=2048), 30)
    yield from _hashed("stream", (bytes([0, 0, 0]) + s for s in streams))
    yield from _hashed("stream-cut", (bytes([0, 5, 17]) + s for s in streams[:10]))


# -- channel -----------------------------------------------------------------------

_CHANNEL_LIMIT = 1024  # fuzz_channel.LIMIT


def channel_seeds() -> Iterable[tuple[str, bytes]]:
    messages = SEP.join([b'{"kind": "meta", "n": 2}', b"hello ", b"world", b"", b"x" * 200])
    close = ws_frame(ws_close_payload(1000), opcode=OP_CLOSE)
    for direction in (0, 1):
        d = f"d{direction}"
        # After the upgrade: framed messages, with every combination of the app flags.
        for extra in (0, 8, 16, 32, 64, 128, 8 | 16, 32 | 64, 64 | 128):
            yield f"{d}-messages-f{extra}", bytes([direction | 2 | 4 | extra, 0]) + messages
        yield f"{d}-messages-bytewise", bytes([direction | 2 | 4 | 16, 1]) + messages
        yield f"{d}-messages-chunked", bytes([direction | 2 | 4 | 64, 7]) + messages
        # Raw WebSocket bytes after the upgrade.
        raw = {
            "then-close": ws_frame(b"last", opcode=OP_BINARY) + close,
            "close-empty": ws_frame(b"", opcode=OP_CLOSE),
            "close-1011": ws_frame(ws_close_payload(1011, b"engine failed"), opcode=OP_CLOSE),
            "close-1005-sent": ws_frame(ws_close_payload(1005), opcode=OP_CLOSE),
            "close-mid-message": ws_frame(b"par", opcode=OP_BINARY, fin=False) + close,
            "ping": ws_frame(b"hello", opcode=OP_PING) + close,
            "pong": ws_frame(b"", opcode=OP_PONG),
            "masked": ws_frame(b"x", mask=b"abcd"),
            "rsv": ws_frame(b"x", rsv=4),
            "opcode": ws_frame(b"x", opcode=3),
            "continuation": ws_frame(b"x", opcode=OP_CONTINUATION),
            "big-control": ws_frame(bytes(126), opcode=OP_PING),
            "oversize": ws_frame(b"x" * (_CHANNEL_LIMIT + 1), opcode=OP_BINARY),
            "oversize-fragments": ws_frame(b"x" * 600, opcode=OP_BINARY, fin=False)
            + ws_frame(b"x" * 600, opcode=OP_CONTINUATION),
            "at-limit-utf8": ws_frame(("é" * (_CHANNEL_LIMIT // 2)).encode()),
            "huge-length": ws_frame(b"", length=2**63 - 1),
            "bad-utf8": ws_frame(b"\xed\xa0\x80"),
            "split-utf8": ws_frame("é".encode()[:1], fin=False)
            + ws_frame("é".encode()[1:], opcode=OP_CONTINUATION),
            "after-close": close + ws_frame(b"after", opcode=OP_BINARY),
        }
        for name, data in raw.items():
            yield f"{d}-ws-{name}", bytes([direction | 2, 0]) + data
            yield f"{d}-ws-{name}-closing", bytes([direction | 2 | 32, 2]) + data
        # The engine's answer to the upgrade.
        for name, data in {
            "accept": _ACCEPT_101 + ws_frame(b"item", opcode=OP_BINARY) + close,
            "accept-only": _ACCEPT_101,
            "reject-404": b"HTTP/1.1 404 Not Found\r\ncontent-length: 17\r\n\r\nChannel not found",
            "reject-400": b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
            "wrong-accept": _ACCEPT_101.replace(b"@@ACCEPT@@", b"AAAA"),
            "200": b"HTTP/1.1 200 OK\r\n\r\n",
            "garbage": b"\x00\x01garbage\r\n\r\n",
            "eof": b"",
        }.items():
            yield f"{d}-hs-{name}", bytes([direction, 0]) + data
            yield f"{d}-hs-{name}-bytewise", bytes([direction | 64, 1]) + data
        yield f"{d}-hs-framed", bytes([direction | 4, 0]) + _ACCEPT_101 + messages
        yield f"{d}-hs-accept-then-break", bytes([direction | 128, 0]) + _ACCEPT_101
    # A ping after our Close made wsproto refuse the pong, failing the socket.
    first = ws_frame(b"a", opcode=OP_BINARY)
    yield (
        "regress-ping-after-close",
        bytes([2 | 32, len(first)]) + first + ws_frame(b"p", opcode=OP_PING) + close,
    )
    # A non-ASCII header byte in the 101 escaped wsproto as UnicodeError.
    yield (
        "regress-non-ascii-header",
        bytes([0, 0]) + _ACCEPT_101.replace(b"\r\n\r\n", b"\r\nX-Bad: \xff\xfe\r\n\r\n"),
    )
    streams = _sample(iii_st.ws_streams(masked=False, max_message_size=_CHANNEL_LIMIT), 30)
    yield from _hashed("stream", (bytes([(i & 1) | 2, 0]) + s for i, s in enumerate(streams)))


# -- engine ------------------------------------------------------------------------


def _invoke(function_id: str, n: int, data: object, **extra: object) -> bytes:
    return _j(
        {
            "type": "invokefunction",
            "function_id": function_id,
            "invocation_id": UUID.format(n),
            "data": data,
            **extra,
        }
    )


_UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:49134\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def engine_seeds() -> Iterable[tuple[str, bytes]]:
    announce = _invoke("engine::workers::register", 0, {"name": "fz", "pid": 7})
    steps = {
        "announce": announce,
        "announce-void": _j(
            {
                "type": "invokefunction",
                "function_id": "engine::workers::register",
                "data": {"name": "fz", "namespace": "ns1"},
                "action": {"type": "void"},
            }
        ),
        "announce-taken": _invoke("engine::workers::register", 9, {"name": "good-provider"}),
        "register": _j({"type": "registerfunction", "id": "fz::f", "metadata": {"a": 1}}),
        "register-taken": _j({"type": "registerfunction", "id": "good::echo"}),
        "register-http": _j(
            {
                "type": "registerfunction",
                "id": "fz::h",
                "invocation": {"url": "http://127.0.0.1:9/x"},
            }
        ),
        "unregister": _j({"type": "unregisterfunction", "id": "fz::f"}),
        "trigger-type": _j({"type": "registertriggertype", "id": "fz-tt", "description": ""}),
        "binding": _j(
            {
                "type": "registertrigger",
                "id": "b1",
                "trigger_type": "fz-tt",
                "function_id": "fz::f",
                "config": {},
            }
        ),
        "binding-parked": _j(
            {
                "type": "registertrigger",
                "id": "b2",
                "trigger_type": "nope",
                "function_id": "good::echo",
            }
        ),
        "binding-ack": _j(
            {
                "type": "triggerregistrationresult",
                "id": "b1",
                "trigger_type": "fz-tt",
                "function_id": "fz::f",
            }
        ),
        "unbinding": _j({"type": "unregistertrigger", "id": "b1", "trigger_type": "fz-tt"}),
        "service": _j({"type": "registerservice", "id": "svc", "name": "s"}),
        "call-good": _invoke("good::echo", 1, {"x": 1}),
        "call-self": _invoke("fz::f", 2, [1, 2]),
        "call-http": _invoke("fz::h", 3, None),
        "call-missing": _invoke("nope", 4, None),
        "call-void": _j(
            {
                "type": "invokefunction",
                "function_id": "good::echo",
                "data": 1,
                "action": {"type": "void"},
            }
        ),
        "call-enqueue": _invoke(
            "good::echo", 5, {"q": 1}, action={"type": "enqueue", "queue": "jobs"}
        ),
        "call-blank-ns": _invoke("good::echo", 6, None, namespace=" "),
        "call-list": _invoke("engine::functions::list", 7, {}),
        "call-workers": _invoke("engine::workers::list", 8, {}),
        "call-register-trigger": _invoke(
            "engine::register_trigger",
            9,
            {
                "trigger_type": "engine::workers-available",
                "function_id": "good::echo",
                "config": {},
            },
        ),
        "call-channel": _invoke("engine::channels::create", 10, {}),
        "result-self": _j(
            {
                "type": "invocationresult",
                "invocation_id": UUID.format(2),
                "function_id": "fz::f",
                "result": 3,
            }
        ),
        "result-unknown": _j(
            {"type": "invocationresult", "invocation_id": "not-a-uuid", "function_id": "x"}
        ),
        "reattach": _j(
            {"type": "reattach", "previous_worker_id": UUID.format(0), "reattach_token": "x"}
        ),
        "ping": b'{"type":"ping"}',
        "pong": b'{"type":"pong"}',
        "confused": _j({"type": "workerregistered", "worker_id": "x"}),
        "null-field": _j({"type": "registerservice", "id": "s", "name": None}),
        "garbage": b"{not json",
        "array": b"[1,2]",
        "unknown": b'{"type":"observe"}',
    }
    everything = SEP.join(steps.values())
    for flags in (1 | 2, 1 | 2 | 8, 1 | 2 | 4, 1 | 2 | 16, 1 | 2 | 16 | 32, 1 | 2 | 64):
        yield f"all-f{flags}", bytes([flags, 0]) + everything
    yield (
        "all-pauses",
        bytes([1 | 2, 0])
        + SEP.join(
            [steps["register"], b"", steps["binding"], b"", announce, steps["call-self"], b""]
        ),
    )
    for name, text in steps.items():
        yield f"{name}", bytes([1 | 2, 0]) + announce + SEP + text
        yield f"{name}-unannounced", bytes([1 | 2, 0]) + text
    yield (
        "bytewise",
        bytes([1 | 2, 1]) + announce + SEP + steps["register"] + SEP + steps["call-self"],
    )
    yield "telemetry", bytes([1 | 2 | 4, 0]) + b"OTLPxxxx" + SEP + b"MTRC" + SEP + announce
    # Raw WebSocket (after a valid upgrade), unframed by the harness.
    mask = b"\x00\x00\x00\x00"
    raw = {
        "ws-text": ws_frame(announce, mask=mask),
        "ws-unmasked": ws_frame(announce),
        "ws-close": ws_frame(ws_close_payload(1000), opcode=OP_CLOSE, mask=mask),
        "ws-ping": ws_frame(b"x", opcode=OP_PING, mask=mask),
        "ws-fragments": ws_frame(announce[:9], fin=False, mask=mask)
        + ws_frame(b"p", opcode=OP_PING, mask=mask)
        + ws_frame(announce[9:], opcode=OP_CONTINUATION, mask=mask),
        "ws-oversize": ws_frame(b" " * 5000, mask=mask),
        "ws-oversize-fragments": ws_frame(b" " * 3000, fin=False, mask=mask)
        + ws_frame(b" " * 3000, opcode=OP_CONTINUATION, mask=mask),
        "ws-huge-length": ws_frame(b"", length=2**63 - 1, mask=mask),
        "ws-bad-utf8": ws_frame(b'{"type":"ping","a":"\xff"}', mask=mask),
        "ws-rsv": ws_frame(b'{"type":"ping"}', rsv=2, mask=mask),
        "ws-opcode": ws_frame(b"x", opcode=0xB, mask=mask),
        "ws-binary-json": ws_frame(announce, opcode=OP_BINARY, mask=mask),
    }
    for name, data in raw.items():
        yield name, bytes([1, 0]) + data
        yield name + "-bytewise", bytes([1, 1]) + data
    # The HTTP upgrade itself (flags without 1).
    yield "hs-valid", bytes([0, 0]) + _UPGRADE + ws_frame(announce, mask=mask)
    yield (
        "hs-otel",
        bytes([0, 0])
        + _UPGRADE.replace(b"GET / ", b"GET /otel ")
        + ws_frame(b"OTLPabc", opcode=OP_BINARY, mask=mask),
    )
    yield (
        "hs-channel",
        bytes([0, 0]) + _UPGRADE.replace(b"GET / ", b"GET /ws/channels/c1?key=k&dir=read "),
    )
    yield (
        "hs-channel-bad-query",
        bytes([0, 0]) + _UPGRADE.replace(b"GET / ", b"GET /ws/channels/c1 "),
    )
    yield "hs-404", bytes([0, 0]) + _UPGRADE.replace(b"GET / ", b"GET /nope ")
    yield "hs-post", bytes([0, 0]) + _UPGRADE.replace(b"GET", b"POST")
    yield (
        "hs-no-key",
        bytes([0, 0]) + _UPGRADE.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b""),
    )
    yield "hs-rbac", bytes([16, 0]) + _UPGRADE + ws_frame(announce, mask=mask)
    yield "hs-partial", bytes([0, 0]) + _UPGRADE[:40]
    # The handshake timed out before any byte arrived: ``idx`` was unbound.
    yield "regress-handshake-timeout", bytes([64, 0])
    # A payload nested past orjson's 255-level writer crashed routing.
    yield (
        "regress-deep-data",
        bytes([1 | 2, 0])
        + (
            b'{"type":"invokefunction","function_id":"good::echo","invocation_id":"'
            + UUID.format(1).encode()
            + b'","data":'
            + _deep(300).encode()
            + b"}"
        ),
    )
    yield (
        "regress-deep-metadata",
        bytes([1 | 2, 0])
        + SEP.join(
            [
                announce,
                b'{"type":"registerfunction","id":"fz::deep","metadata":'
                + _deep(300).encode()
                + b"}",
                steps["call-list"],
            ]
        ),
    )
    requests = _sample(iii_st.upgrade_requests(), 20)
    yield from _hashed("upgrade", (bytes([0, 0]) + r for r in requests))
    streams = _sample(iii_st.ws_streams(masked=True, max_message_size=4096), 30)
    yield from _hashed("stream", (bytes([1, 0]) + s for s in streams))


# -- dictionaries ------------------------------------------------------------------


def _dict_lines(tokens: Iterable[bytes]) -> str:
    lines = []
    for token in dict.fromkeys(tokens):
        escaped = "".join(
            chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02x}" for b in token
        )
        lines.append(f'"{escaped}"')
    return "\n".join(lines) + "\n"


def _json_tokens() -> list[bytes]:
    tokens = [
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b'"',
        b"null",
        b"true",
        b"false",
        b"-0",
        b"1e400",
        b"100000000000000000000",
        b"\\u0000",
        b"\\ud800",
        b'\\"',
    ]
    for cls in KNOWN_FRAMES:
        tokens.append(b'"type":"' + cls.TYPE.encode() + b'"')
        for field in iii_st.FIELDS[cls.TYPE]:
            tokens.append(b'"' + field.encode() + b'":')
    tokens += [
        b'"action":{"type":"void"}',
        b'"action":{"type":"enqueue","queue":"q"}',
        b'"error":{"code":"c","message":"m"}',
    ]
    return tokens


def write_dicts() -> None:
    base = _json_tokens()
    (ROOT / "decode.dict").write_text(_dict_lines(base))
    ws = [
        b"\x81",
        b"\x01",
        b"\x80",
        b"\x82",
        b"\x88",
        b"\x89",
        b"\x8a",
        b"\x7e",
        b"\x7f",
        b"\xff\xff",
        b"\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n",
        b"@@ACCEPT@@",
        b"Sec-WebSocket-Accept: ",
        b"Upgrade: websocket\r\n",
        b"Connection: Upgrade\r\n",
    ]
    ids = [
        b'"in-1"',
        b'"id-1"',
        b'"id-2"',
        b'"id-3"',
        b'"f"',
        b'"h"',
        b'"g"',
        b'"tt"',
        b'"b1"',
        b"FUNCTION_NAMESPACE_CONFLICT",
        b"WORKER_NAMESPACE_CONFLICT",
    ]
    (ROOT / "connection.dict").write_text(_dict_lines(base + ws + ids))
    engine_ids = [
        b'"good::echo"',
        b'"good::mw"',
        b'"engine::workers::register"',
        b'"engine::functions::list"',
        b'"engine::register_trigger"',
        b'"engine::workers-available"',
        b'"' + UUID.format(1).encode() + b'"',
        b"GET / HTTP/1.1\r\n",
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        b"Sec-WebSocket-Version: 13\r\n",
        b"/otel",
        b"/ws/channels/",
        b"OTLP",
    ]
    (ROOT / "engine.dict").write_text(_dict_lines(base + ws + engine_ids))
    channel = [
        b"\x88\x02\x03\xe8",  # Close 1000
        b"\x88\x00",
        b"\x89\x00",
        b"\x8a\x00",
        b"\x02",
        b"\x00",
        b"HTTP/1.1 404 Not Found\r\n",
        b"content-length: ",
        b"Channel not found",
    ]
    (ROOT / "channel.dict").write_text(_dict_lines(ws + channel))
    framing = [
        b"\x81\x7e\x00\x7e",  # the smallest 2-byte length
        b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00",  # the smallest 8-byte length
        b"\xc3\xa9",
        b"\xe2\x82\xac",
        b"\xf0\x9f\x98\x80",
        b"\xed\xa0\x80",
        b"\n\n",
        b"\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
    ]
    (ROOT / "framing.dict").write_text(_dict_lines(ws + framing))


def main() -> None:
    counts = {
        "decode": _write("decode", decode_seeds()),
        "connection": _write("connection", connection_seeds()),
        "engine": _write("engine", engine_seeds()),
        "channel": _write("channel", channel_seeds()),
        "framing": _write("framing", framing_seeds()),
    }
    write_dicts()
    for target, n in counts.items():
        print(f"{target}: {n} seeds")


if __name__ == "__main__":
    main()
