# From the official iii docs: docs/0-19-0/using-iii/triggers.mdx, Python block 1 of 4
# (under "Register a trigger"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
import os
from iii import register_worker, InitOptions

worker = register_worker(
    os.environ.get("III_URL"),
    InitOptions(worker_name="my-worker"),
)

worker.register_trigger({
    "type": "http",
    "function_id": "math::add",
    "config": {"api_path": "/math/add", "http_method": "POST"},
})
