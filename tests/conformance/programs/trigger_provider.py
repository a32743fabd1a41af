"""A trigger type provider written for the official SDK (0.25 API): a binding
made before its provider comes, a binding the provider refuses, what the
engine lists, unbinding, and withdrawing the type.

    python trigger_provider.py <engine url> <worker name>
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from typing import Any

from iii import InitOptions, register_worker
from iii.iii_types import RegisterTriggerTypeInput
from iii.triggers import TriggerConfig, TriggerHandler

warnings.simplefilter("ignore", DeprecationWarning)

url, name = sys.argv[1], sys.argv[2]
type_id = f"{name}-picky"
provider = register_worker(url, InitOptions(worker_name=name + "-p"))
user = register_worker(url, InitOptions(worker_name=name + "-u"))
seen: list[Any] = []
first = threading.Event()


class Picky(TriggerHandler[Any]):
    async def register_trigger(self, config: TriggerConfig[Any]) -> None:
        if config.config.get("bad"):
            raise ValueError("bad config")
        seen.append(config.config)
        first.set()

    async def unregister_trigger(self, config: TriggerConfig[Any]) -> None:
        seen.append(("gone", config.config))


def wait_for(check):
    for _ in range(200):
        if check():
            return True
        time.sleep(0.05)
    return False


user.register_function("tp::fn", lambda data: data)
user.register_trigger({"type": type_id, "function_id": "tp::fn", "config": {"n": 0}})
provider.register_trigger_type(RegisterTriggerTypeInput(id=type_id, description="Picky"), Picky())
print("early binding delivered:", first.wait(10), seen)
user.register_trigger({"type": type_id, "function_id": "tp::fn", "config": {"bad": True}})
good = user.register_trigger({"type": type_id, "function_id": "tp::fn", "config": {"n": 1}})
print("bound:", wait_for(lambda: len(seen) >= 2), seen)


def listed(function_id, key):
    return [
        item
        for item in user.trigger({"function_id": function_id, "payload": {}})[key]
        if item.get("trigger_type", item.get("id")) == type_id
    ]


types = listed("engine::triggers::list", "triggers")
print("type listing:", {k: v for k, v in types[0].items() if k not in ("worker_name", "id")})
bindings = listed("engine::registered-triggers::list", "registered_triggers")
print("bindings listed:", sorted(str(t.get("config")) for t in bindings))
good.unregister()
print("unbound:", wait_for(lambda: len(seen) >= 3), seen[-1])
provider.unregister_trigger_type({"id": type_id, "description": "Picky"})
user.shutdown()
provider.shutdown()
print("done")
