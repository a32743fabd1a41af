# From the official iii docs: docs/0-19-0/creating-workers/channels.mdx, Python block 5 of 6
# (under "Read from a channel ref"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
async def process_file(input: dict) -> dict:
    reader = input["reader"]
    total = 0
    async for chunk in reader:
        total += len(chunk)
    return {"bytes": total}

worker.register_function("files::process", process_file)
