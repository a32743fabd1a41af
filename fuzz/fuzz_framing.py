"""Fuzz the framing fast path against wsproto: the same reads, the same result.

Two ``Framing`` objects (``iii_protocol._framing``) are driven in step: one
with the fast path (whole text frames parsed and written by the core), one
with ``fast_path=False`` (every byte through wsproto, the reference).  Both
draw masking keys (and the upgrade nonce) from the same seeded source, so
what they write can be compared byte for byte.

Input layout:

* byte 0, flags: ``& 3`` the upgrade answer: 0 = a correct ``101``, sharing
  the first read with the frames after it; 1 = a correct ``101`` cut into the
  reads like everything else; 2 = the input's own answer (``@@ACCEPT@@`` is
  replaced by the right ``Sec-WebSocket-Accept``), up to its first blank line;
  3 = no answer (the bytes arrive during the upgrade).
  ``4``: the rest is a list of messages separated by ``FF FF``, each sent as
  one unmasked text frame (``8``: in three fragments with a ping between the
  first two).  ``16``: after each read the worker sends a message (the read's
  bytes as text, lone surrogates included); ``32``: and a ping.  ``64``:
  messages are padded with spaces past 125 bytes (the 2-byte length form);
  ``128``: past 65 535 bytes (the 8-byte form) with a limit of 100 000 bytes.
* byte 1: read size (0 = everything at once); byte 2: a second read size,
  alternating with the first (0 = the same).
* the rest: the engine's bytes (or messages).

Invariant: after every read, send and ping both framings produced the same
items (text, ``Accepted``, ``BinaryMessage``, ``Lost``) and the same bytes
out, and agree on whether the socket is open; once one reports ``Lost`` the
other does at the same read, and both stop there.

    python fuzz/fuzz_framing.py -max_total_time=60
"""

from __future__ import annotations

import base64
import random
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Union

from _inputs import SEPARATOR as SEPARATOR  # re-exported: the tests frame with it
from _inputs import framed
from wsproto import frame_protocol, utilities

from iii_protocol import Config
from iii_protocol._framing import Framing, Lost
from iii_protocol.strategies import accept_key

LIMIT = 2048
BIG_LIMIT = 100_000
CONFIG = Config(max_message_size=LIMIT, fragment_threshold=512, fragment_size=100)
BIG_CONFIG = Config(max_message_size=BIG_LIMIT, fragment_threshold=80_000, fragment_size=30_000)
ACCEPT = b"@@ACCEPT@@"

#: A read (bytes), a message to send (str) or a ping (None).
Step = Union[bytes, str, None]


class Keys:
    """Seeded randomness, standing in for ``os.urandom`` in wsproto and for the
    fast path's key source: two framings writing the same frames in the same
    order draw the same keys."""

    def __init__(self, seed: int = 0) -> None:
        self._random = random.Random(seed)

    def urandom(self, n: int) -> bytes:
        return self._random.randbytes(n)

    def mask_key(self) -> bytes:
        return self.urandom(4)


#: The ``Sec-WebSocket-Accept`` both framings expect (their nonce is the first draw).
ACCEPT_VALUE = accept_key(base64.b64encode(Keys().urandom(16))).encode()
#: A correct answer to the upgrade.
UPGRADE = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + ACCEPT_VALUE + b"\r\n\r\n"
)


@contextmanager
def seeded(keys: Keys) -> Iterator[None]:
    """wsproto draws its randomness (nonce, masking keys) from ``keys`` meanwhile."""
    modules = (frame_protocol, utilities)
    saved = [getattr(module, "os") for module in modules]  # noqa: B009 - not re-exported
    shim = types.SimpleNamespace(urandom=keys.urandom)
    for module in modules:
        setattr(module, "os", shim)  # noqa: B010
    try:
        yield
    finally:
        for module, os in zip(modules, saved, strict=True):
            setattr(module, "os", os)  # noqa: B010


