"""The call forms of code written for other releases of the API, reduced to ours.

``III`` calls into here so that it keeps one way of doing each thing:

* ``function_args``: ``register_function`` takes the id as a string, as a dict
  ``{"id": ..., "description": ...}`` or as a ``RegisterFunctionInput``, and
  accepts ``observe=`` / ``local_dispatch=`` (no effect here, see below);
* ``on_functions_available``: a listener of the engine's
  ``engine::functions-available`` trigger, as a callback;
* ``wait_until_connected``: the blocking wait frameworks call after making a
  worker.
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Optional, Union

import attrs

from .iii_types import FunctionInfo, HttpInvocationConfig, RegisterFunctionInput, Trigger

if TYPE_CHECKING:
    from ._client import III

__all__ = ["FunctionArgs", "function_args", "on_functions_available", "wait_until_connected"]

log = logging.getLogger("iii")

_INPUT_KEYS = frozenset(
    ("id", "description", "metadata", "request_format", "response_format", "invocation")
)


class FunctionArgs(NamedTuple):
    function_id: Any
    handler_or_invocation: Any
    description: Optional[str]
    metadata: Any
    request_format: Any
    response_format: Any


def _http_config(value: Any) -> Any:
    """An HTTP invocation config of another library (e.g. a pydantic model with the
    same fields) becomes ours; anything else is returned as is."""
    if isinstance(value, HttpInvocationConfig) or callable(value) or value is None:
        return value
    dump = getattr(value, "model_dump", None)
    if dump is not None and hasattr(value, "url"):
        fields = dump()
        if isinstance(fields, dict):
            auth = fields.get("auth")
            if isinstance(auth, dict):
                from iii_protocol import HttpAuthApiKey, HttpAuthBearer, HttpAuthHmac

                kinds: dict[str, Any] = {
                    "bearer": HttpAuthBearer,
                    "hmac": HttpAuthHmac,
                    "api_key": HttpAuthApiKey,
                }
                kind = kinds.get(str(auth.get("type")))
                if kind is None:
                    raise TypeError(f"unknown HTTP auth type {auth.get('type')!r}")
                fields["auth"] = kind(**{k: v for k, v in auth.items() if k != "type"})
            return HttpInvocationConfig(**fields)
    if isinstance(value, dict) and "url" in value:
        return HttpInvocationConfig(**value)
    return value


def function_args(
    function_id: Union[str, dict[str, Any], RegisterFunctionInput],
    handler_or_invocation: Any,
    *,
    description: Optional[str],
    metadata: Any,
    request_format: Any,
    response_format: Any,
    observe: Any,
    local_dispatch: bool,
) -> FunctionArgs:
    """``register_function``'s arguments in their one form (the id a string).

    Raises:
        TypeError: a dict id with unknown keys or without ``id``; a field given
            both in the dict and as a keyword, with different values;
            ``local_dispatch`` not a bool.
    """
    if not isinstance(local_dispatch, bool):
        raise TypeError(f"local_dispatch must be a bool, got {type(local_dispatch).__name__}")
    if observe is not None:
        log.warning(
            "register_function(%r, observe=...): ignored, this SDK has no observe support",
            function_id if isinstance(function_id, str) else "...",
        )
    if isinstance(function_id, RegisterFunctionInput):
        function_id = {k: v for k, v in function_id.items() if v is not None}
    if isinstance(function_id, dict):
        fields = dict(function_id)
        unknown = set(fields) - _INPUT_KEYS
        if unknown:
            raise TypeError(
                f"register_function: unknown keys {sorted(unknown)} in the function's dict "
                f"(known: {sorted(_INPUT_KEYS)})"
            )
        if "id" not in fields:
            raise TypeError("register_function: the function's dict has no 'id'")
        explicit = {
            "description": description,
            "metadata": metadata,
            "request_format": request_format,
            "response_format": response_format,
        }
        for key, value in explicit.items():
            if value is None:
                continue
            if key in fields and fields[key] is not None and fields[key] != value:
                raise TypeError(
                    f"register_function: {key!r} given both in the dict and as a keyword"
                )
            fields[key] = value
        invocation = fields.get("invocation")
        if invocation is not None:
            if handler_or_invocation is not None and handler_or_invocation is not invocation:
                raise TypeError(
                    "register_function: give either a handler or the dict's 'invocation'"
                )
            handler_or_invocation = invocation
        function_id = fields["id"]
        description = fields.get("description")
        metadata = fields.get("metadata")
        request_format = fields.get("request_format")
        response_format = fields.get("response_format")
    return FunctionArgs(
        function_id,
        _http_config(handler_or_invocation),
        description,
        metadata,
        request_format,
        response_format,
    )


# -- functions-available listeners --------------------------------------------------------

FUNCTIONS_AVAILABLE = "engine::functions-available"


class _Listeners:
    """One worker's functions-available callbacks, and the function + trigger they use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.callbacks: list[Callable[[list[FunctionInfo]], Any]] = []
        self.unregister: Optional[Callable[[], None]] = None


