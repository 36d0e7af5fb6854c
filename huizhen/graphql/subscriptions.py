"""Live subscriptions over ``graphql-transport-ws`` and the legacy ``graphql-ws``.

Every subscription reads the bus (in-process, or Redis across instances) and
passes on only what the viewer may read: consultation and study events by the
viewer's row-level :class:`~huizhen.rbac.rows.Scope`, journal events to
integration admins. An event names an entity; the entity is read back from the
store once per event for all local subscribers (:class:`EventViews`), so a
thousand subscribers cost one read, not a thousand.

``consultationUpdated(since:)`` replays the timeline from the store after the
client's last cursor before it switches to live events, with nothing lost and
nothing twice across the seam: the bus subscription is registered before the
replay starts, and live events already replayed are skipped.

A subscription ends with an ``UNAUTHENTICATED`` error when the token it was
opened with expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Iterator
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import strawberry

from huizhen.graphql.context import make_loaders
from huizhen.graphql.errors import Forbidden
from huizhen.graphql.guard import can
from huizhen.graphql.journal import Message
from huizhen.graphql.records import Consultation
from huizhen.graphql.types import ImagingStudy, Info, TimelineEvent, iso
from huizhen.integration import model as m
from huizhen.integration.consultations import TOPIC as CONSULTATION_TOPIC
from huizhen.integration.engine import MESSAGE_TOPIC
from huizhen.integration.errors import BadInput
from huizhen.integration.events import Event
from huizhen.integration.events import Subscription as BusSubscription
from huizhen.integration.imaging import STUDY_TOPIC
from huizhen.integration.paging import decode_cursor, encode_cursor
from huizhen.integration.sla_watch import ESCALATED
from huizhen.integration.store import Store
from huizhen.rbac.identity import AuthenticationError

_REPLAY_BATCH = 500
_RUNNING = (m.ConsultationStatus.PENDING, m.ConsultationStatus.ASSIGNED)  # an SLA clock runs
_CACHE = 256

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _SingleFlight:
    """A small LRU of in-flight and finished loads: concurrent callers share one."""

    def __init__(self) -> None:
        self._tasks: OrderedDict[Hashable, asyncio.Task[Any]] = OrderedDict()

    async def get(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(load())
            self._tasks[key] = task
            while len(self._tasks) > _CACHE:
                self._tasks.popitem(last=False)
        try:
            result: V = await asyncio.shield(task)
        except Exception:
            if self._tasks.get(key) is task:  # a failed load is not remembered: the next event tries again
                del self._tasks[key]
            raise
        return result


class _Built:
    """A small LRU of what one source object (a bus event, a model the views read) was turned into
    for the API, by identity: every local subscriber of an event gets the same objects, so the
    first one to pass its checks builds them for all. The source is kept with its entry, so its
    id stays its own while the entry lives."""

    def __init__(self) -> None:
        self._built: OrderedDict[tuple[int, str], tuple[object, Any]] = OrderedDict()

    def get(self, source: object, kind: str, build: Callable[[], V]) -> V:
        key = (id(source), kind)
        found = self._built.get(key)
        if found is not None and found[0] is source:
            return found[1]  # type: ignore[no-any-return]
        value = build()
        self._built[key] = (source, value)
        while len(self._built) > _CACHE:
            self._built.popitem(last=False)
        return value


StudyView = tuple[m.ImagingStudy, m.Patient, list[m.Consultation]]  # the study, its patient, their consultations


class EventViews:
    """The entities behind bus events, read once per event (per process)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache = _SingleFlight()
        self.built = _Built()  # the API objects of an event, the same for every subscriber who may read it

    async def consultation(self, cid: str, seq: int) -> m.Consultation | None:
        async def load() -> m.Consultation | None:
            async with self.store.read() as repo:
                return await repo.consultations.get(cid)

        return await self._cache.get(("consultation", cid, seq), load)

    async def study(self, study_id: str, instance: str) -> StudyView | None:
        async def load() -> StudyView | None:
            async with self.store.read() as repo:
                found = await repo.clinical.studies_by_ids([study_id], instances=False)
                if not found:
                    return None
                patient = await repo.patients.get(found[0].patient_id)
                if patient is None:
                    return None
                return found[0], patient, await repo.consultations.for_patients([patient.id])

        return await self._cache.get(("study", study_id, instance), load)

    async def message(self, message_id: str, status: str) -> m.Message | None:
        async def load() -> m.Message | None:
            async with self.store.read() as repo:
                return await repo.journal.get(message_id)

        return await self._cache.get(("message", message_id, status), load)


