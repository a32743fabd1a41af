# From the official iii docs: docs/0-19-0/using-iii/triggers.mdx, Python block 3 of 4
# (under "Gate a trigger with a condition"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
def is_priority(payload: dict) -> bool:
    return payload.get("customer_tier") == "gold"

worker.register_function("orders::is-priority", is_priority)

worker.register_trigger({
    "type": "http",
    "function_id": "orders::expedite",
    "config": {
        "api_path": "/orders/expedite",
        "http_method": "POST",
        "condition_function_id": "orders::is-priority",
    },
})
