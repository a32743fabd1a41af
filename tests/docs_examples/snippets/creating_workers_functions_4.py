# From the official iii docs: docs/0-19-0/creating-workers/functions.mdx, Python block 4 of 4
# (under "Unregister a function"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
add = worker.register_function("math::add", add_handler)

add.unregister()
