"""Models built from the dicts the engine sends: ``model_validate`` builds the
nested models too (alone, optional, in lists and unions), as pydantic does."""

from __future__ import annotations

from typing import Any, Optional

import attrs
import pytest

from iii._models import Model
from iii.state import StateEventData, StateEventType, StateUpdateInput, StateUpdateResult
from iii.stream import (
    StreamChangeEvent,
    StreamChangeEventDetail,
    StreamUpdateInput,
    UpdateIncrement,
    UpdateMerge,
    UpdateOpError,
    UpdateSet,
)


def test_a_nested_model_is_built_from_its_dict() -> None:
    event = StreamChangeEvent.model_validate(
        {
            "type": "stream",
            "timestamp": 1,
            "streamName": "s",
            "groupId": "g",
            "event": {"type": "create", "data": {"x": 1}},
        }
    )
    assert event.event == StreamChangeEventDetail(type="create", data={"x": 1})
    assert event.event["data"] == {"x": 1}


def test_lists_of_models_and_unions_by_their_type_key() -> None:
    update = StreamUpdateInput.model_validate(
        {
            "stream_name": "s",
            "group_id": "g",
            "item_id": "i",
            "ops": [
                {"type": "increment", "path": "n", "by": 2},
                {"type": "merge", "value": {"a": 1}},
                {"type": "set", "path": "p", "value": None},
            ],
        }
    )
    assert update.ops == [
        UpdateIncrement(path="n", by=2),
        UpdateMerge(value={"a": 1}),
        UpdateSet(path="p", value=None),
    ]
    # Built ones are kept; a round trip through model_dump gives the same value.
    again = StateUpdateInput.model_validate({"scope": "s", "key": "k", "ops": update.ops})
    assert again.ops == update.ops
    assert StreamUpdateInput.model_validate(update.model_dump()) == update


def test_defaults_generics_and_enums() -> None:
    result: StateUpdateResult[Any] = StateUpdateResult.model_validate(
        {"new_value": {"n": 1}, "errors": [{"op_index": 0, "code": "c", "message": "m"}]}
    )
    assert result.errors == [UpdateOpError(op_index=0, code="c", message="m")]
    assert result.old_value is None
    assert StateUpdateResult.model_validate({"new_value": 1}).errors == []
    data: StateEventData[Any] = StateEventData.model_validate(
        {"event_type": "state:created", "scope": "s", "key": "k", "new_value": {"v": 1}}
    )
    assert data.event_type is StateEventType.CREATED
    with pytest.raises(ValueError):
        StateEventData.model_validate({"event_type": "nope", "scope": "s", "key": "k"})


@attrs.frozen(kw_only=True)
class Inner(Model):
    n: int


@attrs.frozen(kw_only=True)
class Outer(Model):
    one: Optional[Inner] = None
    by_name: dict[str, Inner] = attrs.Factory(dict)
    either: Inner | int | None = None


def test_optional_dict_and_union_fields() -> None:
    outer = Outer.model_validate({"one": {"n": 1}, "by_name": {"a": {"n": 2}}, "either": {"n": 3}})
    assert outer == Outer(one=Inner(n=1), by_name={"a": Inner(n=2)}, either=Inner(n=3))
    assert Outer.model_validate({"one": None, "either": 4}) == Outer(either=4)
    # A dict no member of the union takes stays as it came.
    kept: object = Outer.model_validate({"either": {"m": 1}}).either
    assert kept == {"m": 1}
    with pytest.raises(TypeError):  # a nested model missing a field
        Outer.model_validate({"one": {}})
