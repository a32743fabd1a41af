# From the official iii docs: docs/0-19-0/using-iii/triggers.mdx, Python block 4 of 4
# (under "Unregister a trigger"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
trigger = worker.register_trigger({
    "type": "http",
    "function_id": "math::add",
    "config": {"api_path": "/math/add", "http_method": "POST"},
})

trigger.unregister()
