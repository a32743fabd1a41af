# From the official iii docs: docs/0-19-0/creating-workers/triggers.mdx, Python block 3 of 5
# (under "Example: A mini `iii-http` from scratch"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
import os
from iii import (
    InitOptions,
    RegisterTriggerTypeInput,
    TriggerConfig,
    TriggerHandler,
    register_worker,
)

worker = register_worker(
    os.environ.get("III_URL"),
    InitOptions(worker_name="mini-http-worker"),
)

bindings: dict[str, TriggerConfig] = {}

class HttpHandler(TriggerHandler):
    async def register_trigger(self, config: TriggerConfig) -> None:
        bindings[config.id] = config

    async def unregister_trigger(self, config: TriggerConfig) -> None:
        bindings.pop(config.id, None)

worker.register_trigger_type(
    RegisterTriggerTypeInput(
        id="mini-http",
        description="Routes HTTP requests to bound functions",
    ),
    HttpHandler(),
)
