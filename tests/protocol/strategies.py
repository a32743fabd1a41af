"""Hypothesis strategies for JSON payloads, nested protocol values and every frame type."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from iii_protocol import (
    KNOWN_FRAMES,
    ErrorBody,
    ErrorFrame,
    Frame,
    HttpAuthApiKey,
    HttpAuthBearer,
    HttpAuthHmac,
    HttpInvocationRef,
    InvocationResult,
    InvokeFunction,
    Ping,
    Pong,
    Reattach,
    RegisterFunction,
    RegisterFunctionFormat,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    StreamChannelRef,
    TriggerActionEnqueue,
    TriggerActionVoid,
    TriggerRegistrationResult,
    UnknownFrame,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    WorkerRegistered,
    to_json_value,
)

KNOWN_TYPES: frozenset[str] = frozenset(cls.TYPE for cls in KNOWN_FRAMES)

# -- JSON data -------------------------------------------------------------------

texts = st.text(max_size=12)
opt_texts = st.none() | texts

json_scalars = (
    st.none()
    | st.booleans()
    # Unbounded: integers wider than 64 bits are valid JSON and must survive.
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any strict JSON value (no NaN/Infinity, no lone surrogates)."""
    return st.recursive(
        json_scalars,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=6), children, max_size=3)
        ),
        max_leaves=max_leaves,
    )


json_objects = st.dictionaries(st.text(max_size=6), json_values(), max_size=4)
opt_json = json_values()

# -- nested values ---------------------------------------------------------------

error_bodies = st.builds(ErrorBody, code=texts, message=texts, stacktrace=opt_texts)
trigger_actions = st.builds(TriggerActionVoid) | st.builds(TriggerActionEnqueue, queue=texts)
http_auths = (
    st.builds(HttpAuthBearer, token_key=texts)
    | st.builds(HttpAuthHmac, secret_key=texts)
    | st.builds(HttpAuthApiKey, header=texts, value_key=texts)
)
http_invocations = st.builds(
    HttpInvocationRef,
    url=texts,
    method=opt_texts,
    timeout_ms=st.none() | st.integers(min_value=0, max_value=2**40),
    headers=st.none() | st.dictionaries(texts, texts, max_size=3),
    auth=st.none() | http_auths,
)
format_types = st.sampled_from(["object", "array", "string", "number", "boolean"])
formats: st.SearchStrategy[RegisterFunctionFormat] = st.recursive(
    st.builds(
        RegisterFunctionFormat,
        type=format_types,
        name=opt_texts,
        description=opt_texts,
        required=st.booleans(),
    ),
    lambda children: st.builds(
        RegisterFunctionFormat,
        type=format_types,
        name=opt_texts,
        description=opt_texts,
        body=st.none() | st.lists(children, max_size=2),
        items=st.none() | children,
        required=st.booleans(),
    ),
    max_leaves=6,
)
stream_refs = st.builds(
    StreamChannelRef,
    channel_id=texts,
    access_key=texts,
    direction=st.sampled_from(["read", "write"]),
)

# -- frames ----------------------------------------------------------------------

