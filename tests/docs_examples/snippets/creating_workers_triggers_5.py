# From the official iii docs: docs/0-19-0/creating-workers/triggers.mdx, Python block 5 of 5
# (under "Dispatch events to bound functions"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
# Inside the worker's HTTP listener, after matching method+path to an
# entry in the `bindings` dict from the declare-trigger-type example:
binding = bindings[matched_trigger_id]
worker.trigger({
    "function_id": binding.function_id,
    "payload": {"method": method, "headers": headers, "body": body},
})
