"""iii_protocol embedded in a plain ``selectors`` loop: no framework, no SDK runtime.

It shows the whole sans-I/O contract: feed bytes in, act on events, write
``data_to_send()``, and sleep until ``get_timer()``.

    III_URL=ws://127.0.0.1:49134 python -m examples.selectors_worker
"""

from __future__ import annotations

import os
import selectors
import socket
import time

from iii_protocol import Config, Connection, RegisterFunction
from iii_protocol import events as ev


def main() -> None:
    url = os.environ.get("III_URL", "ws://127.0.0.1:49134")
    conn = Connection(Config(url=url, announce={"name": "example-selectors", "pid": os.getpid()}))
    conn.register_function(RegisterFunction(id="example::upper"))
    selector = selectors.DefaultSelector()
    sock: socket.socket | None = None
    call_id: str | None = None
    conn.connect(time.monotonic())

    while True:
        for event in conn.events():
            if isinstance(event, ev.OpenTransport):
                sock = socket.create_connection((event.host, event.port), timeout=event.timeout)
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
                conn.transport_opened(time.monotonic())
            elif isinstance(event, ev.CloseTransport) and sock is not None:
                sock.setblocking(True)
                sock.sendall(conn.data_to_send())
                selector.unregister(sock)
                sock.close()
                sock = None
            elif isinstance(event, ev.Connected):
                # Call our own function through the engine.
                call_id = conn.invoke("example::upper", "shout", now=time.monotonic())
            elif isinstance(event, ev.InvocationRequested) and event.invocation_id:
                conn.send_result(event.invocation_id, event.function_id, str(event.data).upper())
            elif isinstance(event, ev.InvocationSucceeded) and event.invocation_id == call_id:
                print("example::upper ->", event.result)
                conn.close()
            elif isinstance(event, ev.InvocationFailed):
                print("failed:", event.error.code, event.error.message)
                conn.close()
        if sock is not None:
            data = conn.data_to_send()
            if data:
                sock.setblocking(True)
                sock.sendall(data)
                sock.setblocking(False)
        if conn.state.value == "disconnected" and sock is None:
            return
        timer = conn.get_timer()
        timeout = None if timer is None else max(0.0, timer - time.monotonic())
        for key, _ in selector.select(timeout):
            chunk = key.fileobj.recv(65536)  # type: ignore[union-attr]
            if chunk:
                conn.receive_data(chunk, time.monotonic())
            else:
                conn.transport_closed(time.monotonic(), "engine closed the socket")
                selector.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
                sock = None
        conn.handle_timer(time.monotonic())


if __name__ == "__main__":
    main()
