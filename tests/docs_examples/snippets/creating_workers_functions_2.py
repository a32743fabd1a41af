# From the official iii docs: docs/0-19-0/creating-workers/functions.mdx, Python block 2 of 4
# (under "Attach request and response schemas"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
import os
from iii import register_worker, InitOptions

worker = register_worker(
    os.environ.get("III_URL"),
    InitOptions(worker_name="math-worker"),
)

worker.register_function(
    "math::add",
    add_handler,
    request_format={
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
    response_format={
        "type": "object",
        "properties": {"c": {"type": "number"}},
        "required": ["c"],
    },
)
