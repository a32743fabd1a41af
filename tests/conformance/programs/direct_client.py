"""``III`` constructed directly, as frameworks built on the official SDK do
(motia): a registration and the engine's listing used before and after the
connection is up, ``_wait_until_connected()``, the state around shutdown.

    python direct_client.py <engine url> <worker name>
"""

from __future__ import annotations

import sys
import time

from iii import InitOptions
from iii.iii import III

url, name = sys.argv[1], sys.argv[2]
client = III(url, InitOptions(worker_name=name))
print(
    "state at once:", client.get_connection_state() in ("disconnected", "connecting", "connected")
)
client.register_function("direct::echo", lambda data: {"echo": data})
client._wait_until_connected()
print("state after wait:", client.get_connection_state())
for _ in range(200):
    listed = client.trigger({"function_id": "engine::functions::list", "payload": {}})
    if "direct::echo" in {f["function_id"] for f in listed["functions"]}:
        break
    time.sleep(0.05)
print("call:", client.trigger({"function_id": "direct::echo", "payload": 1}))
print("isinstance III:", isinstance(client, III))
client.shutdown()
print("state after shutdown:", client.get_connection_state())
print("done")
