"""The public strategies (``iii_protocol.strategies``) generate what they promise,
checked against a second implementation where there is one (wsproto)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto import events as wse
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

from iii_protocol import (
    KNOWN_FRAMES,
    RemoteProtocolError,
    UnknownFrame,
    decode_frame,
    encode_frame,
)
from iii_protocol import strategies as s

relaxed = settings(deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow])


def test_importing_the_protocol_does_not_import_hypothesis() -> None:
    code = "import sys, iii_protocol; sys.exit('hypothesis' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_accept_key_matches_rfc_6455() -> None:
    assert s.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert s.accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_frames_of_needs_a_class() -> None:
    with pytest.raises(ValueError):
        s.frames_of()
    with pytest.raises(ValueError):
        s.ws_frame(b"x", mask=b"abc")


#: wsproto's ``Frame.payload``: text decoded, bytes, or a Close frame's (code, reason).
Payload = Union[bytes, str, tuple[int, str]]


def _frames(data: bytes, *, client: bool) -> list[tuple[Opcode, Payload, bool]]:
    proto = FrameProtocol(client=client, extensions=[])
    proto.receive_bytes(data)
    return [(f.opcode, f.payload, f.message_finished) for f in proto.received_frames()]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
@pytest.mark.parametrize("masked", [False, True])
def test_ws_frame_is_what_wsproto_reads(size: int, masked: bool) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    data = s.ws_frame(payload, opcode=s.OP_BINARY, mask=b"\x01\x02\x03\x04" if masked else None)
    assert _frames(data, client=not masked) == [(Opcode.BINARY, payload, True)]


@relaxed
@given(st.data())
def test_ws_messages_reassemble(data: st.DataObject) -> None:
    masked = data.draw(st.booleans())
    payload = data.draw(s.frame_texts()).encode()
    wire = data.draw(s.ws_messages(st.just(payload), masked=masked, binary=None))
    parts = [
        p for op, p, _ in _frames(wire, client=not masked) if op not in (Opcode.PING, Opcode.PONG)
    ]
    joined = b""
    for p in parts:
        assert not isinstance(p, tuple), p  # (a Close frame's code and reason)
        joined += p.encode() if isinstance(p, str) else p
    assert joined == payload


@relaxed
@given(st.data())
def test_hostile_ws_frames_are_refused_or_read(data: st.DataObject) -> None:
    masked = data.draw(st.booleans())
    wire = data.draw(s.hostile_ws_frames(masked=masked, max_message_size=64))
    with contextlib.suppress(ParseFailed):
        _frames(wire, client=not masked)


@relaxed
@given(st.data())
def test_ws_streams_are_bytes(data: st.DataObject) -> None:
    wire = data.draw(s.ws_streams(masked=data.draw(st.booleans()), max_message_size=64))
    assert isinstance(wire, bytes)
    assert b"".join(data.draw(s.chunked(wire))) == wire


@pytest.mark.parametrize(
    ("strategy", "classes"),
    [
        (s.engine_frames, (*s.ENGINE_TO_WORKER, UnknownFrame)),
        (s.worker_frames, (*s.WORKER_TO_ENGINE, UnknownFrame)),
        (s.frames, (*KNOWN_FRAMES, UnknownFrame)),
    ],
    ids=["engine", "worker", "any"],
)
@relaxed
@given(data=st.data())
def test_frames_round_trip(
    strategy: st.SearchStrategy[s.AnyFrame], classes: tuple[type, ...], data: st.DataObject
) -> None:
    frame = data.draw(strategy)
    assert isinstance(frame, classes)
    assert decode_frame(encode_frame(frame)) == frame


@relaxed
@given(st.one_of(s.hostile_frame_texts(), s.deep_json_texts()))
def test_hostile_texts_decode_or_are_refused(text: str) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_frame(text)


@relaxed
@given(s.hostile_payloads())
def test_hostile_payloads_decode_or_are_refused(raw: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_frame(raw)


@relaxed
@given(s.invalid_utf8)
def test_invalid_utf8_is_invalid(raw: bytes) -> None:
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")


@relaxed
@given(s.upgrade_requests(hostile=False))
def test_good_upgrade_requests_are_accepted_by_wsproto(request: bytes) -> None:
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(request)
    assert any(isinstance(e, wse.Request) for e in server.events())


@relaxed
@given(s.upgrade_requests())
def test_any_upgrade_request_is_one_http_head(request: bytes) -> None:
    assert request.endswith(b"\r\n\r\n")
