"""The pubsub worker module (``iii-pubsub``): ``publish`` and the ``subscribe``
trigger type, in memory (the real engine's default ``local`` adapter).

``publish {"topic", "data"}`` hands ``data`` (no envelope, no ``topic``) to
every ``subscribe`` binding whose ``config.topic`` equals the topic (exact
match, no wildcards) and answers ``null`` without waiting for them.  Each
subscriber is called once, in the namespace its binding targets, as an
engine-made call (no metadata, no ``_caller_worker_id``); its result and errors
are dropped: no retry, no persistence, a subscriber that is not there misses
the event.  An empty topic fails with ``topic_not_set``; a binding without a
topic is accepted and never fires, as in the real engine.

Subscribers are called in the order their bindings were registered; the real
engine calls them concurrently in no particular order (its README: "ordering:
not guaranteed"), so a worker must not rely on it.
"""

from __future__ import annotations

from typing import Optional

from iii_protocol._json import JSON

from .._api import Binding, Call, EngineWorker, ErrorDict
from .inputs import publish_input

__all__ = ["PUBLISH_FUNCTION_ID", "SUBSCRIBE_TRIGGER_TYPE", "PubSub"]

PUBLISH_FUNCTION_ID = "publish"
SUBSCRIBE_TRIGGER_TYPE = "subscribe"


def topic_of(binding: Binding) -> str:
    """The binding's ``config.topic`` ("" when missing or not a string)."""
    config = binding.config
    topic = config.get("topic") if isinstance(config, dict) else None
    return topic if isinstance(topic, str) else ""


class PubSub(EngineWorker):
    """Topic fan-out: every ``subscribe`` binding of a topic gets each event."""

    name = "pubsub"
    switch = "pubsub"
    worker_name = "iii-pubsub"

    def install(self) -> None:
        #: topic -> binding id -> binding (insertion order: registration order)
        self.subscriptions: dict[str, dict[str, Binding]] = {}
        self.published = 0
        self.deliveries = 0
        self.function(PUBLISH_FUNCTION_ID, self._publish, "Publishes an event")
        self.trigger_type(
            SUBSCRIBE_TRIGGER_TYPE,
            "Subscribe to a topic",
            on_register=self._subscribe,
            on_unregister=self._unsubscribe,
        )

    def _publish(self, call: Call) -> JSON:
        topic, data = publish_input(call, "PubSubInput")
        self.published += 1
        for binding in list(self.subscriptions.get(topic, {}).values()):
            self.deliveries += 1
            self.host.invoke(binding.namespace, binding.function_id, data, on_done=self._delivered)
        return None

    def _delivered(self, result: JSON, error: Optional[ErrorDict]) -> None:
        if error is not None:  # fire-and-forget: the real engine drops it silently
            self.log.debug("subscriber failed: %s", error.get("message"))

    def _subscribe(self, binding: Binding) -> Optional[ErrorDict]:
        topic = topic_of(binding)
        if not topic:
            self.log.warning("Topic is not set for trigger (function %s)", binding.function_id)
            return None
        self.subscriptions.setdefault(topic, {})[binding.id] = binding
        return None

    def _unsubscribe(self, binding: Binding) -> None:
        topic = topic_of(binding)
        subscribers = self.subscriptions.get(topic, {})
        subscribers.pop(binding.id, None)
        if not subscribers:
            self.subscriptions.pop(topic, None)

    def stats(self) -> dict[str, JSON]:
        return {
            "enabled": True,
            "published": self.published,
            "deliveries": self.deliveries,
            "topics": {t: len(subs) for t, subs in sorted(self.subscriptions.items())},
        }
