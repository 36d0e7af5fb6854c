"""Per-request context: who is asking, the services, and request-scoped DataLoaders."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from types import GeneratorType
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

from strawberry.dataloader import DataLoader, DefaultCache
from strawberry.extensions import SchemaExtension

from huizhen.integration.model import (
    Actor,
    Consultation,
    Document,
    Facility,
    ImagingStudy,
    Message,
    Observation,
    Patient,
    Practitioner,
)
from huizhen.rbac.audit import AuditBuffer
from huizhen.rbac.identity import Principal
from huizhen.rbac.rows import PLATFORM, Scope
from huizhen.rbac.viewer import resolve_scope

if TYPE_CHECKING:
    from huizhen.app import Services
    from huizhen.graphql.subscriptions import EventViews
    from huizhen.integration.repo import Repository


# the time zone the request's times are shown in (the server's), set by each Context: object
# types fill their time fields when built, in resolvers that have no ``info`` to ask
DISPLAY_TZ: ContextVar[tzinfo] = ContextVar("display_tz")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
R = TypeVar("R")


def in_order(ids: Sequence[str], found: Iterable[Any]) -> list[Any]:
    """A batch answer: the row of each id asked, in the order asked, None where there is none."""
    by_id = {x.id: x for x in found}
    return [by_id.get(i) for i in ids]


def _held(future: Any) -> bool:
    return future is not None and future.done() and not future.cancelled() and future.exception() is None


def ready(loader: DataLoader[K, V], key: K) -> V | Awaitable[V]:
    """The value when this request already holds it (prefetched, or loaded by an earlier field),
    else the loader's awaitable. A field that returns the value itself is completed at once by
    graphql-core; an awaitable costs a task and a gather per row of a page."""
    future = loader.cache_map.get(key)
    return future.result() if _held(future) else loader.load(key)  # type: ignore[union-attr]


def ready_many(loader: DataLoader[K, V], keys: Sequence[K]) -> list[V] | Awaitable[list[V]]:
    futures = [loader.cache_map.get(k) for k in keys]
    if all(map(_held, futures)):
        return [f.result() for f in futures]  # type: ignore[union-attr]
    return loader.load_many(keys)


_AWAITABLE: dict[type, bool] = {}  # by class: classes are few (the model's, list, None, futures)


def _awaitable(value: object) -> TypeGuard[Awaitable[Any]]:
    """``inspect.isawaitable``, asked once per class: its answer depends only on the class (an ABC
    check, slow for the usual "no": some 300 held values a work-list page) but for a generator."""
    cls = type(value)
    found = _AWAITABLE.get(cls)
    if found is None:
        found = inspect.isawaitable(value)
        if cls is not GeneratorType:
            _AWAITABLE[cls] = found
    return found


def then(value: V | Awaitable[V], fn: Callable[[V], R]) -> R | Awaitable[R]:
    """``fn(value)``, at once or when the awaitable is done: what a resolver returns."""
    if _awaitable(value):
        awaitable = value

        async def later() -> R:
            return fn(await awaitable)

        return later()
    return fn(value)  # type: ignore[arg-type]


@dataclass
class Loaders:
    """One per request: every relation of a page is fetched in one statement (or a fixed few)."""

    patient: DataLoader[str, Patient | None]
    practitioner: DataLoader[str, Practitioner | None]
    facility: DataLoader[str, Facility | None]
    observation: DataLoader[str, Observation | None]
    study: DataLoader[str, ImagingStudy | None]
    document: DataLoader[str, Document | None]
    # (patient id, latest N or None for all): newest first
    patient_observations: DataLoader[tuple[str, int | None], list[Observation]]
    patient_studies: DataLoader[str, list[ImagingStudy]]
    patient_consultations: DataLoader[str, list[Consultation]]
    sources: DataLoader[str, list[Message]]  # entity id -> the journaled messages that touched it
    escalations: DataLoader[str, list[tuple[str, datetime]]]  # consultation id -> (SLA phase, escalated at)

    def untouched(self) -> bool:
        """Nothing was loaded, primed or asked for: as good as a fresh set (a subscription's event
        that read no relation leaves its loaders so)."""
        return all(
            loader.batch is None and isinstance(loader.cache_map, DefaultCache) and not loader.cache_map.cache_map
            for loader in vars(self).values()
        )

    def release(self) -> None:
        """Forget what was loaded: the caches' futures are in reference cycles with their
        loaders, so a page's models (some 1,900 objects) would otherwise wait for the
        collector, and its pass over tens of thousands of them stalled every request of
        the worker (bench/graphql_load.py: a quarter of the requests behind such a pause)."""
        for loader in vars(self).values():
            loader.cache_map.clear()


class ReleaseLoaders(SchemaExtension):
    """Empties the request's DataLoader caches once its operation is answered (:meth:`Loaders.release`)."""

    def on_operation(self) -> Iterator[None]:
        yield
        loaders = getattr(self.execution_context.context, "loaders", None)
        if isinstance(loaders, Loaders):
            loaders.release()


