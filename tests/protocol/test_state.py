"""The connection state table: every row, and every (state, input) pair."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iii_protocol import TRANSITIONS, ConnectionInput, ConnectionState, LocalProtocolError
from iii_protocol._state import ConnectionStateMachine

S = ConnectionState
I = ConnectionInput  # noqa: E741

#: The table, written out independently of the implementation.
EXPECTED = {
    (S.DISCONNECTED, I.CONNECT): S.CONNECTING,
    (S.CONNECTING, I.WORKER_REGISTERED): S.CONNECTED,
    (S.CONNECTING, I.TRANSPORT_LOST): S.RECONNECTING,
    (S.CONNECTING, I.RETRIES_EXHAUSTED): S.FAILED,
    (S.CONNECTING, I.FATAL_REJECTION): S.FAILED,
    (S.CONNECTED, I.TRANSPORT_LOST): S.RECONNECTING,
    (S.CONNECTED, I.RETRIES_EXHAUSTED): S.FAILED,
    (S.CONNECTED, I.FATAL_REJECTION): S.FAILED,
    (S.RECONNECTING, I.BACKOFF_ELAPSED): S.CONNECTING,
    (S.DISCONNECTED, I.CLOSE): S.DISCONNECTED,
    (S.CONNECTING, I.CLOSE): S.DISCONNECTED,
    (S.CONNECTED, I.CLOSE): S.DISCONNECTED,
    (S.RECONNECTING, I.CLOSE): S.DISCONNECTED,
    (S.FAILED, I.CLOSE): S.FAILED,
}


def machine_in(state: ConnectionState) -> ConnectionStateMachine:
    sm = ConnectionStateMachine()
    sm.state = state
    return sm


def test_table_is_exactly_the_documented_one() -> None:
    assert TRANSITIONS == EXPECTED


def test_states_use_the_sdk_literals() -> None:
    assert [s.value for s in ConnectionState] == [
        "disconnected",
        "connecting",
        "connected",
        "reconnecting",
        "failed",
    ]
    assert ConnectionStateMachine().state is S.DISCONNECTED


@pytest.mark.parametrize(
    ("state", "event", "new"),
    [(state, event, new) for (state, event), new in TRANSITIONS.items()],
    ids=lambda v: getattr(v, "value", None),
)
def test_every_row(state: ConnectionState, event: ConnectionInput, new: ConnectionState) -> None:
    sm = machine_in(state)
    assert sm.process(event) is state  # returns the previous state
    assert sm.state is new


@pytest.mark.parametrize(
    ("state", "event"),
    [pair for pair in itertools.product(S, I) if pair not in TRANSITIONS],
    ids=lambda v: v.value,
)
def test_every_illegal_pair_raises_and_changes_nothing(
    state: ConnectionState, event: ConnectionInput
) -> None:
    sm = machine_in(state)
    with pytest.raises(LocalProtocolError) as info:
        sm.process(event)
    assert str(info.value) == f"cannot {event.value.replace('_', ' ')} while {state.value}"
    assert sm.state is state


@given(st.sampled_from(ConnectionState), st.sampled_from(ConnectionInput))
def test_any_pair_is_legal_or_raises_with_state_unchanged(
    state: ConnectionState, event: ConnectionInput
) -> None:
    sm = machine_in(state)
    if (state, event) in TRANSITIONS:
        assert sm.process(event) is state
        assert sm.state is TRANSITIONS[state, event]
    else:
        with pytest.raises(LocalProtocolError):
            sm.process(event)
        assert sm.state is state


@settings(deadline=None)
@given(st.lists(st.sampled_from(ConnectionInput), max_size=30))
def test_any_input_sequence_only_follows_the_table(events: list[ConnectionInput]) -> None:
    sm = ConnectionStateMachine()
    for event in events:
        before = sm.state
        try:
            sm.process(event)
        except LocalProtocolError:
            assert sm.state is before
        else:
            assert sm.state is TRANSITIONS[before, event]


def test_failed_is_terminal() -> None:
    for event in I:
        sm = machine_in(S.FAILED)
        if event is I.CLOSE:
            sm.process(event)
        else:
            with pytest.raises(LocalProtocolError):
                sm.process(event)
        assert sm.state is S.FAILED


def test_close_is_legal_everywhere_and_every_state_is_reachable() -> None:
    assert all((state, I.CLOSE) in TRANSITIONS for state in S)
    reachable = {S.DISCONNECTED}
    frontier = [S.DISCONNECTED]
    while frontier:
        state = frontier.pop()
        for (src, _), dst in TRANSITIONS.items():
            if src is state and dst not in reachable:
                reachable.add(dst)
                frontier.append(dst)
    assert reachable == set(S)
