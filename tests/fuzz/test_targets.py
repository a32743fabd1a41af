"""The fuzz targets (``fuzz/fuzz_*.py``) as ordinary tests, no atheris needed:
every seed of the committed corpus replayed through ``TestOneInput``, then
hypothesis inputs (arbitrary bytes, and hostile protocol input from
``iii_protocol.strategies`` in each target's input layout)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iii_protocol import strategies as iii_st

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
sys.path.insert(0, str(FUZZ))

import fuzz_channel  # noqa: E402
import fuzz_connection  # noqa: E402
import fuzz_decode  # noqa: E402
import fuzz_engine  # noqa: E402
import fuzz_framing  # noqa: E402
from _harness import corpus_files  # noqa: E402

TARGETS: dict[str, Callable[[bytes], None]] = {
    "decode": fuzz_decode.TestOneInput,
    "connection": fuzz_connection.TestOneInput,
    "engine": fuzz_engine.TestOneInput,
    "channel": fuzz_channel.TestOneInput,
    "framing": fuzz_framing.TestOneInput,
}

relaxed = settings(
    deadline=None,
    max_examples=80,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_every_target_has_a_corpus() -> None:
    assert sorted(p.stem.removeprefix("fuzz_") for p in FUZZ.glob("fuzz_*.py")) == sorted(TARGETS)
    for name in TARGETS:
        seeds = corpus_files(name)
        assert len(seeds) >= 20, name
        assert any(p.name.startswith("regress-") for p in seeds), name


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_seed_corpus_passes(name: str) -> None:
    target = TARGETS[name]
    for path in corpus_files(name):
        try:
            target(path.read_bytes())
        except BaseException as exc:
            raise AssertionError(f"{path.relative_to(FUZZ)}: {exc!r}") from exc


@pytest.mark.parametrize("name", sorted(TARGETS))
@relaxed
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes(name: str, data: bytes) -> None:
    TARGETS[name](data)


_flags = st.integers(min_value=0, max_value=255)
_sizes = st.sampled_from([0, 1, 3, 64])


def _messages(texts: st.SearchStrategy[bytes], separator: bytes) -> st.SearchStrategy[bytes]:
    return st.lists(texts, max_size=5).map(separator.join)


@relaxed
@given(iii_st.hostile_payloads())
def test_decode_hostile_payloads(raw: bytes) -> None:
    fuzz_decode.TestOneInput(raw)


@relaxed
@given(
    flags=_flags,
    size=_sizes,
    payload=st.one_of(
        iii_st.ws_streams(masked=False, max_message_size=fuzz_connection.LIMIT),
        _messages(
            iii_st.frame_texts(iii_st.engine_frames).map(str.encode) | iii_st.hostile_payloads(),
            fuzz_connection.SEPARATOR,
        ),
    ),
)
def test_connection_hostile_engines(flags: int, size: int, payload: bytes) -> None:
    fuzz_connection.TestOneInput(bytes([flags, size]) + payload)


@relaxed
@given(
    flags=_flags,
    size=_sizes,
    payload=st.one_of(
        iii_st.ws_streams(masked=True, max_message_size=fuzz_engine.LIMIT),
        _messages(
            iii_st.frame_texts(iii_st.worker_frames).map(str.encode) | iii_st.hostile_payloads(),
            fuzz_engine.SEPARATOR,
        ),
        st.tuples(iii_st.upgrade_requests(), iii_st.ws_streams(masked=True)).map(b"".join),
    ),
)
def test_engine_hostile_clients(flags: int, size: int, payload: bytes) -> None:
    if not flags & 1 and not flags & 2 and not payload.startswith(b"GET"):
        flags |= 1  # mostly past the upgrade: that is where the frames are
    fuzz_engine.TestOneInput(bytes([flags, size]) + payload)


@relaxed
@given(
    flags=_flags,
    size=_sizes,
    payload=st.one_of(
        iii_st.ws_streams(masked=False, max_message_size=fuzz_channel.LIMIT),
        _messages(iii_st.hostile_payloads(), fuzz_channel.SEPARATOR),
    ),
)
def test_channel_hostile_engines(flags: int, size: int, payload: bytes) -> None:
    fuzz_channel.TestOneInput(bytes([flags | 2, size]) + payload)  # past the upgrade


@relaxed
@given(
    flags=_flags,
    sizes=st.tuples(_sizes, _sizes),
    payload=st.one_of(
        iii_st.ws_streams(masked=False, max_message_size=fuzz_framing.LIMIT),
        _messages(
            iii_st.frame_texts(iii_st.engine_frames).map(str.encode) | iii_st.hostile_payloads(),
            fuzz_framing.SEPARATOR,
        ),
    ),
)
def test_framing_fast_path_equals_wsproto(
    flags: int, sizes: tuple[int, int], payload: bytes
) -> None:
    if flags & 3 == 2:
        flags &= ~2  # an answer of the input's own is rarely right: mostly the correct one
    fuzz_framing.TestOneInput(bytes([flags, *sizes]) + payload)
