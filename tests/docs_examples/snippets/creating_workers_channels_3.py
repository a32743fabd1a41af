# From the official iii docs: docs/0-19-0/creating-workers/channels.mdx, Python block 3 of 6
# (under "Read from a channel"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
channel = await iii_client.create_channel_async()

bytes_total = 0
async for chunk in channel.reader:
    bytes_total += len(chunk)
