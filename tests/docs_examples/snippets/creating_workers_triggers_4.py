# From the official iii docs: docs/0-19-0/creating-workers/triggers.mdx, Python block 4 of 5
# (under "Unregister a Trigger Type"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
# e.g. config reload disabled the HTTP listener; stop accepting new bindings
# while the worker keeps serving other trigger types.
worker.unregister_trigger_type(
    {"id": "mini-http", "description": "Routes HTTP requests to bound functions"}
)
