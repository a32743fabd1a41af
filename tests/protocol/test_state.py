"""The phase table: every row, and every (state, socket, input) triple."""

from __future__ import annotations

import itertools
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iii_protocol import (
    PHASES,
    TRANSITIONS,
    ConnectionInput,
    ConnectionState,
    LocalProtocolError,
    SocketPhase,
)
from iii_protocol._state import IGNORED, ConnectionStateMachine

S = ConnectionState
P = SocketPhase
I = ConnectionInput  # noqa: E741

Phase = tuple[ConnectionState, SocketPhase]

#: The table, written out independently of the implementation.
EXPECTED: dict[tuple[ConnectionState, SocketPhase, ConnectionInput], Optional[Phase]] = {
    (S.DISCONNECTED, P.NONE, I.CONNECT): (S.CONNECTING, P.OPENING),
    (S.RECONNECTING, P.NONE, I.BACKOFF_ELAPSED): (S.CONNECTING, P.OPENING),
    (S.CONNECTING, P.OPENING, I.TRANSPORT_OPENED): (S.CONNECTING, P.UPGRADING),
    (S.CONNECTING, P.UPGRADING, I.HANDSHAKE_ACCEPTED): (S.CONNECTING, P.OPEN),
    (S.CONNECTING, P.OPEN, I.WORKER_REGISTERED): (S.CONNECTED, P.OPEN),
    (S.CONNECTING, P.OPENING, I.TRANSPORT_LOST): (S.RECONNECTING, P.NONE),
    (S.CONNECTING, P.UPGRADING, I.TRANSPORT_LOST): (S.RECONNECTING, P.NONE),
    (S.CONNECTING, P.OPEN, I.TRANSPORT_LOST): (S.RECONNECTING, P.NONE),
    (S.CONNECTED, P.OPEN, I.TRANSPORT_LOST): (S.RECONNECTING, P.NONE),
    (S.CONNECTING, P.OPENING, I.RETRIES_EXHAUSTED): (S.FAILED, P.NONE),
    (S.CONNECTING, P.UPGRADING, I.RETRIES_EXHAUSTED): (S.FAILED, P.NONE),
    (S.CONNECTING, P.OPEN, I.RETRIES_EXHAUSTED): (S.FAILED, P.NONE),
    (S.CONNECTED, P.OPEN, I.RETRIES_EXHAUSTED): (S.FAILED, P.NONE),
    (S.CONNECTING, P.OPEN, I.FATAL_REJECTION): (S.FAILED, P.NONE),
    (S.CONNECTED, P.OPEN, I.FATAL_REJECTION): (S.FAILED, P.NONE),
    (S.DISCONNECTED, P.NONE, I.TRANSPORT_LOST): None,
    (S.RECONNECTING, P.NONE, I.TRANSPORT_LOST): None,
    (S.FAILED, P.NONE, I.TRANSPORT_LOST): None,
    (S.DISCONNECTED, P.NONE, I.RETRIES_EXHAUSTED): None,
    (S.RECONNECTING, P.NONE, I.RETRIES_EXHAUSTED): None,
    (S.FAILED, P.NONE, I.RETRIES_EXHAUSTED): None,
    (S.DISCONNECTED, P.NONE, I.CLOSE): (S.DISCONNECTED, P.NONE),
    (S.CONNECTING, P.OPENING, I.CLOSE): (S.DISCONNECTED, P.NONE),
    (S.CONNECTING, P.UPGRADING, I.CLOSE): (S.DISCONNECTED, P.NONE),
    (S.CONNECTING, P.OPEN, I.CLOSE): (S.DISCONNECTED, P.NONE),
    (S.CONNECTED, P.OPEN, I.CLOSE): (S.DISCONNECTED, P.NONE),
    (S.RECONNECTING, P.NONE, I.CLOSE): (S.DISCONNECTED, P.NONE),
    (S.FAILED, P.NONE, I.CLOSE): None,
}

#: The pairs of phases that can occur together.
COHERENT: set[Phase] = {
    (S.DISCONNECTED, P.NONE),
    (S.CONNECTING, P.OPENING),
    (S.CONNECTING, P.UPGRADING),
    (S.CONNECTING, P.OPEN),
    (S.CONNECTED, P.OPEN),
    (S.RECONNECTING, P.NONE),
    (S.FAILED, P.NONE),
}

TRIPLES = list(itertools.product(S, P, I))


def machine_in(state: ConnectionState, socket: SocketPhase) -> ConnectionStateMachine:
    sm = ConnectionStateMachine()
    sm.state = state
    sm.socket = socket
    return sm


def _label(value: object) -> str:
    return str(getattr(value, "value", value))


def test_table_is_exactly_the_documented_one() -> None:
    assert PHASES == EXPECTED
    assert IGNORED is None


