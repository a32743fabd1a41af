# From the official iii docs: docs/0-19-0/creating-workers/workers.mdx, Python block 2 of 5
# (under "Inspecting the live registry"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
# engine::workers::list, pass {"worker_id": "<uuid>"} to look up one worker
workers = worker.trigger({
    "function_id": "engine::workers::list",
    "payload": {},
})["workers"]

# engine::functions::list
functions = worker.trigger({
    "function_id": "engine::functions::list",
    "payload": {"include_internal": False},
})["functions"]

# engine::triggers::list
triggers = worker.trigger({
    "function_id": "engine::triggers::list",
    "payload": {"include_internal": False},
})["triggers"]

# engine::trigger-types::list
trigger_types = worker.trigger({
    "function_id": "engine::trigger-types::list",
    "payload": {"include_internal": False},
})["trigger_types"]
