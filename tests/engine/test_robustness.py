"""Bad input never takes the engine (or other workers) down (docs/protocol.md#json)."""

from __future__ import annotations

import contextlib
import os
import struct

import anyio
import orjson
import pytest

from .conftest import own_engine
from .wsclient import Closed, Peer, new_id, settle

pytestmark = pytest.mark.anyio


def ws_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0):
    """A client frame built by hand (wsproto refuses to build broken ones)."""
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        header = bytes((b0, (0x80 if mask else 0) | n))
    elif n < 65536:
        header = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        header = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return header + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + masked


async def still_works(engine, *peers):
    await settle(*peers)
    a = await Peer.join(engine.url, f"check-{new_id()}")
    await a.register(f"check::{a.worker_id}")
    await settle(a)
    inv = await a.invoke(f"check::{a.worker_id}", 1)
    frame = await a.recv_type("invokefunction")
    await a.result(frame["invocation_id"], "alive")
    result = await a.recv_type("invocationresult")
    assert result["invocation_id"] == inv
    assert result["result"] == "alive"


BAD_FRAMES = [
    "not json at all",
    "[1, 2, 3]",
    '"a string"',
    "42",
    "null",
    "{}",
    '{"type": 5}',
    '{"type": "somethingnew", "x": 1}',
    '{"type": "registerfunction"}',
    '{"type": "registerfunction", "id": 7}',
    '{"type": "invokefunction", "data": {}}',
    '{"type": "invokefunction", "function_id": ["x"], "data": 1}',
    '{"type": "invokefunction", "function_id": "x", "data": 1, "action": {"type": "later"}}',
    '{"type": "invokefunction", "function_id": "x", "data": 1, "invocation_id": "abc"}',
    '{"type": "invocationresult", "invocation_id": "not-a-uuid", "function_id": "x"}',
    '{"type": "invocationresult", "function_id": "x"}',
    f'{{"type": "invocationresult", "invocation_id": "{new_id()}", "function_id": "x", '
    '"error": {"code": "c"}}',
    '{"type": "registertrigger", "id": "b", "trigger_type": "t", "config": {}}',
    '{"type": "registertriggertype", "id": "t"}',
    '{"type": "reattach"}',
    '{"type": "reattach", "previous_worker_id": 5}',
    '{"type": "unregistertrigger"}',
    '{"type": "triggerregistrationresult", "id": "x"}',
    '{"type": "registerfunction", "id": "h", "invocation": {"url": "x", "headers": null}}',
    '{"type": "registerfunction", "id": "h", "invocation": {"url": "x", "method": null}}',
    '{"type": "registerservice", "id": "svc", "name": null}',
    "",
    "   \n\t",
    '{"type": "ping"',
    '{"type": "ping", "extra": [1, {"deep": true}]}',
]


async def test_malformed_frames_are_dropped_and_the_connection_stays(engine, caplog):
    peer = await Peer.join(engine.url, "sloppy")
    bystander = await Peer.join(engine.url, "bystander")
    for text in BAD_FRAMES:
        await peer.send(text)
    await peer.send_bytes(b"\xff\xfe\x00binary garbage")
    await peer.send_bytes(b"")
    # Only the well-formed ping with an extra field is answered.
    assert await peer.recv() == {"type": "pong"}
    assert await settle(peer) == []
    assert engine.functions() == []
    assert engine.bindings() == []
    assert engine.stats()["bad_frames"] >= len(BAD_FRAMES) - 4
    assert any("json decode error" in r.getMessage() for r in caplog.records)
    await still_works(engine, peer, bystander)


async def test_deeply_nested_payload_is_routed_or_dropped(engine):
    peer = await Peer.join(engine.url, "deep")
    await peer.register("deep::fn")
    await settle(peer)
    inv = new_id()
    nested = "[" * 2000 + "]" * 2000
    head = f'{{"type":"invokefunction","function_id":"deep::fn","invocation_id":"{inv}",'
    text = head + f'"data":{nested}}}'
    await peer.send(text)
    await still_works(engine, peer)


