# From the official iii docs: docs/0-19-0/creating-workers/workers.mdx, Python block 5 of 5
# (under "Shutting down a worker"), iii-hq/iii at commit bacffa0d3d14.
# How it runs: tests/docs_examples/manifest.py. Regenerate or check with
# tests/docs_examples/extract.py.
# --- the docs' code, unchanged, from the next line on ---
import signal

def _on_term(*_):
    worker.shutdown()
    raise SystemExit(0)

signal.signal(signal.SIGTERM, _on_term)