@strawberry.type
class ConsultationEvent:
    consultation: Consultation
    event: TimelineEvent
    cursor: str = strawberry.field(description="Pass as `since` when reconnecting to miss nothing.")


def _views(info: Info) -> EventViews:
    views = info.context.event_views
    if views is None:  # wired by huizhen.graphql.app for every connection
        raise RuntimeError("subscriptions need EventViews in the context")
    return views


@contextlib.contextmanager
def subscribed(info: Info, topic: str) -> Iterator[BusSubscription]:
    sub = info.context.services.bus.subscribe(topic)
    active = info.context.services.metrics.graphql_subscriptions
    active.inc()
    try:
        yield sub
    finally:
        active.dec()
        sub.close()


async def bus_events(info: Info, sub: BusSubscription) -> AsyncGenerator[Event, None]:
    """The bus events of ``sub`` until the token expires; fresh DataLoaders for each event (the
    last event's are kept when it loaded nothing with them: empty, they are as good as new).

    The expiry is one timer per subscription that drops a marker into its queue, not a timeout
    around every wait (a timer scheduled and cancelled for every subscriber at every event)."""
    ctx = info.context
    alarm: asyncio.TimerHandle | None = None
    try:
        while True:
            remaining = None if ctx.expires_at is None else ctx.expires_at - time.time()
            if remaining is not None and remaining <= 0:
                raise AuthenticationError("token expired; subscribe again with a fresh token")
            if remaining is not None and alarm is None:
                alarm = asyncio.get_running_loop().call_later(remaining, _ring, sub.queue)
            event = await sub.queue.get()
            if event is _EXPIRED:
                alarm = None  # the check above ends it (or, rung early, sets the alarm again)
                continue
            if not ctx.loaders.untouched():  # a subscription outlives a request: no stale cache
                ctx.loaders = make_loaders(ctx.services)
            yield event
    finally:
        if alarm is not None:
            alarm.cancel()


_EXPIRED = Event(topic="", type="token-expired", data={})  # in one subscriber's own queue only


def _ring(queue: asyncio.Queue[Event]) -> None:
    if queue.full():  # as the bus does: the oldest goes (the subscription ends now anyway)
        queue.get_nowait()
    queue.put_nowait(_EXPIRED)


def _live_event(event: Event, live: m.Consultation, key: tuple[str, int], info: Info) -> ConsultationEvent:
    """What ``consultationUpdated`` yields for a bus event: built once per event, for every
    subscriber that may read the consultation (it depends on the event, the consultation read
    for it and the server's time zone, not on the viewer)."""
    e = event.data["event"]
    at = datetime.fromisoformat(e["at"])
    return ConsultationEvent(
        consultation=Consultation(_m=live),
        event=_timeline(m.TimelineEvent(at=at, type=e["type"], actor=e.get("actor"), detail=e.get("detail")), info),
        cursor=_cursor(e["at"], key[0], key[1]),
    )


def _cursor(at: datetime | str, cid: str, seq: int) -> str:
    return encode_cursor(at if isinstance(at, str) else at.isoformat(), cid, seq)


def _since(cursor: str) -> tuple[datetime, str, int]:
    at, cid, seq = decode_cursor(cursor, 3)
    try:
        return datetime.fromisoformat(at), str(cid), int(seq)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"invalid cursor {cursor!r}") from exc


