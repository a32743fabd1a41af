"""The framing fast path is wsproto's equal: the same reads give the same items
and the same bytes out, whatever frames come and however reads cut them.

Every test drives two ``Framing`` objects in step (``fuzz/fuzz_framing.py``'s
``check``): one with the fast path, one with every byte through wsproto, both
drawing masking keys from one seeded source.
"""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iii_protocol import Config
from iii_protocol import strategies as iii_st
from iii_protocol._framing import Accepted, Framing, mask, random_mask_keys
from iii_protocol.strategies import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    ws_close_payload,
    ws_frame,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fuzz"))

from fuzz_framing import (
    BIG_CONFIG,
    CONFIG,
    LIMIT,
    UPGRADE,
    Keys,
    Step,
    check,
    seeded,
)

relaxed = settings(
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _bytewise(data: bytes) -> list[Step]:
    return [data[i : i + 1] for i in range(len(data))]


def _every_cut(stream: bytes, config: Config = CONFIG) -> None:
    """``stream`` after the upgrade, cut in two at every place, and byte by byte."""
    check([UPGRADE + stream], config)
    check([UPGRADE, *_bytewise(stream)], config)
    for cut in range(1, len(stream)):
        check([UPGRADE, stream[:cut], stream[cut:]], config)


# -- reading ---------------------------------------------------------------------------


def test_whole_text_frames_never_reach_wsproto() -> None:
    keys = Keys()
    framing = Framing(CONFIG, mask_key=keys.mask_key)
    with seeded(keys):
        framing.start()
        framing.request("engine.test", "/", ())
    stream = ws_frame(b'{"a":1}') + ws_frame("é".encode() * 100) + ws_frame(b"x" * LIMIT)
    assert list(framing.receive(UPGRADE)) == [Accepted()]
    ws_conn = framing._ws
    assert ws_conn is not None
    with mock.patch.object(ws_conn, "receive_data", side_effect=AssertionError("wsproto fed")):
        assert list(framing.receive(stream)) == ['{"a":1}', "é" * 100, "x" * LIMIT]
        # Cut anywhere, still not wsproto's.
        assert list(framing.receive(stream[:1])) == []
        assert list(framing.receive(stream[1:3])) == []
        assert list(framing.receive(stream[3:20])) == ['{"a":1}']
        assert framing.buffered == 11  # of the second frame
        assert list(framing.receive(stream[20:])) == ["é" * 100, "x" * LIMIT]
    assert framing.buffered == 0


def test_reads_of_any_bytes_like_type() -> None:
    framing = Framing(CONFIG)
    framing.start()
    framing.request("engine.test", "/", ())
    assert list(framing.receive(bytearray(b"HTTP/1.1 400 Nope\r\n\r\n"))) != []
    stream = ws_frame(b"one") + ws_frame(b"two")
    keys = Keys()
    with seeded(keys):
        framing.start()
        framing.request("engine.test", "/", ())
    assert list(framing.receive(memoryview(UPGRADE + stream[:7]))) == [Accepted(), "one"]
    assert list(framing.receive(bytearray(stream[7:]))) == ["two"]


def test_the_upgrade_and_frames_in_any_reads() -> None:
    stream = ws_frame(b'{"a":1}') + ws_frame(b"\n\n\r\n") + ws_frame(b"y" * 200)
    check([UPGRADE + stream])
    check(_bytewise(UPGRADE + stream))
    for cut in range(1, len(UPGRADE) + 8):
        data = UPGRADE + stream
        check([data[:cut], data[cut:]])


def test_an_upgrade_with_bare_line_feeds() -> None:
    head = UPGRADE.replace(b"\r\n", b"\n")
    check([head + ws_frame(b"hi")])
    check(_bytewise(head + ws_frame(b"hi")))


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 400 Nope\r\ncontent-length: 3\r\n\r\nabc",
        b"HTTP/1.1 100 Continue\r\n\r\n" + UPGRADE,
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"\r\n" + UPGRADE,
        b"garbage\n\n" + UPGRADE,
        UPGRADE.replace(b"websocket", b"w\xe9bsocket"),
    ],
    ids=["refused", "informational", "no-accept", "blank-first", "garbage", "non-ascii"],
)
def test_a_failed_upgrade(answer: bytes) -> None:
    check([answer + ws_frame(b"hi")])
    check(_bytewise(answer + ws_frame(b"hi")))


def test_nothing_but_the_upgrade_so_far() -> None:
    check([UPGRADE[:20], UPGRADE[20:40]])


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 300, LIMIT - 1, LIMIT])
def test_text_frames_of_every_length_form(size: int) -> None:
    _every_cut(ws_frame(b"a" * size) + ws_frame(b"{}"))


def test_eight_byte_lengths() -> None:
    stream = ws_frame(b"b" * 65_536) + ws_frame(b"c" * 70_000) + ws_frame(b"{}")
    check([UPGRADE + stream], BIG_CONFIG)
    for cut in (1, 2, 5, 9, 10, 11, 40_000, 65_545, 65_546, len(stream) - 1):
        check([UPGRADE, stream[:cut], stream[cut:]], BIG_CONFIG)


def test_characters_cut_by_reads() -> None:
    _every_cut(ws_frame("aé€😀b".encode()) + ws_frame("😀".encode() * 40))


