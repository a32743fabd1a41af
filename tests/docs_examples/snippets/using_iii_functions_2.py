# From the official iii docs: docs/0-19-0/using-iii/functions.mdx, Python block 2 of 2
# (under "Triggering (Invoking) functions"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
from iii import TriggerAction

result = worker.trigger({
    "function_id": "math::add",
    "payload": {"a": 2, "b": 3},
    # "action": TriggerAction.Void(),                    # fire-and-forget
    # "action": TriggerAction.Enqueue(queue="math"),     # route through iii-queue
})
# result = await worker.trigger_async({...})             # awaitable form for asyncio callers
