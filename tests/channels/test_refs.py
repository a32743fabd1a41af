"""Channel refs inside payloads, and the ends' constructors (no sockets)."""

from __future__ import annotations

import ssl
from typing import Any

import attrs
import pytest

from iii import (
    III,
    Channel,
    ChannelError,
    ChannelReader,
    ChannelWriter,
    InitOptions,
    StreamChannelRef,
)
from iii.channels import _channel_from, resolve_channel_refs
from iii_protocol import to_json_value
from iii_protocol._json import dumps

URL = "ws://engine.test:49134/?token=t"
HEADERS = {"x-team": "orders"}


def ref(direction: str = "read", channel_id: str = "c-1") -> dict[str, Any]:
    return {"channel_id": channel_id, "access_key": "k-1", "direction": direction}


def test_refs_anywhere_in_the_payload_become_channel_ends() -> None:
    untouched = {"deep": [1, 2, {"x": None}]}
    data: dict[str, Any] = {
        "reader": ref("read"),
        "nested": {"list": [1, ref("write", "c-2"), "s"], "tuple": (ref("read", "c-3"), 2)},
        "untouched": untouched,
        "n": 5,
    }
    out = resolve_channel_refs(data, URL, HEADERS)

    assert isinstance(out["reader"], ChannelReader)
    assert out["reader"].ref == StreamChannelRef(
        channel_id="c-1", access_key="k-1", direction="read"
    )
    assert out["reader"].engine_url == URL
    writer = out["nested"]["list"][1]
    assert isinstance(writer, ChannelWriter)
    assert writer.channel_id == "c-2"
    assert out["nested"]["list"][0] == 1 and out["nested"]["list"][2] == "s"
    assert isinstance(out["nested"]["tuple"], tuple)
    assert isinstance(out["nested"]["tuple"][0], ChannelReader)
    # Copy on write: what holds no ref is the very same object.
    assert out["untouched"] is untouched
    assert out["n"] == 5
    # The input is not modified.
    assert data["reader"] == ref("read")
    assert isinstance(data["nested"]["list"][1], dict)


def test_the_resolved_end_sends_the_workers_headers() -> None:
    out: Any = resolve_channel_refs([ref("write")], URL, HEADERS)
    assert ("x-team", "orders") in out[0]._headers


def test_a_top_level_ref_is_resolved() -> None:
    assert isinstance(resolve_channel_refs(ref("write"), URL, {}), ChannelWriter)


@pytest.mark.parametrize(
    "data",
    [
        None,
        7,
        "text",
        b"bytes",
        [],
        {},
        {"a": [1, {"b": (2, 3)}], "c": "d"},
        [{"channel_id": "c", "access_key": "k"}],  # no direction
        [{"channel_id": "c", "access_key": "k", "direction": "both"}],
        [{"channel_id": 1, "access_key": "k", "direction": "read"}],
        [{"channel_id": "c", "access_key": None, "direction": "read"}],
    ],
)
def test_data_without_a_ref_is_returned_as_is(data: Any) -> None:
    assert resolve_channel_refs(data, URL, HEADERS) is data


def test_deep_payloads_do_not_hit_the_recursion_limit() -> None:
    data: Any = "leaf"
    for _ in range(5000):
        data = {"x": [data]}
    assert resolve_channel_refs(data, URL, HEADERS) is data


def test_ends_take_a_ref_object_or_its_dict_form() -> None:
    as_attrs = StreamChannelRef(channel_id="c", access_key="k", direction="write")
    reader = ChannelReader(URL, as_attrs)
    assert reader.ref == StreamChannelRef(channel_id="c", access_key="k", direction="read")
    writer = ChannelWriter(URL, {"channel_id": "c", "access_key": "k", "direction": "write"})
    assert writer.ref == as_attrs
    assert "k" not in repr(writer)  # the access key is a secret
    with pytest.raises(ValueError, match="channel_id"):
        ChannelReader(URL, {"channel_id": 1, "access_key": "k"})
    with pytest.raises(TypeError):
        ChannelReader(URL, ("c", "k"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ws://"):
        ChannelReader("http://engine", as_attrs)


def test_a_ref_travels_as_its_json_form() -> None:
    ref_value = StreamChannelRef(channel_id="c", access_key="k", direction="read")
    as_json = to_json_value(ref_value)
    assert (
        as_json
        == attrs.asdict(ref_value)
        == {"channel_id": "c", "access_key": "k", "direction": "read"}
    )
    payload = {"reader": as_json}
    assert dumps(payload) == '{"reader":{"channel_id":"c","access_key":"k","direction":"read"}}'
    # ...and the receiving side turns it back into an end.
    end = resolve_channel_refs(payload, URL, {})["reader"]
    assert isinstance(end, ChannelReader)
    assert end.ref == ref_value


def test_channel_is_a_plain_record() -> None:
    w = StreamChannelRef(channel_id="c", access_key="k", direction="write")
    r = StreamChannelRef(channel_id="c", access_key="k", direction="read")
    channel = Channel(ChannelWriter(URL, w), ChannelReader(URL, r), w, r)
    assert channel.writer_ref.direction == "write"
    assert channel.reader.ref == channel.reader_ref


def test_create_channel_ends_reach_the_engine_as_the_worker_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("III_TOKEN", "env-token")
    context = ssl.create_default_context()
    worker = III(
        "wss://engine.test:8443/base/?t=1", InitOptions(headers=HEADERS, ssl_context=context)
    )
    refs = {"writer": ref("write"), "reader": ref("read")}
    channel = _channel_from(worker, refs)
    for end in (channel.writer, channel.reader):
        assert end.engine_url == "wss://engine.test:8443/base/?t=1"
        assert end._ssl_context is context
        assert ("x-team", "orders") in end._headers
        assert ("Authorization", "Bearer env-token") in end._headers
    assert channel.writer_ref == StreamChannelRef(
        channel_id="c-1", access_key="k-1", direction="write"
    )
    with pytest.raises(ChannelError, match="unexpected value"):
        _channel_from(worker, {"writer": ref("write")})