async def test_invalid_utf8_text_frame_closes_with_1007(engine):
    peer = await Peer.join(engine.url, "bad-utf8")
    bystander = await Peer.join(engine.url, "bystander")
    await peer.send_raw(ws_frame(0x1, b'{"type":"ping","x":"\xc3\x28"}'))
    assert await peer.wait_closed() == 1007
    await still_works(engine, bystander)
    await engine.wait_for(lambda: peer.worker_id not in [w["worker_id"] for w in engine.workers()])


async def test_unmasked_client_frame_closes_with_1002(engine):
    peer = await Peer.join(engine.url, "unmasked")
    await peer.send_raw(ws_frame(0x1, b'{"type":"ping"}', mask=False))
    assert await peer.wait_closed() == 1002
    await still_works(engine)


async def test_reserved_bits_close_with_1002(engine):
    peer = await Peer.join(engine.url, "rsv")
    await peer.send_raw(ws_frame(0x1, b'{"type":"ping"}', rsv=0x40))
    assert await peer.wait_closed() == 1002


async def test_unknown_opcode_closes_with_1002(engine):
    peer = await Peer.join(engine.url, "opcode")
    await peer.send_raw(ws_frame(0x3, b"?"))
    assert await peer.wait_closed() == 1002


async def test_oversized_frame_is_refused_before_its_payload(engine):
    peer = await Peer.join(engine.url, "huge")
    header = struct.pack("!BBQ", 0x81, 0x80 | 127, 17 * 1024 * 1024) + b"\x00\x00\x00\x00"
    await peer.send_raw(header)
    assert await peer.wait_closed() == 1009
    await still_works(engine)


async def test_oversized_fragmented_message_is_refused():
    async with own_engine(max_message_size=256 * 1024) as eng:
        peer = await Peer.join(eng.url, "big")
        with pytest.raises((Closed, anyio.BrokenResourceError, OSError)):
            await peer.send_fragments("x" * (300 * 1024), 32 * 1024)
            await peer.recv()
        assert peer.close_code in (1009, None)
        await still_works(eng)


async def test_binary_frame_with_garbage_and_text_continuation_mixups(engine):
    peer = await Peer.join(engine.url, "frag")
    # A continuation frame with no message in progress is a protocol error.
    await peer.send_raw(ws_frame(0x0, b"orphan"))
    assert await peer.wait_closed() == 1002
    await still_works(engine)


async def test_fragmented_messages_and_interleaved_pings(engine):
    peer = await Peer.join(engine.url, "frags")
    text = orjson.dumps({"type": "ping", "pad": "y" * 5000}).decode()
    raw = text.encode()
    await peer.send_raw(ws_frame(0x1, raw[:100], fin=False))
    await peer.send_raw(ws_frame(0x9, b"ctl"))  # a WS ping between fragments
    await peer.send_raw(ws_frame(0x0, raw[100:4000], fin=False))
    await peer.send_raw(ws_frame(0x0, raw[4000:]))
    assert await peer.next_event() == ("pong", b"ctl")
    assert await peer.recv() == {"type": "pong"}


async def round_trips(caller, provider, n, timeout=60):
    """``n`` calls from ``caller`` to ``provider``'s ``p::fn``, one after the other."""
    for i in range(n):
        inv = await caller.invoke("p::fn", i)
        frame = await provider.recv_type("invokefunction", timeout=timeout)
        await provider.result(frame["invocation_id"], i)
        result = await caller.recv_type("invocationresult", timeout=timeout)
        assert result["invocation_id"] == inv


