"""The GraphQL schema: queries and mutations of the DESIGN.md contract."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.extensions.context import StreamResultContextManager, WrappedHook
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from huizhen.graphql.access import AccessMutation, AccessQuery
from huizhen.graphql.context import ReleaseLoaders
from huizhen.graphql.direct_resolvers import install_direct_resolvers
from huizhen.graphql.documents import DocumentCache, Documents, OperationChoice
from huizhen.graphql.errors import ErrorCodes
from huizhen.graphql.execution import LeanExecutionContext
from huizhen.graphql.guard import (
    AuditFlush,
    can,
    consultation_for_change,
    patient_for_use,
    read,
    sees_consultation,
    wrote,
)
from huizhen.graphql.guard import sees_patient as visible_patient
from huizhen.graphql.imaging import ImagingMutation
from huizhen.graphql.instrumentation import OperationMetrics
from huizhen.graphql.journal import Channel, Message
from huizhen.graphql.matching import MatchingQuery
from huizhen.graphql.operations import OperationsQuery
from huizhen.graphql.persisted import PersistedQueries, PersistedQueryCheck
from huizhen.graphql.prefetch import connection_nodes, consultation_relations, patient_page_relations
from huizhen.graphql.records import CLINICAL_FIELDS, Consultation, Patient, Viewer
from huizhen.graphql.security import SecurityMutation, SecurityQuery, SecuritySubscription
from huizhen.graphql.services import LearningFlag, ServicesMutation, ServicesQuery
from huizhen.graphql.subscriptions import Subscription
from huizhen.graphql.types import (
    Connection,
    ConsultationStatus,
    ImagingStudy,
    Info,
    MessageStatus,
    Practitioner,
    Urgency,
    connection,
    iso,
)
from huizhen.graphql.worklist import ConsultationSort, facility_id, parse_time
from huizhen.integration import model as m
from huizhen.integration.consultations import ConsultationRequest
from huizhen.integration.repo.consultations import WorkListSort


@strawberry.input
class ConsultationInput:
    patient_id: strawberry.ID
    department: str
    urgency: Urgency
    chief_complaint: str
    disease_code: str | None = None
    question: str | None = None
    expert_id: strawberry.ID | None = None


@strawberry.type
class BaseQuery:
    @strawberry.field
    def me(self, info: Info) -> Viewer:
        p = info.context.principal
        return Viewer(id=strawberry.ID(p.sub), roles=list(p.roles), facility=p.facility)

    @strawberry.field(permission_classes=can("patient", "read"))
    async def patient(self, info: Info, id: strawberry.ID) -> Patient | None:
        p = await info.context.loaders.patient.load(str(id))
        return Patient(_m=p) if p and await visible_patient(info, p) else None

    @strawberry.field(permission_classes=can("patient", "read"))
    async def patients(
        self,
        info: Info,
        search: str | None = None,
        identifier: str | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Patient]:
        visible = (await info.context.scope()).patient_rows()
        async with info.context.services.store.read() as repo:
            page = await repo.patients.search(
                search=search, identifier=identifier, first=first, after=after, visible=visible
            )
            await patient_page_relations(info, repo, [p for p, _ in page.items])
        for p, _ in page.items:
            read(info, "Patient", p.id)
        return connection(page, Patient)  # type: ignore[arg-type]

    @strawberry.field(permission_classes=can("consultation", "read"))
    async def consultation(self, info: Info, id: strawberry.ID) -> Consultation | None:
        async with info.context.services.store.read() as repo:
            c = await repo.consultations.get(str(id))
        return Consultation(_m=c) if c and await sees_consultation(info, c) else None

    @strawberry.field(permission_classes=can("consultation", "read"))
    async def consultations(
        self,
        info: Info,
        status: list[ConsultationStatus] | None = None,
        department: str | None = None,
        urgency: Urgency | None = None,
        first: int | None = None,
        after: str | None = None,
        facility: str | None = None,
        created_from: str | None = None,
        created_to: str | None = None,
        sort: ConsultationSort = ConsultationSort.NEWEST,
    ) -> Connection[Consultation]:
        """The work-list. ``facility`` is a facility code; ``createdFrom`` (inclusive) and
        ``createdTo`` (exclusive) are ISO 8601 times with offset."""
        visible = (await info.context.scope()).consultation_rows()
        async with info.context.services.store.read() as repo:
            page = await repo.consultations.search(
                statuses=[m.ConsultationStatus(s.value) for s in status or []],
                department=department,
                urgency=m.Urgency(urgency.value) if urgency else None,
                facility_id=await facility_id(repo, facility),
                created_from=parse_time(created_from, "createdFrom"),
                created_to=parse_time(created_to, "createdTo"),
                sort=WorkListSort(sort.value),
                first=first,
                after=after,
                visible=visible,
                timelines="timeline" in (nodes := connection_nodes(info)),  # the work-list rarely shows one
                clinical=not CLINICAL_FIELDS.isdisjoint(nodes),  # nor the clinical record
            )
            await consultation_relations(info, repo, [c for c, _ in page.items])
        for c, _ in page.items:
            read(info, "Consultation", c.id)
        return connection(page, Consultation)  # type: ignore[arg-type]

    @strawberry.field(permission_classes=can("directory", "read"))
    async def experts(
        self, info: Info, department: str | None = None, online: bool | None = None
    ) -> list[Practitioner]:
        async with info.context.services.store.read() as repo:
            found = await repo.directory.experts(department=department, online=online)
        return [Practitioner(_m=p) for p in found]

    @strawberry.field(description="A patient's imaging studies, newest first.", permission_classes=can("study", "read"))
    async def imaging_studies(self, info: Info, patient_id: strawberry.ID) -> list[ImagingStudy]:
        patient = await patient_for_use(info, str(patient_id))
        async with info.context.services.store.read() as repo:
            found = await repo.clinical.studies_for_patients([patient.id], instances=False)
        return [ImagingStudy(_m=s) for s in found[patient.id]]

    @strawberry.field(description="The message journal, newest first.", permission_classes=can("message", "read"))
    async def messages(
        self,
        info: Info,
        channel: str | None = None,
        status: MessageStatus | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Message]:
        async with info.context.services.store.read() as repo:
            page = await repo.journal.search(
                channel=channel, status=m.MessageStatus(status.value) if status else None, first=first, after=after
            )
        return connection(page, Message)  # type: ignore[arg-type]

    @strawberry.field(permission_classes=can("channel", "read"))
    async def channels(self, info: Info) -> list[Channel]:
        services = info.context.services
        async with services.store.read() as repo:
            stats = await repo.journal.channel_stats()
            outbox = await repo.outbox.channel_stats()
        out = []
        for name, state in sorted(services.channels.items()):
            s = stats.get(name)
            queued = state.queued
            if name in outbox:  # an outbound channel: its counts come from the outbox
                s, queued = outbox[name]
            out.append(
                Channel(
                    name=name,
                    direction=state.direction,
                    state=state.state,
                    received=s.received if s else state.received,
                    errors=s.errors if s else state.errors,
                    queued=queued,
                    last_error=s.last_error if s else state.last_error,
                    last_message_at=iso(s.last_message_at if s else state.last_activity_at, info)
                    if s or state.last_activity_at else None,
                )
            )
        return out


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=can("consultation", "request"))
    async def request_consultation(self, info: Info, input: ConsultationInput) -> Consultation:
        ctx = info.context
        await patient_for_use(info, str(input.patient_id))
        practitioner = await ctx.loaders.practitioner.load(ctx.principal.sub)
        c = await ctx.services.consultations.request(
            ConsultationRequest(
                patient_id=str(input.patient_id),
                department=input.department,
                urgency=m.Urgency(input.urgency.value),
                chief_complaint=input.chief_complaint,
                disease_code=input.disease_code,
                question=input.question,
                expert_id=str(input.expert_id) if input.expert_id else None,
                requester_id=practitioner.id if practitioner else None,
                facility_code=ctx.principal.facility,
            ),
            ctx.actor,
        )
        wrote(info, "Consultation", c.id, "requestConsultation")
        return Consultation(_m=c)

    @strawberry.mutation(permission_classes=can("consultation", "submit"))
    async def submit_consultation(self, info: Info, id: strawberry.ID) -> Consultation:
        await _changing(info, id, "submitConsultation")
        return Consultation(_m=await info.context.services.consultations.submit(str(id), info.context.actor))

    @strawberry.mutation(permission_classes=can("consultation", "assign"))
    async def assign_expert(
        self, info: Info, id: strawberry.ID, expert_id: strawberry.ID | None = None
    ) -> Consultation:
        await _changing(info, id, "assignExpert")
        c = await info.context.services.consultations.assign(
            str(id), info.context.actor, str(expert_id) if expert_id else None
        )
        return Consultation(_m=c)

    @strawberry.mutation(permission_classes=can("consultation", "decline"))
    async def decline_consultation(self, info: Info, id: strawberry.ID, reason: str) -> Consultation:
        await _changing(info, id, "declineConsultation")
        c = await info.context.services.consultations.decline(str(id), info.context.actor, reason)
        return Consultation(_m=c)

    @strawberry.mutation(permission_classes=can("consultation", "start"))
    async def start_consultation(self, info: Info, id: strawberry.ID) -> Consultation:
        await _changing(info, id, "startConsultation")
        return Consultation(_m=await info.context.services.consultations.start(str(id), info.context.actor))

    @strawberry.mutation(permission_classes=can("consultation", "complete"))
    async def complete_consultation(
        self, info: Info, id: strawberry.ID, diagnosis: str, treatment_plan: str,
        learning_flags: list[LearningFlag] | None = None,
    ) -> Consultation:
        await _changing(info, id, "completeConsultation")
        c = await info.context.services.consultations.complete(
            str(id), info.context.actor, diagnosis, treatment_plan, [f.value for f in learning_flags or ()]
        )
        return Consultation(_m=c)

    @strawberry.mutation(permission_classes=can("consultation", "cancel"))
    async def cancel_consultation(self, info: Info, id: strawberry.ID, reason: str) -> Consultation:
        await _changing(info, id, "cancelConsultation")
        c = await info.context.services.consultations.cancel(str(id), info.context.actor, reason)
        return Consultation(_m=c)

    @strawberry.mutation(
        description="Run an ERROR message through the current mappings again.",
        permission_classes=can("message", "reprocess"),
    )
    async def reprocess_message(self, info: Info, id: strawberry.ID) -> Message:
        wrote(info, "Message", str(id), "reprocessMessage")
        return Message(_m=await info.context.services.reprocess(str(id)))


async def _changing(info: Info, id: strawberry.ID, operation: str) -> None:
    """The row rule of a consultation mutation (hidden is NOT_FOUND), and its audit event."""
    await consultation_for_change(info, str(id))
    wrote(info, "Consultation", str(id), operation)


Query = merge_types(
    "Query", (BaseQuery, MatchingQuery, AccessQuery, OperationsQuery, ServicesQuery, SecurityQuery)
)


class _StreamResult(StreamResultContextManager):
    """strawberry's context of the hooks around one streamed result, with hooks looked up once for
    the operation (:class:`_Runner`): strawberry looks every extension's hook up and wraps it in a
    new context-manager factory for each result, which is each event of each subscriber."""

    def __init__(self, hooks: list[WrappedHook], result: Any) -> None:  # no super().__init__: no look-up again
        self.result = result
        self.hooks = hooks


class _Runner(SchemaExtensionsRunner):
    _stream_hooks: list[WrappedHook] | None = None

    def on_stream_result(self, result: Any) -> StreamResultContextManager:
        hooks = self._stream_hooks
        if hooks is None:  # the operation's extensions are fixed: the same hooks for every result
            hooks = self._stream_hooks = StreamResultContextManager(self.extensions, result).hooks
        return _StreamResult(hooks, result)


class _Schema(strawberry.Schema):
    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        """Logging happens in :class:`ErrorCodes`: domain errors are answers, not incidents."""

    def create_extensions_runner(self, execution_context: Any, extensions: list[Any]) -> SchemaExtensionsRunner:
        return _Runner(execution_context=execution_context, extensions=extensions)


def build_schema(
    *, max_depth: int = 12, introspection: bool = True, persisted: PersistedQueries | None = None
) -> strawberry.Schema:
    """``introspection=False`` (production) refuses ``__schema``/``__type``; ``persisted`` checks
    documents against the allow-list and looks hashes up (see :mod:`.persisted`)."""
    guards: list[Any] = []
    if persisted is not None:
        guards.append(lambda: PersistedQueryCheck(persisted))
    if not introspection:
        guards.append(lambda: AddValidationRules([NoSchemaIntrospectionCustomRule]))
    # each limiter builds a new rule class when constructed; built per request they made every
    # validation a cache miss (measured: a tenth of a work-list page's CPU)
    documents = Documents(maxsize=256)
    limits = [*QueryDepthLimiter(max_depth=max_depth).validation_rules,
              *MaxAliasesLimiter(max_alias_count=30).validation_rules]
    schema = _Schema(
        query=Query,
        mutation=merge_types(
            "Mutation", (Mutation, AccessMutation, ImagingMutation, ServicesMutation, SecurityMutation)
        ),
        subscription=merge_types("Subscription", (Subscription, SecuritySubscription)),
        config=StrawberryConfig(auto_camel_case=True),
        execution_context_class=LeanExecutionContext,
        extensions=[
            ReleaseLoaders,
            ErrorCodes,
            AuditFlush,
            OperationMetrics,
            *guards,
            # the same rule classes for every request: ValidationCache keys on them
            lambda: AddValidationRules(limits),
            lambda: MaxTokensLimiter(max_token_count=4000),
            # a front end sends the same few documents again and again: parse and validate each
            # once (not strawberry's ParserCache: its syntax errors escape the hooks that give
            # every error a code; DocumentCache keeps only documents that parsed)
            lambda: DocumentCache(documents),
            lambda: ValidationCache(maxsize=256),
            OperationChoice,  # after the validation cache, which sets the validation errors
        ],
    )
    install_direct_resolvers(schema)
    return schema
