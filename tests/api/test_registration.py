"""A registration the engine refuses is visible to whoever made it: on the
handle (state, error, wait_accepted), through a listener, and in the log."""

from __future__ import annotations

import copy
import logging
import pickle
import threading
from typing import Any

import anyio
import attrs
import pytest

import iii

from .test_sync_api import FAST


def opts(**kw: Any) -> iii.InitOptions:
    return attrs.evolve(FAST, **kw)


@pytest.fixture
def owner(iii_engine):
    w = iii.register_worker(iii_engine.url, opts(worker_name="reg-owner"))
    yield w
    w.shutdown()


def test_a_function_owned_elsewhere_is_refused_visibly(iii_engine, owner, caplog):
    mine = owner.register_function("own::f", lambda d: "owner")
    mine.wait_accepted(10)
    assert mine.state == "accepted" and mine.error is None

    other = iii.register_worker(iii_engine.url, opts(worker_name="reg-other"))
    try:
        heard: list[iii.RegistrationRejectedError] = []
        unsubscribe = other.add_registration_rejected_listener(heard.append)
        with caplog.at_level(logging.ERROR, logger="iii"):
            ref = other.register_function("own::f", lambda d: "other")
            with pytest.raises(iii.RegistrationRejectedError) as info:
                ref.wait_accepted(10)
        error = info.value
        assert (error.code, error.function_id, error.namespace) == (
            "FUNCTION_NAMESPACE_CONFLICT",
            "own::f",
            "default",
        )
        assert error.owner_worker_id == owner.worker_id
        assert ref.state == "rejected" and ref.error is error
        assert heard == [error]
        assert any(
            r.levelno == logging.ERROR and "own::f" in r.getMessage() for r in caplog.records
        )
        # Calls go to the owner; the refused handler never runs.
        assert other.trigger({"function_id": "own::f", "payload": None}) == "owner"
        unsubscribe()
        other.register_function("own::g", lambda d: d).wait_accepted(10)
    finally:
        other.shutdown()


def test_registrations_made_before_the_connection_are_settled_by_the_replay(iii_engine):
    worker = iii.III(iii_engine.url, opts(worker_name="reg-early"))  # returns at once
    try:
        ref = worker.register_function("early::f", lambda d: d)
        trigger = worker.register_trigger(
            {"type": "engine::workers-available", "function_id": "early::f", "config": {}}
        )
        ref.wait_accepted(10)
        trigger.wait_accepted(10)
        assert (ref.state, trigger.state) == ("accepted", "accepted")
    finally:
        worker.shutdown()


def test_a_trigger_the_engine_refuses(owner):
    refused = threading.Event()
    owner.add_registration_rejected_listener(lambda e: refused.set())
    owner.register_function("trg::f", lambda d: d)
    trigger = owner.register_trigger(
        {"type": "anything", "function_id": "trg::f", "config": {}, "trigger_namespace": ""}
    )
    with pytest.raises(iii.RegistrationRejectedError) as info:
        trigger.wait_accepted(10)
    assert info.value.code == "INVALID_NAMESPACE"
    assert info.value.trigger_id == trigger.id and info.value.function_id == "trg::f"
    assert trigger.state == "rejected"
    assert refused.is_set()


def test_a_trigger_its_provider_refuses_turns_rejected_later(iii_engine, owner):
    class Picky:
        def register_trigger(self, config: Any) -> None:
            raise ValueError("bad path")

    owner.register_trigger_type({"id": "picky", "description": ""}, Picky())
    iii_engine.wait_for_trigger_type("picky")
    binder = iii.register_worker(iii_engine.url, opts(worker_name="reg-binder"))
    try:
        refused: list[iii.RegistrationRejectedError] = []
        done = threading.Event()

        def heard(error: iii.RegistrationRejectedError) -> None:
            refused.append(error)
            done.set()

        binder.add_registration_rejected_listener(heard)
        binder.register_function("pk::t", lambda d: d)
        trigger = binder.register_trigger({"type": "picky", "function_id": "pk::t", "config": {}})
        # The engine took the binding; the provider refuses it afterwards.
        assert done.wait(10)
        assert refused[0].code == "trigger_registration_failed"
        assert "bad path" in refused[0].message
        assert trigger.state == "rejected" and trigger.error is refused[0]
        with pytest.raises(iii.RegistrationRejectedError):
            trigger.wait_accepted(0)
    finally:
        binder.shutdown()


def test_unregistered_handles(owner):
    ref = owner.register_function("gone::f", lambda d: d)
    ref.wait_accepted(10)
    ref.unregister()
    assert ref.state == "unregistered"
    with pytest.raises(iii.IIIUsageError, match="unregistered"):
        ref.wait_accepted(1)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_waiting_for_acceptance_on_a_loop(iii_engine, owner, backend):
    owner.register_function("own::async", lambda d: d).wait_accepted(10)

    async def main() -> None:
        async with iii.register_worker_async(
            iii_engine.url, opts(worker_name=f"reg-{backend}")
        ) as worker:
            ok = worker.register_function(f"mine::{backend}", lambda d: d)
            await ok.wait_accepted_async(10)
            assert ok.state == "accepted"
            taken = worker.register_function("own::async", lambda d: d)
            with pytest.raises(iii.RegistrationRejectedError) as info:
                await taken.wait_accepted_async(10)
            assert info.value.owner_worker_id == owner.worker_id
        bound = iii.register_worker(iii_engine.url, opts(worker_name=f"reg-bound-{backend}"))
        ref = bound.register_function(f"bound::{backend}", lambda d: d)
        await ref.wait_accepted_async(10)
        with pytest.raises(TimeoutError):
            # Never answered: a registration made on a worker the engine cannot reach.
            lonely = iii.III("ws://127.0.0.1:1", opts(worker_name="reg-lonely"))
            try:
                await lonely.register_function("l::f", lambda d: d).wait_accepted_async(0.05)
            finally:
                await lonely.shutdown_async()
        await bound.shutdown_async()

    anyio.run(main, backend=backend)


@pytest.mark.parametrize(
    "error",
    [
        iii.RegistrationRejectedError("WORKER_NAMESPACE_CONFLICT", "ns", "w", "id-1"),
        iii.RegistrationRejectedError(
            "FUNCTION_NAMESPACE_CONFLICT", "ns", None, "id-2", function_id="ns::f"
        ),
        iii.RegistrationRejectedError("FORBIDDEN", trigger_id="t-1", function_id="f", message="no"),
        iii.WorkerShutdownError("the worker was shut down"),
    ],
    ids=["worker", "function", "trigger", "shutdown"],
)
def test_errors_pickle_and_copy_with_their_text(error: Exception) -> None:
    # Errors cross process pools and test runners: every field and the text survive.
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error), copy.deepcopy(error)):
        assert type(clone) is type(error)
        assert (str(clone), clone.args, vars(clone)) == (str(error), error.args, vars(error))
