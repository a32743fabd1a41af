"""Test controls: the transcript and fault injection (issue part 2)."""

from __future__ import annotations

import time

import anyio
import orjson
import pytest

from iii_protocol import RegistrationRejected

from .conftest import own_engine
from .wsclient import Closed, Peer, RawClient, new_id, settle

pytestmark = pytest.mark.anyio


async def pair(engine, function_id="svc::fn"):
    provider = await Peer.join(engine.url, "provider")
    await provider.register(function_id)
    caller = await Peer.join(engine.url, "caller")
    await settle(provider)
    return provider, caller


async def test_transcript_records_both_directions(engine, tmp_path):
    peer = await Peer.join(engine.url, "talker")
    await peer.send({"type": "ping"})
    await peer.recv()
    await peer.ping(b"ws")
    await peer.next_event()
    await peer.close()
    await engine.wait_for(
        lambda: any(e["kind"] == "end" and e["conn"] == peer.worker_id for e in engine.transcript())
    )
    entries = [e for e in engine.transcript() if e["conn"] == peer.worker_id]
    summary = [
        (e["dir"], e["kind"], e.get("frame", {}).get("type") if "frame" in e else e.get("info"))
        for e in entries
    ]
    assert summary[0] == ("in", "open", "/")
    assert summary[1] == ("out", "text", "workerregistered")
    assert ("in", "text", "invokefunction") in summary
    assert summary.index(("in", "text", "ping")) < summary.index(("out", "text", "pong"))
    assert ("in", "ping", None) in [(d, k, None) for d, k, _ in summary]
    assert summary[-3:] == [
        ("in", "close", "1000 "),
        ("out", "close", "1000"),
        ("out", "end", None),
    ]
    assert all(isinstance(e["ts"], float) for e in entries)
    # JSON lines, one per entry, in order.
    lines = engine.transcript_jsonl().splitlines()
    assert [orjson.loads(line) for line in lines] == engine.transcript()
    path = tmp_path / "t.jsonl"
    engine.dump_transcript(str(path))
    assert path.read_text() == engine.transcript_jsonl()
    # frames(): the parsed protocol frames only, filtered.
    sent = engine.frames(peer.worker_id, direction="in")
    assert [f["type"] for f in sent] == ["invokefunction", "ping"]
    assert engine.frames(peer.worker_id, type="pong") == [{"type": "pong"}]
    engine.clear_transcript()
    assert engine.transcript() == []


async def test_transcript_keeps_non_json_and_binary(engine):
    peer = await Peer.join(engine.url, "odd")
    await peer.send("definitely not json")
    await peer.send_bytes(b"OTLP\x00\x01")
    await settle(peer)
    entries = [e for e in engine.transcript() if e["conn"] == peer.worker_id]
    assert {"text": "definitely not json"}.items() <= next(
        e for e in entries if "text" in e
    ).items()
    binary = next(e for e in entries if e["kind"] == "binary")
    assert binary["size"] == 6 and binary["base64"] == "T1RMUAAB"


async def test_wait_for_frame(engine):
    peer = await Peer.join(engine.url, "w")
    await peer.register("w::fn")
    frame = await engine.wait_for_frame("registerfunction", worker_id=peer.worker_id)
    assert frame["id"] == "w::fn"
    with pytest.raises(TimeoutError):
        await engine.wait_for_frame("nothing", timeout=0.1)


async def test_transcript_can_be_disabled():
    async with own_engine(transcript=False) as eng:
        await Peer.join(eng.url, "x")
        with pytest.raises(RuntimeError):
            eng.transcript()


async def test_drop_one_connection_abruptly(engine):
    provider, caller = await pair(engine)
    inv = await caller.invoke("svc::fn", 1)
    await provider.recv_type("invokefunction")
    engine.drop(provider.worker_id)
    assert await provider.wait_closed() is None  # no Close frame
    result = await caller.recv_type("invocationresult")
    assert result["invocation_id"] == inv
    assert result["error"]["code"] == "invocation_stopped"
    assert [w["name"] for w in engine.workers()] == ["caller"]
    with pytest.raises(KeyError):
        engine.drop(provider.worker_id)


async def test_drop_with_a_close_code(engine):
    peer = await Peer.join(engine.url, "p")
    engine.drop(peer.worker_id, code=4001)
    assert await peer.wait_closed() == 4001
    await engine.wait_for(lambda: not engine.workers())


async def test_drop_all(engine):
    peers = [await Peer.join(engine.url, f"p{i}") for i in range(3)]
    await settle(*peers)
    assert engine.drop_all() == 3
    for peer in peers:
        assert await peer.wait_closed() is None
    assert engine.workers() == []


async def test_stop_and_restart_on_the_same_port(engine):
    port = engine.port
    peer = await Peer.join(engine.url, "p")
    await peer.register("p::fn")
    await settle(peer)
    await engine.stop()
    assert not engine.running
    assert await peer.wait_closed() is None
    with pytest.raises(OSError):
        await RawClient.connect(engine.url)
    await engine.start()
    assert engine.port == port and engine.running
    again = await Peer.join(engine.url, "p")
    await settle(again)
    assert engine.functions() == []  # fresh state
    assert [w["worker_id"] for w in engine.workers()] == [again.worker_id]
    generation = engine.stats()["generation"]
    await engine.restart()
    assert await again.wait_closed() is None
    assert engine.stats()["generation"] == generation + 1
    assert (await Peer.join(engine.url, "q")).worker_id


