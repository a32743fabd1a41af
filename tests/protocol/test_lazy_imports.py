"""What ``import iii_protocol`` loads: wsproto (and h11 with it) only once a
connection starts connecting, the channel machinery on first use of its names."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import iii_protocol
from iii_protocol import _channel


def _loaded(code: str) -> dict[str, list[str]]:
    script = (
        "import json, sys\n"
        "def seen():\n"
        "    return [m for m in ('wsproto', 'h11', 'iii_protocol._channel') if m in sys.modules]\n"
        "marks = {}\n" + code + "\nprint(json.dumps(marks))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result: dict[str, list[str]] = json.loads(out.stdout)
    return result


def test_wsproto_loads_when_a_connection_connects() -> None:
    marks = _loaded(
        "import iii_protocol\n"
        "conn = iii_protocol.Connection(iii_protocol.Config(url='ws://127.0.0.1:1'))\n"
        "marks['made'] = seen()\n"
        "conn.connect(0.0)\n"
        "marks['connect'] = seen()\n"
    )
    assert marks == {"made": [], "connect": ["wsproto", "h11"]}


def test_channel_names_load_on_first_use() -> None:
    marks = _loaded(
        "from iii_protocol import ChannelConnection, Connection\nmarks['names'] = seen()\n"
    )
    assert marks == {"names": ["wsproto", "h11", "iii_protocol._channel"]}


def test_the_lazy_names_are_the_channel_modules_own() -> None:
    for name in _channel.__all__:
        if name in iii_protocol.__all__:
            assert getattr(iii_protocol, name) is getattr(_channel, name)
            assert name in dir(iii_protocol)
    assert set(iii_protocol.__all__) <= set(dir(iii_protocol))
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        iii_protocol.NoSuchName  # noqa: B018
