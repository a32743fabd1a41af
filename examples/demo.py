"""``make demo``: a worker against the embedded reference engine, end to end.

It starts the engine in this process, connects two workers (one on plain
threads, one on an asyncio loop), and shows calls, typed input, errors,
fire-and-forget, the queue, a trigger type, the engine's listings, and an HTTP
route whose function keeps a count in the engine's state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.request
from typing import Any

import attrs

import iii
from iii.testing import EngineThread


@attrs.define
class Order:
    item: str
    quantity: int


def place(order: Order) -> dict[str, Any]:
    return {"item": order.item, "total": order.quantity * 3}


class Clock(iii.TriggerHandler[Any]):
    """A trigger type: every binding is 'fired' once, right away."""

    def __init__(self, worker: iii.III) -> None:
        self.worker = worker

    def register_trigger(self, config: iii.TriggerConfig[Any]) -> None:
        threading.Thread(
            target=self.worker.trigger,
            args=(
                {
                    "function_id": config.function_id,
                    "payload": {"tick": 1},
                    "metadata": config.metadata,
                    "action": iii.TriggerAction.Void(),
                },
            ),
        ).start()


def serve_orders_over_http(engine: EngineThread, shop: iii.III) -> None:
    """``POST /orders`` on the engine's HTTP server; the function counts each item in state."""

    def order(request: dict[str, Any]) -> dict[str, Any]:
        item = request["body"]["item"]
        counted = shop.trigger(
            {
                "function_id": "state::update",
                "payload": {
                    "scope": "orders",
                    "key": item,
                    "ops": [{"type": "increment", "path": "count", "by": 1}],
                },
            }
        )
        return {"status_code": 201, "body": {"item": item, "orders": counted["new_value"]["count"]}}

    shop.register_function("shop::http_order", order)
    route = shop.register_trigger(
        {
            "type": "http",
            "function_id": "shop::http_order",
            "config": {"api_path": "/orders", "http_method": "POST"},
        }
    )
    route.wait_accepted(timeout=10)  # the engine (and its HTTP worker) took the route
    for item in ("tea", "tea", "cake"):
        request = urllib.request.Request(
            f"{engine.http_url}/orders",
            method="POST",
            data=json.dumps({"item": item}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            print(f"POST /orders {item} ->", response.status, json.loads(response.read()))
    tea = shop.trigger({"function_id": "state::get", "payload": {"scope": "orders", "key": "tea"}})
    print("state::get orders/tea ->", tea)


def main() -> None:
    # The engine narrates parked bindings and the like at WARNING; not here.
    logging.getLogger("iii.testing").setLevel(logging.ERROR)
    with EngineThread() as engine:
        print(f"reference engine on {engine.url}")
        shop = iii.register_worker(engine.url, iii.InitOptions(worker_name="shop"))
        shop.register_function("shop::place", place, description="Place an order")
        ticked = threading.Event()
        shop.register_function("shop::on_tick", lambda data, metadata: ticked.set())
        shop.register_trigger_type({"id": "clock", "description": "ticks once"}, Clock(shop))
        engine.wait_for_function("shop::on_tick")

        async def client() -> None:
            async with iii.register_worker_async(
                engine.url, iii.InitOptions(worker_name="client")
            ) as me:
                result = await me.trigger_async(
                    {"function_id": "shop::place", "payload": {"item": "tea", "quantity": 2}}
                )
                print("shop::place ->", result)
                try:
                    await me.trigger_async(
                        {"function_id": "shop::place", "payload": {"item": "tea"}}
                    )
                except iii.IIIInvocationError as exc:
                    print("missing quantity ->", exc.code, "|", exc.message)
                try:
                    await me.trigger_async({"function_id": "shop::nothing", "payload": None})
                except iii.IIIInvocationError as exc:
                    print("unknown function ->", exc.code)
                receipt = await me.trigger_async(
                    {
                        "function_id": "shop::place",
                        "payload": {"item": "cake", "quantity": 1},
                        "action": iii.TriggerAction.Enqueue(queue="default"),
                    }
                )
                print("enqueued ->", receipt)
                me.register_trigger(
                    {
                        "type": "clock",
                        "function_id": "shop::on_tick",
                        "config": {},
                        "metadata": {"from": "client"},
                    }
                )
                functions = await me.list_functions_async()
                mine = sorted(f.function_id for f in functions if f.worker_name == "shop")
                print("functions of shop:", ", ".join(mine))
                workers = await me.list_workers_async()
                print("workers:", ", ".join(sorted(str(w.name) for w in workers)))

        asyncio.run(client())
        print("trigger fired ->", ticked.wait(5))
        serve_orders_over_http(engine, shop)
        shop.shutdown()
    print("done")


if __name__ == "__main__":
    main()