async def test_ping_flood_does_not_starve_other_workers(engine):
    """No wall-clock bound (it fails on a loaded machine): the evidence is the order
    of events.  A flooder that never reads blocks only itself; one that keeps
    flooding for as long as the calls run is served in turn with them (its pong
    count grows while they complete), so neither side starves the other."""
    provider = await Peer.join(engine.url, "provider")
    await provider.register("p::fn")
    caller = await Peer.join(engine.url, "caller")
    await settle(provider)
    ping = ws_frame(0x1, b'{"type":"ping"}')

    # 1. ~8 MiB of pings answered into a socket nobody reads: the engine's writes to
    # it stall, and the calls of the others still complete.
    stuck = await Peer.join(engine.url, "stuck-flooder")
    stuck.auto_pong = False
    blob = ping * 400_000

    async def flood_unread():
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await stuck.send_raw(blob)

    async with anyio.create_task_group() as tg:
        tg.start_soon(flood_unread)
        await round_trips(caller, provider, 20)
        await stuck.abort()
        tg.cancel_scope.cancel()

    # 2. A flooder that reads its pongs and never stops sending while the calls run.
    flooder = await Peer.join(engine.url, "flooder")
    pongs = 0
    first_pong = anyio.Event()
    done = False

    async def flood():
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            while not done:
                await flooder.send_raw(ping * 500)

    async def count_pongs():
        nonlocal pongs
        while True:
            kind, payload = await flooder.next_event(timeout=60)
            if kind == "text" and orjson.loads(payload).get("type") == "pong":
                pongs += 1
                first_pong.set()
            elif kind in ("close", "eof"):
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(flood)
        tg.start_soon(count_pongs)
        await first_pong.wait()
        before = pongs
        await round_trips(caller, provider, 20)
        during = pongs - before
        done = True
        await flooder.abort()
        tg.cancel_scope.cancel()
    assert during > 0, "the flooder was not served while the calls ran"
    await still_works(engine, caller, provider)


async def test_invocation_flood_to_a_stuck_handler_is_backpressured(engine):
    handler = await Peer.join(engine.url, "stuck")
    await handler.register("stuck::fn")
    other = await Peer.join(engine.url, "other")
    await other.register("other::fn")
    flooder = await Peer.join(engine.url, "flooder")
    bystander = await Peer.join(engine.url, "bystander")
    await settle(handler, other)
    one = orjson.dumps(
        {
            "type": "invokefunction",
            "function_id": "stuck::fn",
            "data": {"pad": "z" * 200},
            "action": {"type": "void"},
        }
    )
    count = 30_000  # ~8 MiB for a handler that is not reading
    blob = ws_frame(0x1, one) * count

    async def flood():
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await flooder.send_raw(blob)

    async with anyio.create_task_group() as tg:
        tg.start_soon(flood)
        await anyio.sleep(0.2)
        # Other traffic still flows while the stuck handler's outbox is full.
        for i in range(5):
            inv = await bystander.invoke("other::fn", i)
            frame = await other.recv_type("invokefunction")
            assert frame["invocation_id"] == inv
            await other.result(inv, i)
            assert (await bystander.recv_type("invocationresult"))["result"] == i
        # The handler catches up: every invocation arrives, in order.
        for i in range(count):
            kind, payload = await handler.next_event(10)
            assert kind == "text"
            if i == 0:
                assert orjson.loads(payload)["data"] == {
                    "pad": "z" * 200,
                    "_caller_worker_id": flooder.worker_id,
                }
        tg.cancel_scope.cancel()
    await still_works(engine, handler, bystander)


async def test_64_mib_message_is_routed(engine):
    handler = await Peer.join(engine.url, "big-handler")
    await handler.register("big::fn")
    caller = await Peer.join(engine.url, "big-caller")
    await settle(handler)
    inv = new_id()
    envelope = f'{{"type":"invokefunction","function_id":"big::fn","invocation_id":"{inv}","data":"'
    size = 64 * 1024 * 1024 - len(envelope) - 2
    text = envelope + "x" * size + '"}'
    assert len(text.encode()) == 64 * 1024 * 1024
    await caller.send_fragments(text, 1024 * 1024)
    kind, payload = await handler.next_event(60)
    assert kind == "text"
    frame = orjson.loads(payload)
    assert frame["invocation_id"] == inv
    assert len(frame["data"]) == size
    del payload, frame, text
    await handler.result(inv, "ok")
    assert (await caller.recv_type("invocationresult", timeout=30))["result"] == "ok"