async def test_delay_results(engine):
    provider, caller = await pair(engine)
    rule = engine.delay_results(0.3, "svc::fn", count=1)
    inv = await caller.invoke("svc::fn", 1)
    await provider.recv_type("invokefunction")
    started = time.monotonic()
    await provider.result(inv, "slow")
    result = await caller.recv_type("invocationresult")
    assert result["result"] == "slow"
    # A lower bound: the delay started after ``started``; load only adds to it.
    assert time.monotonic() - started >= 0.28
    assert rule.matched == 1 and not rule.active
    inv = await caller.invoke("svc::fn", 2)
    await provider.recv_type("invokefunction")
    await provider.result(inv, "fast")
    assert (await caller.recv_type("invocationresult"))["result"] == "fast"
    # count=1: the spent rule let the second result through untouched.
    assert rule.matched == 1


async def test_withhold_and_release_results(engine):
    provider, caller = await pair(engine)
    other = await Peer.join(engine.url, "other")
    await other.register("other::fn")
    await settle(other)
    rule = engine.withhold_results("svc::fn")
    inv = await caller.invoke("svc::fn", 1)
    await provider.recv_type("invokefunction")
    await provider.result(inv, "held")
    await settle(provider)
    await caller.expect_silence(0.1)
    # Other functions are unaffected.
    inv2 = await caller.invoke("other::fn", 2)
    await other.recv_type("invokefunction")
    await other.result(inv2, "free")
    assert (await caller.recv_type("invocationresult"))["result"] == "free"
    assert rule.release() == 1
    result = await caller.recv_type("invocationresult")
    assert (result["invocation_id"], result["result"]) == (inv, "held")
    engine.clear_faults()
    inv3 = await caller.invoke("svc::fn", 3)
    await provider.recv_type("invokefunction")
    await provider.result(inv3, "normal")
    assert (await caller.recv_type("invocationresult"))["result"] == "normal"


async def test_withheld_result_for_a_departed_caller_is_dropped(engine):
    provider, caller = await pair(engine)
    rule = engine.withhold_results()
    inv = await caller.invoke("svc::fn", 1)
    await provider.recv_type("invokefunction")
    await provider.result(inv, "x")
    await settle(provider)
    await caller.abort()
    await engine.wait_for(lambda: len(engine.workers()) == 1)
    assert rule.release() == 1  # delivered to nobody, no error


async def test_send_raw_text_frame_and_ping(engine):
    peer = await Peer.join(engine.url, "target")
    peer.auto_pong = True
    engine.send_text(peer.worker_id, "not json {")
    assert await peer.next_event() == ("text", "not json {")
    engine.send_frame(peer.worker_id, {"type": "somethingnew", "x": 1})
    assert await peer.recv() == {"type": "somethingnew", "x": 1}
    engine.send_frame(
        peer.worker_id,
        RegistrationRejected(
            code="FUNCTION_NAMESPACE_CONFLICT",
            namespace="default",
            function_id="f",
            owner_worker_id="",
        ),
    )
    assert (await peer.recv())["type"] == "registrationrejected"
    engine.send_binary(peer.worker_id, b"\x00\x01")
    assert await peer.next_event() == ("binary", b"\x00\x01")
    engine.send_ping(peer.worker_id, b"are you there")
    assert await peer.next_event() == ("ping", b"are you there")
    await engine.wait_for_frame(worker_id=peer.worker_id, direction="in", type=None, timeout=30)
    await engine.wait_for(
        lambda: any(
            e["kind"] == "pong" and e["conn"] == peer.worker_id for e in engine.transcript()
        )
    )
    # Raw bytes go straight to the socket: here a hand-made unmasked text frame.
    engine.send_raw(peer.worker_id, b"\x81\x04raw!")
    assert await peer.next_event() == ("text", "raw!")
    # And garbage really is garbage for the client's WebSocket parser.
    engine.send_raw(peer.worker_id, b"\x8f\x00")
    with pytest.raises((Closed, AssertionError)):
        while True:
            await peer.recv(timeout=2)


async def test_pending_invocations_and_stats(engine):
    provider, caller = await pair(engine)
    inv = await caller.invoke("svc::fn", 1)
    await provider.recv_type("invokefunction")
    assert engine.pending_invocations() == [
        {
            "invocation_id": inv,
            "function_id": "svc::fn",
            "caller": caller.worker_id,
            "handler": provider.worker_id,
        }
    ]
    stats = engine.stats()
    assert stats["workers"] == 2 and stats["pending_invocations"] == 1
    await provider.result(inv, None)
    await caller.recv_type("invocationresult")


async def test_wait_for_helpers(engine):
    async with anyio.create_task_group() as tg:

        async def later():
            await anyio.sleep(0.05)
            peer = await Peer.join(engine.url, "late", namespace="ns")
            await peer.register("late::fn")
            await peer.send({"type": "registertriggertype", "id": "tt", "description": ""})
            await peer.send(
                {
                    "type": "registertrigger",
                    "id": bid,
                    "trigger_type": "tt",
                    "function_id": "late::fn",
                    "config": {},
                }
            )

        bid = new_id()
        tg.start_soon(later)
        worker = await engine.wait_for_worker("late", namespace="ns")
        assert worker["name"] == "late"
        assert (await engine.wait_for_function("late::fn", "ns"))["worker_id"]
        assert (await engine.wait_for_trigger_type("tt", "ns"))["provider"]
        assert (await engine.wait_for_binding(bid))["id"] == bid
    with pytest.raises(TimeoutError):
        await engine.wait_for_worker("never", timeout=0.05)
