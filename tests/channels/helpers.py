"""Run one reader/writer scenario in a given mode: plain thread, asyncio or trio."""

from __future__ import annotations

from typing import Optional, Union

import anyio

from iii import ChannelError, ChannelReader, ChannelWriter

Item = Union[str, bytes]

MODES = ["sync", "asyncio", "trio"]
ASYNC_MODES = ["asyncio", "trio"]


def drain(mode: str, reader: ChannelReader) -> tuple[list[Item], Optional[ChannelError]]:
    """Every item the reader yields (text and binary), and the error that ended it."""
    got: list[Item] = []
    try:
        if mode == "sync":
            try:
                got.extend(reader.messages_sync())
            finally:
                reader.close()
        else:

            async def main() -> None:
                try:
                    async for item in reader.messages():
                        got.append(item)
                finally:
                    await reader.close_async()

            anyio.run(main, backend=mode)
    except ChannelError as exc:
        return got, exc
    return got, None


def produce(mode: str, writer: ChannelWriter, items: list[Item], *, close: bool = True) -> None:
    """Send ``items`` (str: text item, bytes: binary) and close the writer."""
    if mode == "sync":
        for item in items:
            if isinstance(item, str):
                writer.send_message(item)
            else:
                writer.write_sync(item)
        if close:
            writer.close()
        return

    async def main() -> None:
        for item in items:
            if isinstance(item, str):
                await writer.send_message_async(item)
            else:
                await writer.write(item)
        if close:
            await writer.close_async()

    anyio.run(main, backend=mode)