def make_loaders(services: Services) -> Loaders:
    store = services.store

    def by_id(fetch: Callable[[Repository, Sequence[str]], Awaitable[Sequence[Any]]]) -> Any:
        """A batch function: one query for the ids asked, answers in their order (None where missing)."""

        async def load(ids: Sequence[str]) -> list[Any]:
            async with store.read() as repo:
                return in_order(ids, await fetch(repo, ids))

        return load

    observations = by_id(lambda repo, ids: repo.clinical.observations_by_ids(ids))
    studies = by_id(lambda repo, ids: repo.clinical.studies_by_ids(ids, instances=False))  # the API counts them
    documents = by_id(lambda repo, ids: repo.clinical.documents_by_ids(ids))
    patients = by_id(lambda repo, ids: repo.patients.by_ids(ids))
    practitioners = by_id(lambda repo, ids: repo.directory.practitioners_by_ids(ids))
    facilities = by_id(lambda repo, ids: repo.directory.facilities(ids))

    async def patient_observations(keys: Sequence[tuple[str, int | None]]) -> list[list[Observation]]:
        # one statement per distinct N asked for in this request (almost always one)
        out: dict[tuple[str, int | None], list[Observation]] = {}
        async with store.read() as repo:
            for latest in dict.fromkeys(n for _, n in keys):
                pids = [p for p, n in keys if n == latest]
                found = await repo.clinical.observations_for_patients(pids, latest=latest)
                out.update({(p, latest): found[p] for p in pids})
        return [out[k] for k in keys]

    async def patient_studies(ids: Sequence[str]) -> list[list[ImagingStudy]]:
        async with store.read() as repo:
            found = await repo.clinical.studies_for_patients(ids, instances=False)
        return [found[i] for i in ids]

    async def patient_consultations(ids: Sequence[str]) -> list[list[Consultation]]:
        async with store.read() as repo:
            found = await repo.consultations.for_patients(ids)
        return [[c for c in found if c.patient_id == i] for i in ids]

    async def sources(ids: Sequence[str]) -> list[list[Message]]:
        async with store.read() as repo:
            found = await repo.journal.touching(ids)
        return [found.get(i, []) for i in ids]

    async def escalations(ids: Sequence[str]) -> list[list[tuple[str, datetime]]]:
        async with store.read() as repo:
            found = await repo.escalations.for_consultations(ids)
        return [found[i] for i in ids]

    return Loaders(
        patient=DataLoader(load_fn=patients),
        practitioner=DataLoader(load_fn=practitioners),
        facility=DataLoader(load_fn=facilities),
        observation=DataLoader(load_fn=observations),
        study=DataLoader(load_fn=studies),
        document=DataLoader(load_fn=documents),
        patient_observations=DataLoader(load_fn=patient_observations),
        patient_studies=DataLoader(load_fn=patient_studies),
        patient_consultations=DataLoader(load_fn=patient_consultations),
        sources=DataLoader(load_fn=sources),
        escalations=DataLoader(load_fn=escalations),
    )


@dataclass
class Context:
    services: Services
    principal: Principal
    source: str | None
    loaders: Loaders
    request: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
    audit: AuditBuffer | None = None
    # WebSockets: what the client sent in ``connection_init``; the token there authenticates
    connection_params: dict[str, Any] | None = None
    expires_at: float | None = None  # the token's ``exp``: an open subscription ends then
    event_views: EventViews | None = None  # subscriptions: entities behind bus events, shared

    _scope: Scope | None = None
    _roles: frozenset[str] | None = None

    def __post_init__(self) -> None:
        DISPLAY_TZ.set(self.services.settings.tz)

    @property
    def actor(self) -> Actor:
        return self.principal.actor(self.source)

    @property
    def domain(self) -> str:
        """The RBAC domain of this request: the token's facility, ``*`` when it names none."""
        return self.principal.facility or PLATFORM

    @property
    def roles(self) -> frozenset[str]:
        """The token's roles plus the roles stored for the user in this domain (resolved once)."""
        if self._roles is None:
            self._roles = self.services.authorizer.roles_of(self.principal.sub, self.principal.roles, self.domain)
        return self._roles

    def allowed(self, obj: str, action: str) -> bool:
        return self.services.authorizer.allowed(self.roles, self.domain, obj, action)

    def audited(self) -> AuditBuffer:
        if self.audit is None:
            self.audit = AuditBuffer(self.principal.sub, sorted(self.roles), self.source, domain=self.domain)
        return self.audit

    async def scope(self) -> Scope:
        """The viewer's row-level scope, resolved once per request."""
        if self._scope is None:
            self._scope = await resolve_scope(self.services.store, self.principal, self.roles)
        return self._scope
