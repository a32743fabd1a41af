# From the official iii docs: docs/0-19-0/using-iii/triggers.mdx, Python block 2 of 4
# (under "Bind multiple triggers to one function"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
worker.register_trigger({
    "type": "http",
    "function_id": "reports::generate",
    "config": {"api_path": "/reports/generate", "http_method": "POST"},
})

worker.register_trigger({
    "type": "cron",
    "function_id": "reports::generate",
    "config": {"expression": "0 0 9 * * 1"},  # Every Monday at 09:00
})