def transcript(steps: Sequence[Step], config: Config, *, fast: bool) -> list[object]:
    """Everything one framing produces for ``steps``: per step, the items and
    the bytes out (or the error a send raised) and whether the socket is open."""
    keys = Keys()
    log: list[object] = []
    with seeded(keys):
        framing = Framing(config, mask_key=keys.mask_key, fast_path=fast)
        framing.start()
        framing.request("engine.test", "/", ())
        log.append(bytes(framing.out))
        framing.out.clear()
        for step in steps:
            if isinstance(step, bytes):
                items = list(framing.receive(step))
                log.append(items)
                assert all(type(item) is not Lost for item in items[:-1]), items
                if items and type(items[-1]) is Lost:
                    framing.stop(items[-1].code)
                    log.append(bytes(framing.out))
                    return log
            elif framing.is_open:
                try:
                    if step is None:
                        framing.ping()
                    else:
                        framing.send_text(step)
                except UnicodeError as exc:  # a lone surrogate has no UTF-8 form
                    log.append(repr(exc))
            log.append(bytes(framing.out))
            framing.out.clear()
            log.append(framing.is_open)
    return log


def check(steps: Sequence[Step], config: Config = CONFIG) -> None:
    """The fast path and wsproto alone produce the same transcript."""
    fast = transcript(steps, config, fast=True)
    reference = transcript(steps, config, fast=False)
    if fast != reference:
        for i, (a, b) in enumerate(zip(fast, reference, strict=False)):
            assert a == b, f"entry {i} differs:\nfast:      {a!r}\nreference: {b!r}"
        raise AssertionError(f"lengths differ: {len(fast)} vs {len(reference)}")


def _reads(data: bytes, first: int, second: int) -> list[bytes]:
    if first == 0:
        return [data] if data else []
    # At most a few hundred reads, however large the input grew.
    floor = len(data) // 256
    sizes = (max(first, floor), max(second or first, floor))
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        size = sizes[len(out) % 2]
        out.append(data[pos : pos + size])
        pos += size
    return out


def _pad(message: bytes, minimum: int) -> bytes:
    return message + b" " * (minimum - len(message)) if len(message) < minimum else message


def steps_for(data: bytes) -> tuple[list[Step], Config]:
    """The reads and sends an input stands for (see the module docstring)."""
    flags, first, second, payload = data[0], data[1], data[2], data[3:]
    config = BIG_CONFIG if flags & 128 else CONFIG
    mode = flags & 3
    head = b""
    if mode == 2:
        end = payload.find(b"\r\n\r\n")
        cut = len(payload) if end < 0 else end + 4
        head, payload = payload[:cut].replace(ACCEPT, ACCEPT_VALUE), payload[cut:]
    elif mode != 3:
        head = UPGRADE
    if flags & 4:
        messages = payload.split(SEPARATOR)
        if flags & 128:
            messages = [_pad(m, 65_536) for m in messages[:2]]
        elif flags & 64:
            messages = [_pad(m, 126) for m in messages]
        payload = b"".join(
            framed(SEPARATOR.join(messages), binary=False, fragmented=bool(flags & 8))
        )
    reads = _reads(payload, first, second)
    if mode == 1:
        reads = _reads(head + payload, first, second)
    elif head:
        reads = [head + reads[0], *reads[1:]] if reads and mode == 0 else [head, *reads]
    steps: list[Step] = []
    for chunk in reads:
        steps.append(chunk)
        if flags & 16:
            steps.append(chunk.decode("utf-8", "surrogateescape"))
        if flags & 32:
            steps.append(None)
    return steps, config


def TestOneInput(data: bytes) -> None:
    if len(data) < 3:
        return
    steps, config = steps_for(data)
    check(steps, config)


if __name__ == "__main__":
    from _harness import main

    main("framing", TestOneInput, ("iii_protocol", "wsproto", "h11"))
