# From the official iii docs: docs/0-19-0/creating-workers/workers.mdx, Python block 4 of 5
# (under "Subscribe to changes"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
async def on_workers(data: dict) -> None:
    if data["event"] == "worker_connected":
        # A Worker joined the registry; its Functions are callable now.
        pass

worker.register_function("discovery::on-workers", on_workers)
worker.register_trigger({
    "type": "engine::workers-available",
    "function_id": "discovery::on-workers",
    "config": {},
})

async def on_functions(data: dict) -> None:
    # `functions` is the full snapshot after the change.
    ids = [f["function_id"] for f in data.get("functions", [])]

worker.register_function("discovery::on-functions", on_functions)
worker.register_trigger({
    "type": "engine::functions-available",
    "function_id": "discovery::on-functions",
    "config": {},
})
