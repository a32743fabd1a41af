"""``Connection.sync()`` (a round trip that confirms earlier frames were handled)
and the reason and cause a ``StateChanged`` carries when a socket is lost."""

from __future__ import annotations

import copy
import pickle

import pytest

from iii_protocol import (
    Config,
    Connection,
    ConnectionState,
    Ping,
    Pong,
    ReconnectPolicy,
    RegisterFunction,
    RegistrationRejected,
    UpgradeRefused,
)
from iii_protocol.events import FunctionRejected, StateChanged, Synced

from .helpers import Pair, counter_ids

S = ConnectionState


def make(**kwargs: object) -> Pair:
    conn = Connection(Config(**kwargs), random=lambda: 0.5, new_id=counter_ids())  # type: ignore[arg-type]
    return Pair(conn)


def connected(**kwargs: object) -> Pair:
    pair = make(**kwargs)
    pair.connect()
    pair.open()
    pair.new_events()
    return pair


def test_sync_is_answered_in_order_after_earlier_answers() -> None:
    pair = connected()
    pair.conn.register_function(RegisterFunction(id="f"))
    first = pair.conn.sync()
    second = pair.conn.sync()
    pair.pump()
    assert pair.engine is not None
    assert pair.engine.frames[-3:] == [RegisterFunction(id="f"), Ping(), Ping()]
    rejection = RegistrationRejected(
        code="FUNCTION_NAMESPACE_CONFLICT",
        namespace="default",
        owner_worker_id="o",
        function_id="f",
    )
    pair.send(rejection)
    pair.send(Pong())
    pair.send(Pong())
    assert first is not None and second is not None and second > first
    assert pair.new_events() == [
        FunctionRejected(rejection=rejection),
        Synced(token=first),
        Synced(token=second),
    ]


def test_unsolicited_pong_and_sync_while_disconnected() -> None:
    pair = make()
    assert pair.conn.sync() is None  # nothing to send it on
    pair.connect()
    pair.open()
    pair.new_events()
    pair.send(Pong())
    assert pair.new_events() == []


def test_a_lost_socket_forgets_the_syncs_it_owed() -> None:
    pair = connected()
    assert pair.conn.sync() is not None
    pair.pump()
    pair.drop("reset")
    pair.advance(1.0)
    pair.open()
    pair.new_events()
    pair.send(Pong())  # a late pong on the new socket answers nothing
    assert pair.new_events() == []


def test_state_changes_carry_reason_and_cause() -> None:
    pair = connected()
    cause = ConnectionResetError(104, "reset by peer")
    pair.conn.transport_closed(pair.now, "read failed", cause=cause)
    (change,) = [e for e in pair.new_events() if isinstance(e, StateChanged)]
    assert (change.old, change.new) == (S.CONNECTED, S.RECONNECTING)
    assert change.reason == "read failed" and change.cause is cause
    # Neither takes part in equality.
    assert change == StateChanged(old=S.CONNECTED, new=S.RECONNECTING)


def test_refused_upgrade_cause_names_the_status() -> None:
    pair = make()
    pair.connect()
    pair.new_events()
    pair.open(reject_status=404)
    (change,) = [e for e in pair.new_events() if isinstance(e, StateChanged)]
    assert isinstance(change.cause, UpgradeRefused)
    assert change.cause.status_code == 404
    assert change.reason == "WebSocket upgrade refused: HTTP 404"


def test_giving_up_carries_the_last_cause() -> None:
    pair = make(reconnect=ReconnectPolicy(max_retries=0))
    pair.connect()
    pair.new_events()
    cause = ConnectionRefusedError(111, "refused")
    pair.conn.transport_closed(0.0, "connect failed", cause=cause)
    (change,) = [e for e in pair.new_events() if isinstance(e, StateChanged)]
    assert change.new is S.FAILED and change.cause is cause
    assert "connect failed" in (change.reason or "")


@pytest.mark.parametrize("clone", [pickle.loads, copy.copy, copy.deepcopy])
def test_upgrade_refused_copies(clone: object) -> None:
    err = UpgradeRefused(503)
    copied = clone(pickle.dumps(err)) if clone is pickle.loads else clone(err)  # type: ignore[operator]
    assert type(copied) is UpgradeRefused
    assert copied.status_code == 503 and str(copied) == str(err)
