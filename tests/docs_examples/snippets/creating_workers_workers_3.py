# From the official iii docs: docs/0-19-0/creating-workers/workers.mdx, Python block 3 of 5
# (under "In flight requests"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
from iii import IIIInvocationError

try:
    result = worker.trigger({
        "function_id": "math::add",
        "payload": {"a": 1, "b": 2},
    })
except IIIInvocationError as err:
    if err.code == "invocation_stopped":
        # Worker disconnected mid-invocation. Subscribe to `engine::functions-available`
        # (see "Subscribe to changes" below) to know when to retry.
        return
    raise