def _timeline(e: m.TimelineEvent, info: Info) -> TimelineEvent:
    return TimelineEvent(at=iso(e.at, info) or "", type=e.type, actor=e.actor, detail=e.detail)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        permission_classes=can("consultation", "read"),
        description="Changes of one consultation, or of every consultation the viewer may see. "
        "`since`: a cursor of an earlier event; the events after it are replayed first."
    )
    async def consultation_updated(
        self, info: Info, id: strawberry.ID | None = None, since: str | None = None
    ) -> AsyncGenerator[ConsultationEvent, None]:
        scope = await info.context.scope()
        views = _views(info)
        after = _since(since) if since else None
        with subscribed(info, CONSULTATION_TOPIC) as sub:  # before the replay: no gap
            replayed: set[tuple[str, int]] = set()
            while after is not None:
                async with info.context.services.store.read() as repo:
                    batch = await repo.consultations.timeline_since(
                        after, consultation_id=str(id) if id is not None else None, limit=_REPLAY_BATCH
                    )
                for c, e, seq in batch:
                    replayed.add((c.id, seq))
                    if (id is None or c.id == str(id)) and scope.sees_consultation(c):
                        yield ConsultationEvent(
                            consultation=Consultation(_m=c), event=_timeline(e, info), cursor=_cursor(e.at, c.id, seq)
                        )
                after = (batch[-1][1].at, batch[-1][0].id, batch[-1][2]) if len(batch) == _REPLAY_BATCH else None
            async for event in bus_events(info, sub):
                d = event.data
                if id is not None and d.get("id") != str(id):
                    continue
                key = (str(d.get("id")), int(d.get("seq", 0)))
                if key in replayed:
                    continue
                live = await views.consultation(*key)
                if live is None or not scope.sees_consultation(live):
                    continue
                yield views.built.get(event, "consultationUpdated", partial(_live_event, event, live, key, info))

    @strawberry.subscription(
        permission_classes=can("consultation", "read"),
        description="New PENDING work (submitted, or declined back to the queue) for a department; "
        "an expert's own department by default. Coordinators also get each consultation the SLA watcher "
        "escalates (PENDING or ASSIGNED; see `Consultation.escalations`)."
    )
    async def consultation_queue(
        self, info: Info, department: str | None = None
    ) -> AsyncGenerator[Consultation, None]:
        scope = await info.context.scope()
        wanted = department or scope.department
        coordinator = "coordinator" in scope.roles
        views = _views(info)
        with subscribed(info, CONSULTATION_TOPIC) as sub:
            async for event in bus_events(info, sub):
                d = event.data
                escalated = coordinator and event.type == ESCALATED
                if d.get("status") != m.ConsultationStatus.PENDING.value and not escalated:
                    continue
                if wanted is not None and d.get("department") != wanted:
                    continue
                c = await views.consultation(str(d.get("id")), int(d.get("seq", 0)))
                if c is None or not scope.sees_consultation(c):
                    continue
                if c.status is m.ConsultationStatus.PENDING or (escalated and c.status in _RUNNING):
                    yield views.built.get(c, "Consultation", partial(Consultation, _m=c))

    @strawberry.subscription(
        permission_classes=can("study", "read"),
        description="Imaging studies as their instances arrive (DICOM C-STORE, FHIR).",
    )
    async def study_received(
        self, info: Info, patient_id: strawberry.ID | None = None
    ) -> AsyncGenerator[ImagingStudy, None]:
        scope = await info.context.scope()
        views = _views(info)
        with subscribed(info, STUDY_TOPIC) as sub:
            async for event in bus_events(info, sub):
                d = event.data
                if patient_id is not None and d.get("patient_id") != str(patient_id):
                    continue
                found = await views.study(str(d.get("id")), str(d.get("sop_instance_uid")))
                if found is None:
                    continue
                study, patient, consultations = found
                if scope.sees_patient(patient, consultations):
                    yield ImagingStudy(_m=study)

    @strawberry.subscription(
        description="Journaled messages as they are processed; for integration admins. "
        "`since`: a `journalCursor`; the messages answered after it are replayed first."
    )
    async def message_processed(
        self, info: Info, channel: str | None = None, since: str | None = None
    ) -> AsyncGenerator[Message, None]:
        if not info.context.allowed("message", "read"):  # the policy's journal readers (integration admins)
            raise Forbidden("messageProcessed needs `message read`")
        views = _views(info)
        after = _journal_since(since) if since else None
        with subscribed(info, MESSAGE_TOPIC) as sub:  # before the replay: no gap
            replayed: set[tuple[str, str]] = set()
            while after is not None:
                async with info.context.services.store.read() as repo:
                    batch = await repo.journal.answered_since(after, channel=channel, limit=_REPLAY_BATCH)
                for msg in batch:
                    replayed.add((msg.id, msg.status.value))
                    yield Message(_m=msg)
                after = (batch[-1].received_at, batch[-1].id) if len(batch) == _REPLAY_BATCH else None
            async for event in bus_events(info, sub):
                d = event.data
                if channel is not None and d.get("channel") != channel:
                    continue
                key = (str(d.get("id")), str(d.get("status")))
                if key in replayed:
                    continue
                live = await views.message(*key)
                if live is not None:
                    yield Message(_m=live)


def _journal_since(cursor: str) -> tuple[datetime, str]:
    at, mid = decode_cursor(cursor, 2)
    try:
        return datetime.fromisoformat(at), str(mid)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"invalid cursor {cursor!r}") from exc
