# From the official iii docs: docs/0-19-0/creating-workers/functions.mdx, Python block 3 of 4
# (under "HTTP-invokable functions"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
import os
from iii import HttpInvocationConfig, InitOptions, register_worker
from iii.iii_types import HttpAuthBearer

worker = register_worker(
    os.environ.get("III_URL"),
    InitOptions(worker_name="notifications-worker"),
)

worker.register_function(
    "notifications::send",
    HttpInvocationConfig(
        url="https://hooks.provider.example.com/notify",
        method="POST",
        timeout_ms=5000,
        headers={"X-Service": "iii-worker"},
        auth=HttpAuthBearer(token_key="PROVIDER_API_TOKEN"),
    ),
    description="POST a notification to the provider webhook",
)
