# From the official iii docs: docs/0-19-0/creating-workers/triggers.mdx, Python block 2 of 5
# (under "Attach metadata to a trigger"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
worker.register_trigger({
    "type": "http",
    "function_id": "math::add",
    "config": {"api_path": "/math/add", "http_method": "POST"},
    "metadata": {"team": "platform", "env": "staging"},
})
