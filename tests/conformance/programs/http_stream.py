"""HTTP functions behind the engine's ``http`` trigger, written for the official
SDK 0.19 (``from iii import http``, as the motia framework uses it): a plain
result, a response streamed the way motia writes one (status and headers
awaited, the body through ``res.writer.stream``, then ``res.close()``), and
one ending with the writer's fire-and-forget ``send_message`` / ``close``.

    python http_stream.py <engine url> <worker name> <engine http url>
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from iii import InitOptions, http, register_worker

url, name, http_url = sys.argv[1], sys.argv[2], sys.argv[3]
worker = register_worker(url, InitOptions(worker_name=name))


def plain(req):
    body = {"echo": req["body"], "q": req["query_params"]}
    return {"status_code": 201, "headers": {"x-kind": "plain"}, "body": body}


@http
async def streamed(req, res):
    body = await req.request_body.read_all()
    await res.status(202)
    await res.headers({"content-type": "text/plain", "x-kind": "stream"})
    res.writer.stream.write(b"got: ")
    res.writer.stream.write(body)
    res.close()


@http
async def fire_and_forget(req, res):
    await res.status(200)
    res.writer.send_message(json.dumps({"type": "set_headers", "headers": {"x-kind": "ff"}}))
    res.stream.write(b"done")
    res.writer.close()


for suffix, handler in [("plain", plain), ("streamed", streamed), ("ff", fire_and_forget)]:
    worker.register_function(f"{name}::{suffix}", handler)
    worker.register_trigger(
        {
            "type": "http",
            "function_id": f"{name}::{suffix}",
            "config": {"api_path": f"/{name}/{suffix}", "http_method": "POST"},
        }
    )


def post(path: str, data: bytes, content_type: str = "application/json") -> Any:
    request = urllib.request.Request(
        f"{http_url}/{name}/{path}?a=1",
        data=data,
        method="POST",
        headers={"content-type": content_type},
    )
    for _ in range(200):  # the route exists once the engine took the binding
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers.get("x-kind"), response.read()
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                return exc.code, exc.headers.get("x-kind"), exc.read()
            time.sleep(0.05)
    return "never routed"


print("plain:", post("plain", b'{"n": 1}'))
print("streamed:", post("streamed", b"hello", "text/plain"))
print("fire and forget:", post("ff", b"{}"))
worker.shutdown()
print("done")