FRAME_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    WorkerRegistered: st.builds(
        WorkerRegistered,
        worker_id=texts,
        reattach_token=opt_texts,
        features=st.none() | st.lists(texts, max_size=3),
    ),
    RegistrationRejected: st.builds(
        RegistrationRejected,
        code=st.sampled_from(["WORKER_NAMESPACE_CONFLICT", "FUNCTION_NAMESPACE_CONFLICT"]) | texts,
        namespace=texts,
        owner_worker_id=texts,
        worker_name=opt_texts,
        function_id=opt_texts,
    ),
    RegisterFunction: st.builds(
        RegisterFunction,
        id=texts,
        description=opt_texts,
        request_format=opt_json | formats.map(to_json_value),
        response_format=opt_json,
        metadata=opt_json,
        invocation=st.none() | http_invocations,
        observe=opt_json,
    ),
    UnregisterFunction: st.builds(UnregisterFunction, id=texts),
    RegisterTriggerType: st.builds(
        RegisterTriggerType,
        id=texts,
        description=texts,
        trigger_request_format=opt_json,
        call_request_format=opt_json,
        namespace=opt_texts,
    ),
    UnregisterTriggerType: st.builds(UnregisterTriggerType, id=texts, namespace=opt_texts),
    RegisterTrigger: st.builds(
        RegisterTrigger,
        id=texts,
        trigger_type=texts,
        function_id=texts,
        config=opt_json,
        metadata=opt_json,
        namespace=opt_texts,
        trigger_namespace=opt_texts,
    ),
    UnregisterTrigger: st.builds(UnregisterTrigger, id=texts, trigger_type=opt_texts),
    TriggerRegistrationResult: st.builds(
        TriggerRegistrationResult,
        id=texts,
        trigger_type=texts,
        function_id=texts,
        error=st.none() | error_bodies,
    ),
    InvokeFunction: st.builds(
        InvokeFunction,
        function_id=texts,
        data=opt_json,
        invocation_id=opt_texts,
        traceparent=opt_texts,
        baggage=opt_texts,
        action=st.none() | trigger_actions,
        metadata=opt_json,
        namespace=opt_texts,
        caller=opt_json,
        observe_depth=st.none() | st.integers(min_value=0, max_value=2**31),
        activation=opt_json,
    ),
    InvocationResult: st.builds(
        InvocationResult,
        invocation_id=texts,
        function_id=texts,
        result=opt_json,
        error=st.none() | error_bodies,
        traceparent=opt_texts,
        baggage=opt_texts,
    ),
    RegisterService: st.builds(
        RegisterService,
        id=texts,
        name=opt_texts,
        description=opt_texts,
        parent_service_id=opt_texts,
    ),
    Ping: st.just(Ping()),
    Pong: st.just(Pong()),
    Reattach: st.builds(Reattach, previous_worker_id=texts, reattach_token=opt_texts),
    ErrorFrame: st.builds(ErrorFrame, error=error_bodies),
}

unknown_types = st.text(min_size=1, max_size=16).filter(lambda t: t not in KNOWN_TYPES)


@st.composite
def unknown_frames(draw: st.DrawFn) -> UnknownFrame:
    tag = draw(unknown_types)
    raw = draw(json_objects)
    raw["type"] = tag
    return UnknownFrame(type=tag, raw=raw)


FRAME_STRATEGIES[UnknownFrame] = unknown_frames()

#: Any frame, known or not.
frames: st.SearchStrategy[Frame | UnknownFrame] = st.one_of(*FRAME_STRATEGIES.values())

#: The field names of every known frame class, to fuzz frames with random field values.
FIELDS: dict[str, tuple[str, ...]] = {
    cls.TYPE: tuple(a.name for a in cls.__attrs_attrs__) for cls in KNOWN_FRAMES
}


@st.composite
def fuzzed_frame_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object with a known ``type`` and arbitrary values for some of its fields."""
    tag = draw(st.sampled_from(sorted(KNOWN_TYPES)))
    names = draw(st.lists(st.sampled_from(FIELDS[tag] or ("x",)), unique=True, max_size=6))
    obj: dict[str, Any] = {name: draw(json_values(max_leaves=4)) for name in names}
    obj["type"] = tag
    return obj


@st.composite
def mutated_frame_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A valid encoded frame with one key replaced by arbitrary JSON, or removed."""
    frame = draw(st.one_of(*(FRAME_STRATEGIES[cls] for cls in KNOWN_FRAMES)))
    obj = to_json_value(frame)
    assert isinstance(obj, dict)
    keys = sorted(k for k in obj if k != "type")
    if keys:
        key = draw(st.sampled_from(keys))
        if draw(st.booleans()):
            del obj[key]
        else:
            obj[key] = draw(json_values(max_leaves=4))
    return obj
