"""A plain script worker: no event loop anywhere.

III_URL=ws://127.0.0.1:49134 python -m examples.script_worker
"""

from __future__ import annotations

import attrs

import iii


@attrs.define
class AddInput:
    a: int
    b: int


def add(data: AddInput) -> dict[str, int]:
    # The payload arrives converted (and checked) as an AddInput.
    return {"c": data.a + data.b}


def main() -> None:
    worker = iii.register_worker(options=iii.InitOptions(worker_name="example-script"))
    try:
        worker.register_function("example::add", add, description="Add two integers")
        result = worker.trigger({"function_id": "example::add", "payload": {"a": 2, "b": 3}})
        print("example::add ->", result)
        try:
            worker.trigger({"function_id": "example::add", "payload": {"a": "two", "b": 3}})
        except iii.IIIInvocationError as exc:
            print("bad input ->", exc.code)
    finally:
        worker.shutdown()


if __name__ == "__main__":
    main()
