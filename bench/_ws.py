"""Just enough RFC 6455 for the engine stand-in and the floor client.

Bench-only code: no extensions, no validation beyond what the benchmarks need.
Client frames are masked with a fresh ``os.urandom(4)`` key each, as RFC 6455
requires (and as wsproto does in our SDK), so the floor does the same work.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from typing import Optional, Union

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_XOR = [bytes(a ^ b for a in range(256)) for b in range(256)]

Buffer = Union[bytes, bytearray, memoryview]


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key.strip() + GUID).digest())


def upgrade_request(host: str, port: int, target: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def header(opcode: int, length: int, key: Optional[bytes] = None) -> bytes:
    b0 = 0x80 | opcode
    bit = 0x80 if key is not None else 0
    if length < 126:
        head = bytes((b0, bit | length))
    elif length < 65536:
        head = struct.pack("!BBH", b0, bit | 126, length)
    else:
        head = struct.pack("!BBQ", b0, bit | 127, length)
    return head + key if key is not None else head


def mask(data: Buffer, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` (the fastest pure-Python way per size)."""
    n = len(data)
    if n < 512:
        k = (key * (n // 4 + 1))[:n]
        return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")
    b = bytearray(data)
    t0, t1, t2, t3 = (_XOR[x] for x in key)
    b[0::4] = b[0::4].translate(t0)
    b[1::4] = b[1::4].translate(t1)
    b[2::4] = b[2::4].translate(t2)
    b[3::4] = b[3::4].translate(t3)
    return bytes(b)


def mask_at(data: Buffer, key: bytes, offset: int) -> bytes:
    """``mask`` for a slice that starts ``offset`` bytes into the payload."""
    r = offset % 4
    return mask(data, key[r:] + key[:r])


def server_frame(payload: Buffer, opcode: int = OP_TEXT) -> bytes:
    return header(opcode, len(payload)) + payload


def client_frame(payload: Buffer, opcode: int = OP_TEXT) -> bytes:
    key = os.urandom(4)
    return header(opcode, len(payload), key) + mask(payload, key)


class FrameReader:
    """Incremental frame parser. ``feed`` returns ``(opcode, fin, payload, key)``
    tuples; ``payload`` is still masked when ``key`` is not ``None``."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: Buffer) -> list[tuple[int, bool, bytes, Optional[bytes]]]:
        buf = self.buf
        buf += data
        out: list[tuple[int, bool, bytes, Optional[bytes]]] = []
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            hp = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                hp = pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hp = pos + 10
            key: Optional[bytes] = None
            if b1 & 0x80:
                if n < hp + 4:
                    break
                key = bytes(buf[hp : hp + 4])
                hp += 4
            end = hp + length
            if end > n:
                break
            out.append((b0 & 0x0F, bool(b0 & 0x80), bytes(buf[hp:end]), key))
            pos = end
        if pos:
            del buf[:pos]
        return out
