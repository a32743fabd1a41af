"""The reference engine's worker modules (see ``iii.testing._api`` for the interface).

``STANDARD_WORKERS`` is what every engine runs (those with a ``switch`` can be
turned off: ``serve_engine(queue=False)``, ``--no-queue``).  A new worker module
is one file here and one entry in that tuple; its options and CLI flags follow
from its ``config_class``.
"""

from __future__ import annotations

from .._api import EngineWorker
from .channels import Channels
from .cron import Cron
from .engine_functions import EngineFunctions
from .http_functions import HttpFunctions
from .pubsub import PubSub
from .queue import MemoryQueue
from .rbac import RbacGate
from .rest_api import RestApi
from .state import StateWorker
from .stream import StreamWorker

__all__ = ["STANDARD_WORKERS"]

STANDARD_WORKERS: tuple[type[EngineWorker], ...] = (
    EngineFunctions,
    Channels,
    HttpFunctions,
    MemoryQueue,
    PubSub,
    RbacGate,
    Cron,
    RestApi,
    StateWorker,
    StreamWorker,
)