@pytest.mark.parametrize(
    "bad",
    [b"\xff", b"\xc0\x80", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"],
)
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_invalid_utf8_anywhere_in_a_frame(bad: bytes, where: str) -> None:
    body = b"x" * 40
    payload = {"start": bad + body, "middle": body + bad + body, "end": body + bad}[where]
    _every_cut(ws_frame(b"ok") + ws_frame(payload) + ws_frame(b"never"))


def test_control_frames_between_text_frames() -> None:
    _every_cut(
        ws_frame(b"one")
        + ws_frame(b"p1", opcode=OP_PING)
        + ws_frame(b"two")
        + ws_frame(b"q", opcode=OP_PONG)
        + ws_frame(b"three")
    )


def test_fragmented_and_binary_messages() -> None:
    _every_cut(
        ws_frame(b"fr", fin=False)
        + ws_frame(b"p", opcode=OP_PING)
        + ws_frame(b"ag", opcode=OP_CONTINUATION, fin=False)
        + ws_frame(b"ment", opcode=OP_CONTINUATION)
        + ws_frame(b"bin", opcode=OP_BINARY)
        + ws_frame(b"after")
    )


@pytest.mark.parametrize(
    "frame",
    [
        ws_frame(b"masked", mask=b"abcd"),
        ws_frame(b"m" * 200, mask=b"abcd"),
        ws_frame(b"two", long_form=126),
        ws_frame(b"eight", long_form=127),
        ws_frame(b"e" * 300, long_form=127),
        ws_frame(b"big", length=2**63),
        ws_frame(b"x" * (LIMIT + 1)),
        ws_frame(b"rsv", rsv=4),
        ws_frame(b"r", opcode=3),
        ws_frame(b"c", opcode=OP_CONTINUATION),
        ws_frame(b"x" * 126, opcode=OP_PING),
        ws_frame(b"p", opcode=OP_PING, fin=False),
        ws_frame(b"\x03\xe8\xff", opcode=OP_CLOSE),
        ws_frame(ws_close_payload(1001, b"bye"), opcode=OP_CLOSE),
        ws_frame(b"unfinished", fin=False) + ws_frame(b"new message"),
    ],
    ids=[
        "masked",
        "masked-126",
        "non-minimal-2",
        "non-minimal-8",
        "non-minimal-8-long",
        "msb-length",
        "over-the-limit",
        "rsv",
        "reserved-opcode",
        "continuation-alone",
        "long-ping",
        "fragmented-ping",
        "bad-close",
        "close",
        "text-inside-a-message",
    ],
)
def test_frames_wsproto_refuses_or_ends_on(frame: bytes) -> None:
    _every_cut(ws_frame(b"before") + frame + ws_frame(b"after"))


def test_a_limit_above_the_largest_length() -> None:
    # No length with its top bit set is read here, whatever the limit.
    huge = Config(max_message_size=2**64)
    check([UPGRADE + ws_frame(b"x", length=2**63) + b"x" * 20], huge)


@relaxed
@given(data=st.data())
def test_hostile_engines(data: st.DataObject) -> None:
    stream = data.draw(iii_st.ws_streams(masked=False, max_message_size=LIMIT))
    reads = data.draw(iii_st.chunked(UPGRADE + stream, max_chunks=24))
    check(reads)


_texts = st.one_of(
    st.text(max_size=40).map(str.encode),
    st.integers(min_value=0, max_value=3).flatmap(
        lambda k: st.text(alphabet="aé€😀", min_size=120 + k, max_size=140).map(str.encode)
    ),
    iii_st.invalid_utf8,
    st.builds(lambda a, b, c: a + b + c, st.binary(max_size=8), iii_st.invalid_utf8, st.binary()),
)


@st.composite
def _engine_frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(min_value=0, max_value=3))
    if kind == 0:
        return ws_frame(draw(_texts))
    if kind == 1:
        return draw(iii_st.ws_messages(_texts, masked=False, binary=None))
    if kind == 2:
        return draw(iii_st.hostile_ws_frames(masked=False, max_message_size=LIMIT))
    return ws_frame(draw(st.binary(max_size=4)), opcode=draw(st.sampled_from([OP_PING, OP_PONG])))


@relaxed
@given(data=st.data())
def test_text_frames_and_the_rest(data: st.DataObject) -> None:
    stream = b"".join(data.draw(st.lists(_engine_frames(), max_size=8)))
    reads = data.draw(iii_st.chunked(UPGRADE + stream, max_chunks=24))
    sends: list[Step] = data.draw(
        st.lists(
            st.none() | st.text(max_size=600) | st.text(alphabet="a€", min_size=200), max_size=4
        )
    )
    steps: list[Step] = []
    for i, chunk in enumerate(reads):
        steps.append(chunk)
        if i < len(sends):
            steps.append(sends[i])
    check(steps)


# -- writing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "a", "x" * 125, "x" * 126, "é" * 63, "é" * 64, "x" * 65_535, "x" * 65_536, "€" * 30_000],
)
def test_one_frame_messages_are_written_as_wsproto_writes_them(text: str) -> None:
    check([UPGRADE, text, None, text], BIG_CONFIG)


def test_fragmented_messages_and_bad_text_go_through_wsproto() -> None:
    check([UPGRADE, "x" * 513, "€" * 200, "\ud800", "ok\ud800" * 300, "after"])


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 1023, 1024, 1025, 70_001])
def test_mask_is_its_own_inverse(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    key = b"\x01\x80\xfe\x33"
    masked = mask(payload, key)
    assert len(masked) == size
    assert all(masked[i] == payload[i] ^ key[i % 4] for i in range(0, size, 97))
    assert mask(bytes(masked), key) == payload


def test_random_keys_come_from_the_system_pool() -> None:
    with mock.patch("os.urandom", side_effect=[b"abcdefgh", b"ijkl"]) as urandom:
        keys = random_mask_keys(pool=2)
        assert [keys(), keys(), keys()] == [b"abcd", b"efgh", b"ijkl"]
    assert [c.args for c in urandom.call_args_list] == [(8,), (8,)]
    default = random_mask_keys()
    assert len({default() for _ in range(50)}) > 1