def test_the_session_table_is_the_phase_table_without_sockets() -> None:
    assert TRANSITIONS == {
        (S.DISCONNECTED, I.CONNECT): S.CONNECTING,
        (S.RECONNECTING, I.BACKOFF_ELAPSED): S.CONNECTING,
        (S.CONNECTING, I.TRANSPORT_OPENED): S.CONNECTING,
        (S.CONNECTING, I.HANDSHAKE_ACCEPTED): S.CONNECTING,
        (S.CONNECTING, I.WORKER_REGISTERED): S.CONNECTED,
        (S.CONNECTING, I.TRANSPORT_LOST): S.RECONNECTING,
        (S.CONNECTED, I.TRANSPORT_LOST): S.RECONNECTING,
        (S.CONNECTING, I.RETRIES_EXHAUSTED): S.FAILED,
        (S.CONNECTED, I.RETRIES_EXHAUSTED): S.FAILED,
        (S.CONNECTING, I.FATAL_REJECTION): S.FAILED,
        (S.CONNECTED, I.FATAL_REJECTION): S.FAILED,
        (S.DISCONNECTED, I.TRANSPORT_LOST): S.DISCONNECTED,
        (S.RECONNECTING, I.TRANSPORT_LOST): S.RECONNECTING,
        (S.FAILED, I.TRANSPORT_LOST): S.FAILED,
        (S.DISCONNECTED, I.RETRIES_EXHAUSTED): S.DISCONNECTED,
        (S.RECONNECTING, I.RETRIES_EXHAUSTED): S.RECONNECTING,
        (S.FAILED, I.RETRIES_EXHAUSTED): S.FAILED,
        (S.DISCONNECTED, I.CLOSE): S.DISCONNECTED,
        (S.CONNECTING, I.CLOSE): S.DISCONNECTED,
        (S.CONNECTED, I.CLOSE): S.DISCONNECTED,
        (S.RECONNECTING, I.CLOSE): S.DISCONNECTED,
        (S.FAILED, I.CLOSE): S.FAILED,
    }


def test_phases_use_the_sdk_literals() -> None:
    assert [s.value for s in ConnectionState] == [
        "disconnected",
        "connecting",
        "connected",
        "reconnecting",
        "failed",
    ]
    assert [p.value for p in SocketPhase] == ["none", "opening", "upgrading", "open"]
    sm = ConnectionStateMachine()
    assert (sm.state, sm.socket) == (S.DISCONNECTED, P.NONE)


@pytest.mark.parametrize(("state", "socket", "event"), list(PHASES), ids=_label)
def test_every_row(state: ConnectionState, socket: SocketPhase, event: ConnectionInput) -> None:
    sm = machine_in(state, socket)
    new = PHASES[state, socket, event]
    if new is None:
        assert sm.process(event) is None  # legal, and nothing happens
        assert (sm.state, sm.socket) == (state, socket)
    else:
        assert sm.process(event) is state  # returns the previous state
        assert (sm.state, sm.socket) == new


@pytest.mark.parametrize(
    ("state", "socket", "event"), [t for t in TRIPLES if t not in PHASES], ids=_label
)
def test_every_illegal_triple_raises_and_changes_nothing(
    state: ConnectionState, socket: SocketPhase, event: ConnectionInput
) -> None:
    sm = machine_in(state, socket)
    expected = (
        "no transport is being opened"
        if event is I.TRANSPORT_OPENED
        else f"cannot {event.value.replace('_', ' ')} while {state.value}"
    )
    with pytest.raises(LocalProtocolError) as info:
        sm.process(event)
    assert str(info.value) == expected
    assert (sm.state, sm.socket) == (state, socket)


@settings(deadline=None)
@given(st.lists(st.sampled_from(ConnectionInput), max_size=40))
def test_any_input_sequence_only_follows_the_table(events: list[ConnectionInput]) -> None:
    sm = ConnectionStateMachine()
    for event in events:
        before = (sm.state, sm.socket)
        try:
            old = sm.process(event)
        except LocalProtocolError:
            assert (*before, event) not in PHASES
            assert (sm.state, sm.socket) == before
        else:
            key = (*before, event)  # (in brackets mypy takes it for 3.11-only d[*a, b])
            new = PHASES[key]
            assert old is (None if new is None else before[0])
            assert (sm.state, sm.socket) == (before if new is None else new)
        assert (sm.state, sm.socket) in COHERENT


def test_only_coherent_phases_are_reachable_and_all_of_them_are() -> None:
    reachable = {(S.DISCONNECTED, P.NONE)}
    frontier = list(reachable)
    while frontier:
        state, socket = frontier.pop()
        for (src_state, src_socket, _), dst in PHASES.items():
            if (src_state, src_socket) != (state, socket) or dst is None or dst in reachable:
                continue
            reachable.add(dst)
            frontier.append(dst)
    assert reachable == COHERENT
    # ...and the table has no row for a pair that cannot occur.
    assert {(s, p) for s, p, _ in PHASES} == COHERENT


def test_failed_is_terminal() -> None:
    for event in I:
        sm = machine_in(S.FAILED, P.NONE)
        if (S.FAILED, P.NONE, event) in PHASES:
            assert sm.process(event) is None
        else:
            with pytest.raises(LocalProtocolError):
                sm.process(event)
        assert (sm.state, sm.socket) == (S.FAILED, P.NONE)


def test_close_and_a_lost_socket_are_legal_in_every_phase() -> None:
    for state, socket in COHERENT:
        for event in (I.CLOSE, I.TRANSPORT_LOST, I.RETRIES_EXHAUSTED):
            assert (state, socket, event) in PHASES
    # A lost socket is news only while there is one.
    for (_, socket, event), new in PHASES.items():
        if event in (I.TRANSPORT_LOST, I.RETRIES_EXHAUSTED):
            assert (new is None) == (socket is P.NONE)


def test_the_socket_never_decides_the_next_session_state() -> None:
    seen: dict[tuple[ConnectionState, ConnectionInput], ConnectionState] = {}
    for (state, _, event), new in PHASES.items():
        next_state = state if new is None else new[0]
        assert seen.setdefault((state, event), next_state) is next_state
