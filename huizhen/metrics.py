"""Prometheus metrics: one registry per running server, served at ``/metrics``.

Other parts increment what they own through ``services.metrics``:

* ``graphql_subscriptions`` — ``inc()`` when a subscription starts, ``dec()`` when it ends;
* ``signaling_peers`` — ``inc()`` when a peer joins a room, ``dec()`` when it leaves;
* ``dicom_associations`` / ``dicom_instances`` — counters of the DICOM SCP.

Labels never carry patient data: channel names, message types (``ADT^A01``),
statuses, GraphQL operation types. Gauges read from the database (journal
totals, outbound queue depth) are refreshed on each scrape by :meth:`Metrics.refresh`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from pynetdicom import evt
from sqlalchemy import func, select

from huizhen.integration import tables as t
from huizhen.integration.engine import Codec, InboundEngine, Result
from huizhen.integration.model import MessageStatus

if TYPE_CHECKING:
    from huizhen.adapters.dicom import DicomListener
    from huizhen.adapters.mllp import MllpServer
    from huizhen.integration.store import Store

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._mllp: _MllpCollector | None = None
        # with worker processes (huizhen.workers): the exposition of all of them, for /metrics
        self.gather: Callable[[], Awaitable[bytes]] | None = None
        self.messages = Counter(
            "huizhen_messages", "Inbound messages handled since start, by channel, type and journal status.",
            ["channel", "type", "status"], registry=r,
        )
        self.reprocessed = Counter(
            "huizhen_messages_reprocessed", "Messages reprocessed, by channel and resulting status.",
            ["channel", "status"], registry=r,
        )
        self.ack_latency = Histogram(
            "huizhen_ack_latency_seconds", "Time from a message's arrival to its answer (ACK) being ready.",
            ["channel"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.graphql_operations = Counter(
            "huizhen_graphql_operations", "GraphQL operations, by operation type and outcome (ok, error).",
            ["operation", "outcome"], registry=r,
        )
        self.graphql_latency = Histogram(
            "huizhen_graphql_duration_seconds", "GraphQL operation execution time.",
            ["operation"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.graphql_subscriptions = Gauge(
            "huizhen_graphql_subscriptions_active", "GraphQL subscriptions open now.", registry=r
        )
        self.signaling_peers = Gauge("huizhen_signaling_peers", "WebRTC signaling peers connected now.", registry=r)
        self.worker_restarts = Counter(
            "huizhen_worker_restarts", "Worker processes started again after one ended unexpectedly.", registry=r
        )
        self.dicom_associations = Counter(
            "huizhen_dicom_associations", "DICOM associations accepted since start.", registry=r
        )
        self.dicom_associations_active = Gauge(
            "huizhen_dicom_associations_active", "DICOM associations open now.", registry=r
        )
        self.dicom_instances = Gauge(
            "huizhen_dicom_instances_stored", "DICOM instances in the store (all instances).", registry=r
        )
        self.journal_messages = Gauge(
            "huizhen_journal_messages", "Messages in the journal (all instances), by channel and status.",
            ["channel", "status"], registry=r,
        )
        self.outbound_queue = Gauge(
            "huizhen_outbound_queue_depth", "Outbound messages waiting to be sent, by channel.", ["channel"],
            registry=r,
        )
        self.db_pool = Gauge(
            "huizhen_db_pool_connections", "Database pool connections, by state (in_use, idle, size).", ["state"],
            registry=r,
        )
        self.mapping_reloads = Counter(
            "huizhen_mapping_reloads", "Mapping table reloads, by outcome (ok, rejected).", ["outcome"], registry=r
        )

    def message_done(self, result: Result, seconds: float) -> None:
        msg = result.message
        self.messages.labels(msg.channel, msg.type or "unknown", msg.status.value).inc()
        self.ack_latency.labels(msg.channel).observe(seconds)

    async def refresh(self, store: Store, channels: dict[str, Any]) -> None:
        """Read the gauges that live in the database and the pool."""
        c = t.messages.c
        async with store.read() as repo:
            rows = (await repo.conn.execute(select(c.channel, c.status, func.count()).group_by(c.channel, c.status)))
            counts = {(row[0], row[1]): int(row[2]) for row in rows}
            outbox = await repo.outbox.channel_stats()
            instances = (await repo.conn.execute(select(func.count()).select_from(t.imaging_instances))).scalar_one()
        self.dicom_instances.set(instances)
        self.journal_messages.clear()
        for (channel, status), n in counts.items():
            self.journal_messages.labels(channel, status).set(n)
        for name, state in channels.items():
            if state.direction == "outbound":
                self.outbound_queue.labels(name).set(outbox[name][1] if name in outbox else state.queued)
        pool: Any = store.engine.pool
        for state, method in (("in_use", "checkedout"), ("idle", "checkedin"), ("size", "size")):
            value = getattr(pool, method, None)
            if callable(value):
                self.db_pool.labels(state).set(value())

    def watch_dicom(self, listener: DicomListener) -> None:
        """Count the DICOM SCP's associations (pynetdicom calls the handlers from its threads)."""
        server = listener.server
        if server is None:
            return
        server.bind(evt.EVT_ESTABLISHED, lambda _event: self.dicom_associations.inc())
        self.dicom_associations_active.set_function(lambda: len(server.active_associations))

    def watch_mllp(self, server: MllpServer) -> None:
        """The MLLP listener's own totals (connections, frames, timeouts…), read at each scrape."""
        if self._mllp is not None:  # listeners restarted on the same services
            self.registry.unregister(self._mllp)
        self._mllp = _MllpCollector(server)
        self.registry.register(self._mllp)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _MllpCollector(Collector):
    def __init__(self, server: MllpServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        for name, value in dataclasses.asdict(self.server.counters).items():
            if name == "connections_open":
                yield GaugeMetricFamily("huizhen_mllp_connections_open", "MLLP connections open now.", value=value)
            else:
                yield CounterMetricFamily(f"huizhen_mllp_{name}", f"MLLP listener: {name.replace('_', ' ')}.",
                                          value=value)


class MeteredEngine(InboundEngine):
    """The inbound engine, counting each message and timing its answer (the engine itself stays unaware)."""

    metrics: Metrics | None = None
    log_patient_data = False  # the ``log_patient_data`` setting: failed messages' content in the logs

    async def receive(self, codec: Codec, raw: bytes, *, peer: str | None = None) -> Result:
        started = time.perf_counter()
        result = await super().receive(codec, raw, peer=peer)
        if self.metrics is not None:
            self.metrics.message_done(result, time.perf_counter() - started)
        msg = result.message
        if self.log_patient_data and msg.status is MessageStatus.ERROR:
            log.info("content of the failed message", extra={
                "control_id": msg.control_id, "message_id": msg.id, "phi_raw": raw.decode("utf-8", "replace")})
        return result

    async def reprocess(self, codec: Codec, message_id: str) -> Result:
        result = await super().reprocess(codec, message_id)
        if self.metrics is not None:
            self.metrics.reprocessed.labels(result.message.channel, result.message.status.value).inc()
        return result


def merge_expositions(texts: Iterable[str]) -> bytes:
    """Several processes' expositions as one: samples of the same name and labels are added
    (counters, histograms, gauges of what is open now); a ``_created`` time is the earliest."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            slots = values.setdefault(family.name, {})
            earliest = family.name.endswith("_created")
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key in slots:
                    slots[key] = min(slots[key], sample.value) if earliest else slots[key] + sample.value
                else:
                    slots[key] = sample.value
    for name, merged in families.items():
        merged.samples = [Sample(n, dict(labels), v) for (n, labels), v in values[name].items()]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(list(families.values())))
    return generate_latest(registry)


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families
