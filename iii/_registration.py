"""Where the engine stands on one registration (a function or a trigger).

The engine (up to 0.23) answers a refused registration and is silent about
an accepted one.  It handles a connection's frames in order, so the worker
asks for a round trip (a protocol ``ping``) after registering: when the
``pong`` comes back with no refusal before it, the registration was accepted.
Registrations are replayed on every connection, so the state starts over at
``"pending"`` whenever the connection is lost; a trigger's provider may also
refuse a binding later, turning ``"accepted"`` into ``"rejected"``.
"""

from __future__ import annotations

from typing import Literal, Optional

from ._waiters import Cell
from .errors import IIIUsageError, RegistrationRejectedError, WorkerShutdownError

__all__ = ["Registration", "RegistrationState"]

RegistrationState = Literal["pending", "accepted", "rejected", "unregistered"]


def _decided(state: RegistrationState) -> bool:
    return state != "pending"


class Registration:
    """The engine's answer to one registration; see the module docstring."""

    __slots__ = ("cell", "error", "kind", "name", "shut_down")

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        self.cell: Cell[RegistrationState] = Cell("pending")
        self.error: Optional[RegistrationRejectedError] = None
        self.shut_down = False

    @property
    def state(self) -> RegistrationState:
        return self.cell.value

    def accept(self) -> None:
        self.cell.update(lambda s: "accepted" if s == "pending" else s)

    def reject(self, error: RegistrationRejectedError) -> None:
        self.error = error
        self.cell.update(lambda s: "rejected" if s != "unregistered" else s)

    def reset(self) -> None:
        """A new connection: the engine has to answer again."""
        self.cell.update(lambda s: "pending" if s != "unregistered" else s)

    def withdraw(self, *, shut_down: bool = False) -> None:
        self.shut_down = shut_down
        self.cell.set("unregistered")

    def wait(self, timeout: Optional[float]) -> None:
        self._result(self.cell.wait_for(_decided, timeout), timeout)

    async def wait_async(self, timeout: Optional[float]) -> None:
        self._result(await self.cell.wait_for_async(_decided, timeout), timeout)

    def _result(self, decided: bool, timeout: Optional[float]) -> None:
        state = self.cell.value
        if state == "accepted":
            return
        if state == "rejected" and self.error is not None:
            raise self.error
        if state == "unregistered":
            if self.shut_down:
                raise WorkerShutdownError(
                    f"the worker was shut down; {self.kind} {self.name!r} is gone"
                )
            raise IIIUsageError(f"{self.kind} {self.name!r} was unregistered")
        assert not decided
        raise TimeoutError(
            f"the engine has not answered the registration of {self.kind} {self.name!r} "
            f"within {timeout:g}s"
        )
