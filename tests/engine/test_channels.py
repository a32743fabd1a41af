"""Data channels on /ws/channels/{id} (docs/protocol.md#channels)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from .conftest import own_engine
from .wsclient import Peer, RawClient, Rejected

pytestmark = pytest.mark.anyio


async def create(engine, buffer_size=None):
    peer = await Peer.join(engine.url, "maker")
    data = {} if buffer_size is None else {"buffer_size": buffer_size}
    return (await peer.call("engine::channels::create", data))["result"]


def path(ref, direction=None):
    return (
        f"/ws/channels/{ref['channel_id']}?key={ref['access_key']}"
        f"&dir={direction or ref['direction']}"
    )


async def read_all(reader):
    items: list[tuple[str, Any]] = []
    while True:
        kind, payload = await reader.next_event()
        if kind == "close":
            return items, payload
        assert kind in ("text", "binary"), (kind, payload)
        items.append((kind, payload))


async def test_writer_to_reader_with_end_of_stream(engine):
    refs = await create(engine)
    reader = await RawClient.connect(engine.url, path(refs["reader"]))
    writer = await RawClient.connect(engine.url, path(refs["writer"]))
    await writer.send('{"kind": "meta", "n": 2}')
    await writer.send_bytes(b"hello ")
    await writer.send_bytes(b"world")
    await writer.close(1000)
    items, code = await read_all(reader)
    assert items == [
        ("text", '{"kind": "meta", "n": 2}'),
        ("binary", b"hello "),
        ("binary", b"world"),
    ]
    assert code == 1000
    await reader.close()
    await engine.wait_for(lambda: not engine.channels())


async def test_items_written_before_the_reader_are_buffered(engine):
    refs = await create(engine, buffer_size=8)
    writer = await RawClient.connect(engine.url, path(refs["writer"]))
    for i in range(5):
        await writer.send(f"item {i}")
    await writer.close()
    reader = await RawClient.connect(engine.url, path(refs["reader"]))
    items, code = await read_all(reader)
    assert [p for _, p in items] == [f"item {i}" for i in range(5)]
    assert code == 1000


async def test_backpressure_keeps_order_with_a_tiny_buffer(engine):
    refs = await create(engine, buffer_size=1)
    reader = await RawClient.connect(engine.url, path(refs["reader"]))
    writer = await RawClient.connect(engine.url, path(refs["writer"]))
    payloads = [bytes([i]) * 2000 for i in range(200)]

    async def write():
        for payload in payloads:
            await writer.send_bytes(payload)
        await writer.close()

    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        items, code = await read_all(reader)
    assert [p for _, p in items] == payloads
    assert code == 1000


async def test_fragmented_channel_messages_are_reassembled(engine):
    refs = await create(engine)
    reader = await RawClient.connect(engine.url, path(refs["reader"]))
    writer = await RawClient.connect(engine.url, path(refs["writer"]))
    await writer.send_fragments("abcdefghij" * 100, 64)
    await writer.close()
    items, _ = await read_all(reader)
    assert items == [("text", "abcdefghij" * 100)]


async def test_bad_key_or_unknown_channel_is_404(engine):
    refs = await create(engine)
    ref = dict(refs["reader"], access_key="00000000-0000-4000-8000-000000000000")
    with pytest.raises(Rejected) as info:
        await RawClient.connect(engine.url, path(ref))
    assert info.value.status == 404
    assert b"Channel not found" in info.value.body
    ref = dict(refs["reader"], channel_id="00000000-0000-4000-8000-000000000000")
    with pytest.raises(Rejected) as info:
        await RawClient.connect(engine.url, path(ref))
    assert info.value.status == 404


async def test_missing_or_bad_query_is_400(engine):
    refs = await create(engine)
    cid, key = refs["reader"]["channel_id"], refs["reader"]["access_key"]
    for target in (
        f"/ws/channels/{cid}?key={key}",
        f"/ws/channels/{cid}?dir=read",
        f"/ws/channels/{cid}?key={key}&dir=sideways",
    ):
        with pytest.raises(Rejected) as info:
            await RawClient.connect(engine.url, target)
        assert info.value.status == 400


async def test_each_direction_can_be_taken_once(engine):
    refs = await create(engine)
    reader = await RawClient.connect(engine.url, path(refs["reader"]))
    second = await RawClient.connect(engine.url, path(refs["reader"]))
    assert await second.wait_closed() == 1000
    writer = await RawClient.connect(engine.url, path(refs["writer"]))
    second_writer = await RawClient.connect(engine.url, path(refs["writer"]))
    assert await second_writer.wait_closed() == 1000
    await writer.send("still works")
    await writer.close()
    items, _ = await read_all(reader)
    assert items == [("text", "still works")]


async def test_either_ref_opens_either_end(engine):
    refs = await create(engine)
    reader = await RawClient.connect(engine.url, path(refs["writer"], "read"))
    writer = await RawClient.connect(engine.url, path(refs["reader"], "write"))
    await writer.send("x")
    await writer.close()
    assert (await read_all(reader))[0] == [("text", "x")]


async def test_writer_dropping_ends_the_stream(engine):
    refs = await create(engine)
    reader = await RawClient.connect(engine.url, path(refs["reader"]))
    writer = await RawClient.connect(engine.url, path(refs["writer"]))
    await writer.send("partial")
    await writer.abort()
    items, code = await read_all(reader)
    assert items == [("text", "partial")]
    assert code == 1000


async def test_reader_leaving_does_not_block_the_writer(engine):
    refs = await create(engine, buffer_size=1)
    reader = await RawClient.connect(engine.url, path(refs["reader"]))
    writer = await RawClient.connect(engine.url, path(refs["writer"]))
    await reader.abort()
    for _ in range(50):
        await writer.send_bytes(b"x" * 1000)
    await writer.close()
    assert writer.close_code == 1000


async def test_unused_channels_are_swept():
    async with own_engine(channel_ttl=0.05, channel_sweep_interval=0.05) as eng:
        await create(eng)
        await eng.wait_for(lambda: not eng.channels(), timeout=3)


async def test_channel_refs_travel_through_invocations(engine):
    """docs/protocol.md#channel-refs: refs are plain JSON in data; the handler opens the reader."""
    refs = await create(engine)
    handler = await Peer.join(engine.url, "consumer")
    await handler.register("files::consume")
    caller = await Peer.join(engine.url, "producer")
    await engine.wait_for_function("files::consume")
    inv = await caller.invoke("files::consume", {"input": refs["reader"]})
    frame = await handler.recv_type("invokefunction")
    ref = frame["data"]["input"]
    reader = await RawClient.connect(engine.url, path(ref))
    writer = await RawClient.connect(engine.url, path(refs["writer"]))
    await writer.send_bytes(b"data")
    await writer.close()
    items, _ = await read_all(reader)
    await handler.result(inv, {"bytes": sum(len(p) for _, p in items)})
    assert (await caller.recv_type("invocationresult"))["result"] == {"bytes": 4}
