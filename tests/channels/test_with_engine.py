"""Channels end to end against the reference engine (``iii.testing``).

Async tests run under asyncio and trio with the engine on the test's own
loop; the blocking tests use an engine on a background thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union, cast

import anyio
import pytest

import iii
from iii import (
    Channel,
    ChannelError,
    ChannelReader,
    ChannelWriter,
    InitOptions,
    create_channel,
    create_channel_async,
)
from iii.testing import EngineThread, serve_engine
from iii_protocol import StreamChannelRef, to_json_value

Item = Union[str, bytes]
MiB = 1024 * 1024


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineThread]:
    with EngineThread() as running:
        yield running


def _options(name: str) -> InitOptions:
    return InitOptions(worker_name=name, otel={"enabled": False})


async def _collect(reader: ChannelReader) -> list[Item]:
    return [item async for item in reader.messages()]


# -- async: asyncio and trio -----------------------------------------------------


@pytest.mark.anyio
async def test_round_trip_in_order_then_end_of_stream() -> None:
    async with (
        serve_engine() as engine,
        iii.register_worker_async(engine.url, _options("chan-async")) as worker,
    ):
        channel = await create_channel_async(worker)
        assert isinstance(channel, Channel)
        assert channel.reader_ref.channel_id == channel.writer_ref.channel_id
        got: list[Item] = []

        async def read() -> None:
            got.extend(await _collect(channel.reader))

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await channel.writer.send_message_async('{"kind": "meta", "n": 2}')
            await channel.writer.write(b"hello ")
            await channel.writer.write(b"world")
            await channel.writer.close_async()

        assert got == ['{"kind": "meta", "n": 2}', b"hello ", b"world"]
        assert channel.reader.ended
        # Both ends finished: the engine forgot the channel.
        await engine.wait_for(lambda: not engine.channels())


@pytest.mark.anyio
async def test_a_few_mib_cross_a_small_buffer_with_read_all() -> None:
    payload = bytes(range(251)) * (3 * 1024 * 1024 // 251)  # ~3 MiB, not a multiple of 64 KiB
    texts: list[str] = []
    async with (
        serve_engine() as engine,
        iii.register_worker_async(engine.url, _options("chan-big")) as worker,
    ):
        channel = await create_channel_async(worker, buffer_size=2)
        channel.reader.on_message(texts.append)
        result: list[bytes] = []

        async def read() -> None:
            result.append(await channel.reader.read_all())

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            async with channel.writer as writer:
                await writer.send_message_async("start")
                await writer.write(payload)
                await writer.send_message_async("end")
    assert result == [payload]
    assert texts == ["start", "end"]


def _more_than_the_kernel_buffers() -> int:
    """A stream size no socket buffers can absorb: the writer's send buffer and
    the engine's receive buffer at their largest, and then some."""
    try:
        wmem = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
        rmem = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return 16 * MiB
    return max(16 * MiB, (wmem + rmem) // MiB * MiB + 4 * MiB)


@pytest.mark.anyio
async def test_a_full_channel_makes_the_writer_wait() -> None:
    total = _more_than_the_kernel_buffers()
    chunk = b"x" * 65536
    written = 0
    writer_done = anyio.Event()
    async with (
        serve_engine() as engine,
        iii.register_worker_async(engine.url, _options("chan-backpressure")) as worker,
    ):
        channel = await create_channel_async(worker, buffer_size=1)

        async def write() -> None:
            nonlocal written
            async with channel.writer as writer:
                for _ in range(total // len(chunk)):
                    await writer.write(chunk)
                    written += len(chunk)
            writer_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            # The engine's one-item queue fills up, then it stops reading the writer...
            await engine.wait_for(lambda: cast(int, engine.channels()[0]["items_written"]) >= 1)
            # ...so once every task waits, the writer waits on its socket, unfinished:
            # what it wrote so far fits in the queue and the kernel's buffers.
            await anyio.wait_all_tasks_blocked()
            assert engine.channels()[0]["items_written"] == 1
            assert not writer_done.is_set()
            assert written < total
            received = 0
            async for data in channel.reader:
                received += len(data)
    assert received == total == written


@pytest.mark.anyio
async def test_a_reader_connecting_after_the_writer_finished_gets_everything() -> None:
    async with (
        serve_engine() as engine,
        iii.register_worker_async(engine.url, _options("chan-late")) as worker,
    ):
        channel = await create_channel_async(worker, buffer_size=8)
        await channel.writer.send_message_async("m")
        await channel.writer.write(b"abc")
        await channel.writer.close_async()  # confirmed with no reader connected yet
        assert channel.writer.closed
        assert await _collect(channel.reader) == ["m", b"abc"]


@pytest.mark.anyio
async def test_an_empty_stream_ends_cleanly() -> None:
    async with (
        serve_engine() as engine,
        iii.register_worker_async(engine.url, _options("chan-empty")) as worker,
    ):
        channel = await create_channel_async(worker)
        await channel.writer.close_async()
        assert await channel.reader.read_all() == b""


@pytest.mark.anyio
async def test_a_wrong_access_key_is_a_404_channel_error() -> None:
    async with (
        serve_engine() as engine,
        iii.register_worker_async(engine.url, _options("chan-404")) as worker,
    ):
        channel = await create_channel_async(worker)
        bad = {**to_json_value(channel.reader_ref), "access_key": "not-the-key"}  # type: ignore[dict-item]
        reader = ChannelReader(engine.url, bad)
        with pytest.raises(ChannelError) as info:
            await reader.read_all()
        assert info.value.status_code == 404
        await channel.writer.close_async()
        assert await channel.reader.read_all() == b""


@pytest.mark.anyio
async def test_a_second_reader_of_the_same_channel_gets_no_data() -> None:
    async with (
        serve_engine() as engine,
        iii.register_worker_async(engine.url, _options("chan-twice")) as worker,
    ):
        channel = await create_channel_async(worker)
        async with anyio.create_task_group() as tg:

            async def first() -> None:
                assert await channel.reader.read_all() == b"data"

            tg.start_soon(first)
            await engine.wait_for(lambda: engine.channels()[0]["reader_connected"])
            second = ChannelReader(engine.url, channel.reader_ref)
            assert await second.read_all() == b""  # accepted and closed at once
            await channel.writer.write(b"data")
            await channel.writer.close_async()


@pytest.mark.anyio
async def test_an_async_handler_reads_a_channel_it_was_given() -> None:
    async def consume(data: dict[str, Any]) -> dict[str, Any]:
        reader = data["reader"]
        assert isinstance(reader, ChannelReader)
        messages: list[str] = []
        reader.on_message(messages.append)
        body = await reader.read_all()
        return {"bytes": len(body), "messages": messages}

    async with (
        serve_engine() as engine,
        iii.register_worker_async(engine.url, _options("chan-consumer")) as consumer,
        iii.register_worker_async(engine.url, _options("chan-producer")) as producer,
    ):
        consumer.register_function("chan::consume", consume)
        await engine.wait_for_function("chan::consume")
        channel = await create_channel_async(producer)
        results: list[Any] = []

        async def call() -> None:
            results.append(
                await producer.trigger_async(
                    {
                        "function_id": "chan::consume",
                        "payload": {"reader": to_json_value(channel.reader_ref)},
                    }
                )
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            async with channel.writer as writer:
                await writer.send_message_async('{"kind": "meta", "n": 2}')
                await writer.write(b"hello ")
                await writer.write(b"world")
    assert results == [{"bytes": 11, "messages": ['{"kind": "meta", "n": 2}']}]


# -- blocking: plain threads ---------------------------------------------------------


def test_sync_round_trip_across_threads(engine: EngineThread) -> None:
    worker = iii.register_worker(engine.url, _options("chan-sync"))
    try:
        channel = create_channel(worker, buffer_size=4)
        payload = b"x" * (1024 * 1024 + 7)

        def write() -> None:
            with channel.writer as writer:
                writer.send_message("meta")
                writer.write_sync(payload)

        thread = threading.Thread(target=write)
        thread.start()
        texts: list[str] = []
        channel.reader.on_message(texts.append)
        chunks = list(channel.reader)
        thread.join()
        assert texts == ["meta"]
        assert b"".join(chunks) == payload
        assert all(len(c) <= 64 * 1024 for c in chunks)
        assert channel.reader.ended
    finally:
        worker.shutdown()


def test_sync_reader_after_the_writer_and_read_all_sync(engine: EngineThread) -> None:
    worker = iii.register_worker(engine.url, _options("chan-sync-late"))
    try:
        channel = create_channel(worker)
        channel.writer.write_sync(b"one ")
        channel.writer.send_message("note")
        channel.writer.write_sync(bytearray(b"two"))
        channel.writer.close()
        assert list(channel.reader.messages_sync()) == [b"one ", "note", b"two"]
        reader = ChannelReader(engine.url, channel.reader_ref)
        with pytest.raises(ChannelError) as info:  # the finished channel is gone
            reader.read_all_sync()
        assert info.value.status_code == 404
    finally:
        worker.shutdown()


def test_two_thread_workers_pass_a_reader_ref_through_a_call(engine: EngineThread) -> None:
    """The captured sequence of docs/protocol.md#channels-in-the-sdk, with blocking workers."""

    def consume(data: dict[str, Any]) -> dict[str, Any]:
        reader = data["reader"]
        messages: list[str] = []
        reader.on_message(messages.append)
        return {"bytes": len(reader.read_all_sync()), "messages": messages}

    a = iii.register_worker(engine.url, _options("chan-a"))
    b = iii.register_worker(engine.url, _options("chan-b"))
    try:
        a.register_function("chan::count", consume)
        engine.wait_for_function("chan::count")
        channel = create_channel(b)
        results: list[Any] = []
        call = threading.Thread(
            target=lambda: results.append(
                b.trigger(
                    {
                        "function_id": "chan::count",
                        "payload": {"reader": to_json_value(channel.reader_ref)},
                    }
                )
            )
        )
        call.start()
        with channel.writer as writer:
            writer.send_message('{"kind": "meta", "n": 2}')
            writer.write_sync(b"hello ")
            writer.write_sync(b"world")
        call.join()
        assert results == [{"bytes": 11, "messages": ['{"kind": "meta", "n": 2}']}]
    finally:
        a.shutdown()
        b.shutdown()


def test_a_writer_ref_can_be_handed_out_too(engine: EngineThread) -> None:
    def produce(data: dict[str, Any]) -> None:
        writer = data["out"]
        assert isinstance(writer, ChannelWriter)
        with writer:
            for n in range(3):
                writer.write_sync(str(n).encode())

    worker = iii.register_worker(engine.url, _options("chan-writer-ref"))
    try:
        worker.register_function("chan::produce", produce)
        engine.wait_for_function("chan::produce")
        channel = create_channel(worker)
        ref = StreamChannelRef(
            channel_id=channel.writer_ref.channel_id,
            access_key=channel.writer_ref.access_key,
            direction="write",
        )
        worker.trigger({"function_id": "chan::produce", "payload": {"out": to_json_value(ref)}})
        assert channel.reader.read_all_sync() == b"012"
    finally:
        worker.shutdown()