_LISTENERS: weakref.WeakKeyDictionary[Any, _Listeners] = weakref.WeakKeyDictionary()
_LISTENERS_LOCK = threading.Lock()


def _function_infos(data: Any) -> list[FunctionInfo]:
    items = data.get("functions") if isinstance(data, dict) else None
    out: list[FunctionInfo] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("function_id"), str):
            continue
        known = {a.name: item[a.name] for a in attrs.fields(FunctionInfo) if a.name in item}
        out.append(FunctionInfo(**known))
    return out


def on_functions_available(
    worker: III, callback: Callable[[list[FunctionInfo]], Any]
) -> Callable[[], None]:
    """Call ``callback(functions)`` each time the engine's set of functions changes.

    The first listener of a worker registers a function of its own and binds
    it to the engine's ``engine::functions-available`` trigger; the last one
    to unsubscribe removes both.  Returns an idempotent unsubscribe function.
    """
    if not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    with _LISTENERS_LOCK:
        state = _LISTENERS.setdefault(worker, _Listeners())
    with state.lock:
        state.callbacks.append(callback)
        if state.unregister is None:
            function_id = f"iii::functions-available::{uuid.uuid4()}"

            def deliver(data: Any) -> None:
                functions = _function_infos(data)
                for listener in list(state.callbacks):
                    try:
                        listener(functions)
                    except Exception:
                        log.exception("functions-available listener failed")

            ref = worker.register_function(function_id, deliver)
            trigger: Trigger = worker.register_trigger(
                {"type": FUNCTIONS_AVAILABLE, "function_id": function_id, "config": {}}
            )

            def remove() -> None:
                trigger.unregister()
                ref.unregister()

            state.unregister = remove

    done = False

    def unsubscribe() -> None:
        nonlocal done
        remove: Optional[Callable[[], None]] = None
        with state.lock:
            if done:
                return
            done = True
            state.callbacks.remove(callback)
            if not state.callbacks:
                remove, state.unregister = state.unregister, None
        if remove is not None:
            remove()

    return unsubscribe


# -- waiting for the connection -------------------------------------------------------------


def wait_until_connected(worker: III, timeout: float = 30.0) -> None:
    """Block until ``worker`` is connected (at most ``timeout`` seconds).

    Raises:
        ConnectionError: the worker failed for good (retries exhausted, refused).
    """
    settled = threading.Event()

    def on_state(state: str) -> None:
        if state in ("connected", "failed"):
            settled.set()

    unsubscribe = worker.add_connection_state_listener(on_state)
    try:
        if worker.get_connection_state() not in ("connected", "failed"):
            settled.wait(timeout)
    finally:
        unsubscribe()
    if worker.get_connection_state() == "failed":
        raise ConnectionError(f"connection to {worker.address} failed")
