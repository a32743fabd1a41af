"""The invocation payloads: deterministic JSON objects of about 20 B, 1 KB and 64 KB.

1 KB and 64 KB are structured data (objects of mixed scalars, a list), not one
long string, so JSON decoding and encoding cost what they cost on real data.
No ``null`` anywhere (see the README's note on our SDK's NaN check).
"""

from __future__ import annotations

from typing import Any

import orjson

TINY_CALL = {"i": 1}  # outbound trigger payload
OUTBOUND_RESULT = {"ok": True}


def _record(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "sku": f"SKU-{i:08d}",
        "name": f"item number {i} with a plain ascii name",
        "price": round(10.5 + i * 0.25, 2),
        "qty": i % 17,
        "active": i % 3 != 0,
        "tags": ["alpha", "beta", "gamma", f"t{i % 7}"],
        "dims": {"w": 1.5 + i % 5, "h": 2.25, "d": 0.125 * (i % 8)},
        "note": "lorem ipsum dolor sit amet consectetur adipiscing elit sed do",
        "owner": {"user": f"user-{i % 97}", "team": "benchmarks", "level": i % 4},
        "ts": 1_700_000_000 + i,
        "ratio": i / 7,
        "flag": "x" * (i % 5),
        "desc": "the quick brown fox jumps over the lazy dog " * 7,
        "history": [i * 3 + k for k in range(12)],
        "scores": [round((i + k) / 3, 3) for k in range(8)],
        "address": {
            "street": f"{i} benchmark avenue",
            "city": "Lisbon",
            "zip": f"{1000 + i % 9000}",
            "country": "PT",
        },
        "events": [{"kind": "view", "at": 1_700_000_100 + k, "ok": k % 2 == 0} for k in range(3)],
    }


def payload(name: str) -> Any:
    if name == "tiny":
        return {"a": 1, "b": "x"}
    if name == "1k":
        return _record(7)
    if name == "64k":
        return {"items": [_record(i) for i in range(62)]}
    raise ValueError(f"unknown payload {name!r}")


def payload_bytes(name: str) -> bytes:
    return orjson.dumps(payload(name))


if __name__ == "__main__":
    for n in ("tiny", "1k", "64k"):
        print(n, len(payload_bytes(n)))
