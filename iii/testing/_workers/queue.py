"""The queue worker module (``iii-queue``), in memory: named queues behind
``TriggerAction.Enqueue``, durable topics (``iii::durable::publish`` and the
``durable:subscriber`` trigger type), retries, dead-letter queues, redrive.

Named queues.  ``queue_configs`` declares them (the real engine's config block
of that name); ``default`` always exists.  The engine hands an enqueued call to
``engine::queue::enqueue`` (docs/protocol.md#routing), which refuses an unknown
queue (``Queue 'x' not found``) or a ``fifo`` message without its group field,
and otherwise stores a job for the target function (in the namespace of the
call) and answers the receipt.  Up to ``concurrency`` jobs of a queue run at
once; a ``fifo`` queue runs one at a time and retries a failed job before the
next one starts (its README: "retried inline, blocks the queue").

Durable topics.  ``iii::durable::publish {topic, data}`` gives every distinct
(namespace, function) subscribed to ``topic`` its own copy of ``data``; bindings
of the same function share that copy (replicas compete).  A topic nobody
subscribes to keeps the message, undelivered, as the real builtin adapter does.
A binding's ``queue_config`` (``type``, ``maxRetries``, ``concurrency``,
``backoffDelayMs``) tunes its queue; ``condition_function_id`` names a function
asked first (``false``: the job is skipped).

Retries.  A failed delivery (an error, or no such function) is retried after
``backoff_ms * 2**(n - 1)`` ms on the engine clock (``n``: failures so far);
after ``max_retries`` deliveries of a named queue's job (or ``maxRetries + 1``
of a subscriber's), the job moves to its dead-letter queue, where
``engine::queue::dlq_messages`` lists it and ``iii::queue::redrive`` /
``redrive_message`` / ``discard_message`` act on it.

Differences from the real engine: everything lives in this process and is lost
when the engine stops (the real ``builtin`` adapter can persist to files); a
job runs as soon as it is due (no ``poll_interval_ms`` delay, the setting is
only checked); listings are sorted by name where the real engine's order is
arbitrary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import attrs

from iii_protocol._json import JSON, JSONObject

from .._api import Binding, BuiltinError, Call, EngineWorker, ErrorDict, new_id
from .._checks import integer, seconds, setting
from .._records import DEFAULT
from .inputs import ANY, STR, _describe, parse_input, publish_input
from .queue_settings import SubscriberSettings, queue_configs, resolve_queues
from .queue_store import Consumer, Job, JobQueue, Scheduler

__all__ = [
    "QUEUE_FUNCTION_ID",
    "SUBSCRIBER_TRIGGER_TYPE",
    "MemoryQueue",
    "QueueConfig",
]

QUEUE_FUNCTION_ID = "engine::queue::enqueue"
SUBSCRIBER_TRIGGER_TYPE = "durable:subscriber"
#: How the real engine keys a named queue inside its adapter (shown by some listings).
FN_QUEUE_PREFIX = "__fn_queue::"
_DLQ_LIMIT = 50


@attrs.frozen
class QueueConfig:
    configs: Mapping[str, JSONObject] = setting(
        {},
        queue_configs,
        "named queues, as the real engine's queue_configs: "
        '{"name": {"max_retries": 3, "concurrency": 10, "type": "standard"|"fifo", '
        '"message_group_field": ..., "backoff_ms": 1000}} (the queue "default" always exists)',
    )
    max_attempts: int = setting(
        3, integer(1), "deliveries before a job is dead-lettered, where a queue does not say"
    )
    backoff: float = setting(
        1.0,
        seconds(positive=False),
        "seconds before the first retry, doubling (engine clock), where a queue does not say",
    )


def _aliased(call: Call, name: str, alias: str) -> Call:
    """``call`` with ``alias`` read as ``name`` (serde's ``#[serde(alias)]``)."""
    data = call.data
    if not isinstance(data, dict) or alias not in data:
        return call
    if name in data:
        raise BuiltinError(
            "deserialization_error",
            f"Failed to deserialize input for {call.function_id}: duplicate field `{name}`",
        )
    renamed = {(name if k == alias else k): v for k, v in data.items()}
    return Call(
        call.function_id, call.caller, renamed, call.traceparent, call.baggage, call.metadata
    )


def _u64_field(call: Call, key: str, default: int) -> int:
    """An optional ``u64`` input field (serde ``#[serde(default)]``: null is an error)."""
    data = call.data
    value = data.get(key, default) if isinstance(data, dict) else default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BuiltinError(
            "deserialization_error",
            f"Failed to deserialize input for {call.function_id}: "
            f"invalid type: {_describe(value)}, expected u64",
        )
    if value < 0:
        raise BuiltinError(
            "deserialization_error",
            f"Failed to deserialize input for {call.function_id}: "
            f"invalid value: integer `{value}`, expected u64",
        )
    return value


class MemoryQueue(EngineWorker):
    """Named queues, durable topics, retries, dead letters (see the module docstring)."""

    name = "queue"
    switch = "queue"
    worker_name = "iii-queue"
    option_prefix = "queue_"
    config_class = QueueConfig
    config: QueueConfig

    def install(self) -> None:
        default_backoff = round(self.config.backoff * 1000)
        #: named queue -> its settings
        self.settings = resolve_queues(
            self.config.configs, self.config.max_attempts, default_backoff
        )
        self.named: dict[str, JobQueue] = {}
        for queue, settings in self.settings.items():
            q = JobQueue(FN_QUEUE_PREFIX + queue, queue)
            q.settings = settings
            self.named[queue] = q
        #: (topic, namespace, function_id) -> its subscriber queue (kept after unsubscribe)
        self.subscribers: dict[tuple[str, str, str], JobQueue] = {}
        #: topic -> binding id -> (topic, namespace, function_id)
        self.topics: dict[str, dict[str, tuple[str, str, str]]] = {}
        #: topics published to with nobody subscribed: their messages stay here
        self.orphans: dict[str, JobQueue] = {}
        self.scheduler = Scheduler(self.host, self.log, self._now_ms)
        self.function(QUEUE_FUNCTION_ID, self._enqueue, "Enqueue a call on a named queue")
        self.function("iii::durable::publish", self._publish, "Enqueue a message")
        self.function(
            "iii::queue::redrive", self._redrive, "Redrive all DLQ messages back to the main queue"
        )
        self.function(
            "iii::queue::redrive_message",
            self._redrive_message,
            "Redrive a single DLQ message by ID back to the main queue",
        )
        self.function(
            "iii::queue::discard_message",
            self._discard_message,
            "Discard (purge) a single DLQ message by ID",
        )
        self.function("engine::queue::list_topics", self._list_topics, "List all queue topics")
        self.function(
            "engine::queue::topic_stats", self._topic_stats, "Get stats for a queue topic"
        )
        self.function("engine::queue::dlq_topics", self._dlq_topics, "List DLQ topics with counts")
        self.function("engine::queue::dlq_messages", self._dlq_messages, "Browse DLQ messages")
        self.trigger_type(
            SUBSCRIBER_TRIGGER_TYPE,
            "Queue core module",
            on_register=self._subscribe,
            on_unregister=self._unsubscribe,
        )

    # -- clock helpers ----------------------------------------------------------------

    async def run(self) -> None:
        await self.scheduler.run()

    def _now_ms(self) -> int:
        return int(self.host.clock.time() * 1000)

    # -- named queues: engine::queue::enqueue -----------------------------------------------

    def _enqueue(self, call: Call) -> JSON:
        inp = parse_input(
            call,
            {
                "queue": (STR, True),
                "function_id": (STR, True),
                "data": (ANY, False),
                "messageReceiptId": (STR, False),
                "namespace": (STR, False),
                "traceparent": (STR, False),
                "baggage": (STR, False),
            },
            "EnqueueInput",
        )
        queue_name = inp["queue"]
        function_id = inp["function_id"]
        assert isinstance(queue_name, str) and isinstance(function_id, str)
        data = call.data.get("data") if isinstance(call.data, dict) else None
        q = self.named.get(queue_name)
        if q is None or q.settings is None:
            self.log.warning("Enqueue attempted for unknown queue %r", queue_name)
            raise BuiltinError("enqueue_error", f"Queue '{queue_name}' not found")
        settings = q.settings
        if settings.fifo:
            field = settings.message_group_field or ""
            if not isinstance(data, dict) or field not in data:
                raise BuiltinError(
                    "enqueue_error",
                    f"FIFO queue '{queue_name}' requires field '{field}' in data, "
                    "but it was not found",
                )
            if data[field] is None:
                raise BuiltinError(
                    "enqueue_error",
                    f"FIFO queue '{queue_name}': field '{field}' must not be null",
                )
        receipt = inp.get("messageReceiptId")
        if not isinstance(receipt, str) or not receipt:
            receipt = new_id()
        ns = inp.get("namespace")
        tp, bg = inp.get("traceparent"), inp.get("baggage")
        job = Job(
            q.key,
            data,
            settings.max_retries,
            settings.backoff_ms,
            self._now_ms(),
            function_id=function_id,
            message_id=receipt,
            namespace=ns if isinstance(ns, str) else None,
            traceparent=tp if isinstance(tp, str) else None,
            baggage=bg if isinstance(bg, str) else None,
        )
        self.scheduler.push(q, job)
        return {"messageReceiptId": receipt}

    # -- durable topics -----------------------------------------------------------------

    def _subscribe(self, binding: Binding) -> Optional[ErrorDict]:
        config = binding.config if isinstance(binding.config, dict) else {}
        topic = config.get("topic")
        if not isinstance(topic, str) or not topic:
            self.log.warning("Topic is not set for trigger (function %s)", binding.function_id)
            return None
        condition = config.get("condition_function_id")
        target = (topic, binding.namespace, binding.function_id)
        q = self.subscribers.get(target)
        if q is None:
            q = JobQueue(f"{topic}::{binding.function_id}@{binding.namespace}", topic)
            q.target = (binding.namespace, binding.function_id)
            self.subscribers[target] = q
        q.consumers[binding.id] = Consumer(
            binding.id,
            SubscriberSettings.from_config(config.get("queue_config")),
            condition if isinstance(condition, str) else None,
        )
        self.topics.setdefault(topic, {})[binding.id] = target
        self.scheduler.mark_ready(q)
        return None

    def _unsubscribe(self, binding: Binding) -> None:
        for topic, bindings in list(self.topics.items()):
            target = bindings.pop(binding.id, None)
            if target is None:
                continue
            if not bindings:
                del self.topics[topic]
            q = self.subscribers.get(target)
            if q is not None:
                q.consumers.pop(binding.id, None)

    def _subscribed(self, topic: str) -> list[JobQueue]:
        """The queues of the (namespace, function) pairs subscribed to ``topic`` now."""
        targets = sorted(set(self.topics.get(topic, {}).values()))
        return [self.subscribers[t] for t in targets]

    def _publish(self, call: Call) -> JSON:
        topic, data = publish_input(call, "QueueInput")
        attempts = self.config.max_attempts
        backoff = round(self.config.backoff * 1000)
        queues = self._subscribed(topic)
        if not queues:
            orphan = self.orphans.get(topic)
            if orphan is None:
                orphan = self.orphans[topic] = JobQueue(topic, topic)
            queues = [orphan]
        for q in queues:
            job = Job(
                q.key,
                data,
                attempts,
                backoff,
                self._now_ms(),
                traceparent=call.traceparent,
                baggage=call.baggage,
            )
            self.scheduler.push(q, job)
        return None

    # -- scheduling ---------------------------------------------------------------------

    def _queues_of(self, name: str) -> list[JobQueue]:
        """What a name means to the DLQ and stats functions: a named queue, the
        subscriber queues of a topic, or the messages of a topic nobody reads."""
        q = self.named.get(name)
        if q is not None:
            return [q]
        subscribed = self._subscribed(name)
        if subscribed:
            return subscribed
        orphan = self.orphans.get(name)
        return [orphan] if orphan is not None else []

    def _required(self, call: Call, key: str, alias: str, struct: str) -> str:
        inp = parse_input(_aliased(call, key, alias), {key: (STR, True)}, struct)
        value = inp[key]
        assert isinstance(value, str)
        return value

    def _redrive(self, call: Call) -> JSON:
        queue = self._required(call, "queue", "topic", "RedriveInput")
        if not queue:
            raise BuiltinError("queue_not_set", "Queue name is required")
        redriven = 0
        for q in self._queues_of(queue):
            while q.dead:  # oldest first, each to the end of the line
                job = q.dead.pop().job
                job.attempts_made = 0
                self.scheduler.push(q, job)
                redriven += 1
        self.host.notify()
        return {"queue": queue, "redriven": redriven}

    def _single(self, call: Call) -> tuple[str, str]:
        call = _aliased(call, "queue", "topic")
        inp = parse_input(
            call, {"queue": (STR, True), "message_id": (STR, True)}, "RedriveSingleInput"
        )
        queue, message_id = inp["queue"], inp["message_id"]
        assert isinstance(queue, str) and isinstance(message_id, str)
        if not queue:
            raise BuiltinError("queue_not_set", "Queue name is required")
        if not message_id:
            raise BuiltinError("message_id_not_set", "Message ID is required")
        return queue, message_id

    def _take_dead(self, queue: str, message_id: str) -> Optional[tuple[JobQueue, Job]]:
        for q in self._queues_of(queue):
            for dead in q.dead:
                if dead.job.id == message_id:
                    q.dead.remove(dead)
                    return q, dead.job
        return None

    def _redrive_message(self, call: Call) -> JSON:
        queue, message_id = self._single(call)
        found = self._take_dead(queue, message_id)
        if found is not None:
            q, job = found
            job.attempts_made = 0
            self.scheduler.push(q, job)
            self.host.notify()
        return {"queue": queue, "message_id": message_id, "redriven": int(found is not None)}

    def _discard_message(self, call: Call) -> JSON:
        queue, message_id = self._single(call)
        found = self._take_dead(queue, message_id)
        if found is not None:
            self.host.notify()
        return {"queue": queue, "message_id": message_id, "redriven": int(found is not None)}

    def _adapter_topics(self) -> list[tuple[str, int]]:
        """(adapter key, subscriptions) of every topic, as the real adapter lists them."""
        counts: dict[str, int] = {}
        for topic, bindings in self.topics.items():
            counts[topic] = len(bindings)
        for queue in self.named:
            counts.setdefault(FN_QUEUE_PREFIX + queue, 0)
        return sorted(counts.items())

    def _list_topics(self, call: Call) -> JSON:
        out: list[JSON] = []
        for key, count in self._adapter_topics():
            name = key[len(FN_QUEUE_PREFIX) :] if key.startswith(FN_QUEUE_PREFIX) else key
            q = self.named.get(name) if key.startswith(FN_QUEUE_PREFIX) else None
            if q is not None and q.settings is not None:
                count = q.settings.concurrency  # the engine shows a queue's concurrency here
            out.append({"name": name, "broker_type": "builtin", "subscriber_count": count})
        return out

    def _topic_stats(self, call: Call) -> JSON:
        topic = self._required(call, "topic", "queue", "TopicStatsInput")
        if not topic:
            raise BuiltinError("topic_required", "topic is required")
        queues = self._queues_of(topic)
        named = self.named.get(topic)
        if named is not None and named.settings is not None:
            consumers = named.settings.concurrency
        else:
            consumers = len(self.topics.get(topic, {}))
        return {
            "depth": sum(len(q.waiting) + q.active for q in queues),
            "consumer_count": consumers,
            "dlq_depth": sum(len(q.dead) for q in queues),
            "config": None,
        }

    def _dlq_topics(self, call: Call) -> JSON:
        out: list[JSON] = []
        for key, _ in self._adapter_topics():
            if key.startswith(FN_QUEUE_PREFIX):
                count = len(self.named[key[len(FN_QUEUE_PREFIX) :]].dead)
            else:
                count = sum(len(q.dead) for q in self._queues_of(key))
            out.append({"topic": key, "broker_type": "builtin", "message_count": count})
        # ... and the named queues again under their own names, as the real engine does.
        for queue in sorted(self.named):
            out.append(
                {
                    "topic": queue,
                    "broker_type": "function_queue",
                    "message_count": len(self.named[queue].dead),
                }
            )
        return out

    def _dlq_messages(self, call: Call) -> JSON:
        topic = self._required(call, "topic", "queue", "DlqMessagesInput")
        offset = _u64_field(call, "offset", 0)
        limit = _u64_field(call, "limit", _DLQ_LIMIT)
        if not topic:
            raise BuiltinError("topic_required", "topic is required")
        queues = self._queues_of(topic)
        if len(queues) == 1:
            return [d.message() for d in list(queues[0].dead)[offset : offset + limit]]
        merged = [d for q in queues for d in list(q.dead)[: offset + limit]]
        merged.sort(key=lambda d: d.failed_at // 1000, reverse=True)
        return [d.message() for d in merged[offset : offset + limit]]

    # -- views (Engine.queue_stats / dead_letters) --------------------------------------------

    def _all_queues(self) -> list[JobQueue]:
        return [*self.named.values(), *self.subscribers.values(), *self.orphans.values()]

    def stats(self) -> JSONObject:
        queues = self._all_queues()
        delayed = len(self.scheduler.timers)
        return {
            "enabled": True,
            "queued": sum(len(q.waiting) for q in queues) + delayed,
            "in_flight": sum(q.active for q in queues),
            "retrying": delayed,
            "delivered": sum(q.delivered for q in queues),
            "failed": sum(q.failed for q in queues),
            "dead_letters": sum(len(q.dead) for q in queues),
            "queues": {
                name: dict(
                    q.settings.describe() if q.settings is not None else {},
                    waiting=len(q.waiting),
                    in_flight=q.active,
                    delivered=q.delivered,
                    dead_letters=len(q.dead),
                )
                for name, q in sorted(self.named.items())
            },
            "topics": {
                topic: [
                    {"namespace": t[1], "function_id": t[2]} for t in sorted(set(bindings.values()))
                ]
                for topic, bindings in sorted(self.topics.items())
            },
        }

    def dead_letters(self) -> list[JSONObject]:
        out: list[tuple[int, int, JSONObject]] = []
        for index, q in enumerate(self._all_queues()):
            for dead in reversed(q.dead):  # oldest first
                job = dead.job
                fid = job.function_id
                ns = job.namespace or DEFAULT
                if q.target is not None:
                    ns, fid = q.target
                row: JSONObject = {
                    "queue": q.name,
                    "kind": "queue" if q.settings is not None else "topic",
                    "id": job.id,
                    "function_id": fid,
                    "namespace": ns,
                    "data": job.data,
                    "messageReceiptId": job.message_id,
                    "attempts": job.attempts_made,
                    "error": dead.error,
                    "reason": dead.reason,
                    "failed_at_ms": dead.failed_at,
                }
                out.append((dead.failed_at, index, row))
        out.sort(key=lambda item: item[0])  # stable: same-time entries keep queue order
        return [row for _, _, row in out]
