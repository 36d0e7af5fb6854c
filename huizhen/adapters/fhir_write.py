"""FHIR writes: journal → decode → plan → apply in one write transaction → answer.

The same promises as the HL7 pipeline (:mod:`huizhen.integration.engine`),
with FHIR's shape of answer, which needs what the engine does not hand its
codecs: the Huizhen id each resource became (``Location``) and one result per
Bundle entry. So the pipeline is run here, on the engine's :class:`Applier`:

* the journal row (channel ``fhir``) and every effect commit together, before
  the answer; a transaction Bundle is all-or-nothing in that one transaction;
  a batch Bundle applies each entry in its own savepoint;
* input that cannot be taken is journaled ERROR and answered with an
  OperationOutcome; a write that fails rolls back and is journaled ERROR
  (reprocessable through :class:`.fhir_codec.FhirCodec`);
* the same request bytes from the same sender again are journaled DUPLICATE and
  get the journaled answer again; nothing is applied twice (a PUT over the API is
  never the same bytes: it is applied again, see :mod:`.fhir_request`);
* bus events are published after the commit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy.exc import IntegrityError

from huizhen.adapters.fhir_codec import CHANNEL, Step, Submission, decode, plan
from huizhen.adapters.fhir_errors import FhirHttpError, failure, status_of
from huizhen.adapters.fhir_read import STORED_AS, read_effect
from huizhen.adapters.fhir_request import FhirRequest, control_id
from huizhen.integration.apply import Applier
from huizhen.integration.engine import MESSAGE_TOPIC
from huizhen.integration.errors import HuizhenError
from huizhen.integration.events import Event, EventBus
from huizhen.integration.model import Actor, EntityRef, Identifier, Message, MessageStatus
from huizhen.integration.repo import Repository
from huizhen.integration.store import Store
from huizhen.mappings.codes import CodeTables
from huizhen.mappings.fhir import jsonio
from huizhen.mappings.fhir.bundle_response import EntryResult, batch_response, status_line, transaction_response
from huizhen.mappings.fhir.outcome import InvalidResource, Issue, IssueType, error, operation_outcome
from huizhen.mappings.fhir.render import JSON

log = logging.getLogger(__name__)

CONDITIONAL_CREATE = frozenset({"Patient", "Practitioner", "Organization", "Encounter", "ServiceRequest"})
CONDITIONAL_UPDATE = frozenset({"Patient", "Practitioner"})


@dataclass
class FhirAnswer:
    status: int
    body: JSON | None
    location: str | None = None

    def journal_text(self) -> str:
        head = status_line(self.status) + (f"\r\nLocation: {self.location}" if self.location else "")
        return head + "\r\n\r\n" + (jsonio.dumps(self.body).decode() if self.body is not None else "")

    @classmethod
    def from_journal(cls, text: str) -> FhirAnswer:
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        location = next((line.partition(": ")[2] for line in lines[1:] if line.startswith("Location: ")), None)
        return cls(int(lines[0].split()[0]), jsonio.load_json(body) if body else None, location)


def outcome_answer(status: int, issues: list[Issue]) -> FhirAnswer:
    return FhirAnswer(status, operation_outcome(issues))


class _Failed(Exception):
    def __init__(self, status: int, issues: list[Issue]) -> None:
        super().__init__(issues[0].diagnostics if issues else str(status))
        self.status, self.issues = status, issues


@dataclass
class _Run:
    """One submission's working state."""

    msg: Message
    submission: Submission
    actor: Actor
    prefer: str
    at: datetime
    effects: list[EntityRef] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class FhirWriter:
    def __init__(
        self, store: Store, bus: EventBus, tables: CodeTables, tz: tzinfo,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store, self.bus, self.tables, self.tz = store, bus, tables, tz
        self.clock = clock or (lambda: datetime.now(UTC))

    async def submit(self, request: FhirRequest, *, actor: Actor, peer: str | None, prefer: str = "") -> FhirAnswer:
        try:
            return await self._submit(request, actor, peer, prefer)
        except IntegrityError:
            # the same bytes from the same sender, answered meanwhile by a concurrent request: the
            # journal answers a sender + control id once (uq_messages_answered), so this run rolled
            # back whole; run again, it now finds that answer and is journaled DUPLICATE
            return await self._submit(request, actor, peer, prefer)

    async def _submit(self, request: FhirRequest, actor: Actor, peer: str | None, prefer: str) -> FhirAnswer:
        raw = request.encode()
        msg = Message(channel=CHANNEL, raw=raw, received_at=self.clock(), peer=peer, sender=request.sender,
                      control_id=control_id(raw), type=f"{request.method} {request.resource_type or 'Bundle'}")
        try:
            submission = decode(raw)
        except InvalidResource as exc:
            return await self._refused(msg, failure(exc), rejected=True)
        async with self.store.read() as repo:
            earlier = await repo.journal.processed(request.sender, msg.control_id or "")
        if earlier is not None and earlier.ack:
            msg.status, msg.ack, msg.processed_at = MessageStatus.DUPLICATE, earlier.ack, self.clock()
            msg.error = f"duplicate of message {earlier.id}"
            await self._journal(msg)
            return FhirAnswer.from_journal(earlier.ack)
        if submission.bundle is not None:
            msg.type = f"Bundle/{submission.bundle.type}"
        steps = plan(submission, self.tables, self.tz)
        run = _Run(msg, submission, actor, prefer, self.clock())
        try:
            return await self._apply(run, steps)
        except _Failed as exc:
            return await self._refused(msg, (exc.status, exc.issues))

    async def _apply(self, run: _Run, steps: list[Step]) -> FhirAnswer:
        bundle = run.submission.bundle
        batch = bundle is not None and bundle.type == "batch"
        if bundle is not None and bundle.type not in ("transaction", "batch"):
            why = f"Bundle.type {bundle.type!r}: POST to the base takes a transaction or a batch"
            raise _Failed(400, [error(IssueType.INVALID, why, "Bundle.type")])
        blocking = [i for s in steps for i in s.issues if i.blocking]
        if blocking and not batch:
            raise _Failed(status_of(blocking), [i for s in steps for i in s.issues])
        if bundle is None and steps and steps[0].unmapped:
            return await self._not_applied(run, steps[0])
        results: dict[int, EntryResult] = {}
        async with self.store.write() as repo:
            for step in steps:
                if not step.ok or step.converted is None:
                    results[_n(step)] = _entry_failed(step) if not step.ok else EntryResult(200, outcome=step.issues)
                    continue
                try:
                    async with _savepoint(repo, batch):
                        results[_n(step)] = await self._step(repo, run, step)
                except HuizhenError as exc:
                    status, issues = failure(exc, path=step.path, resource_type=step.resource_type)
                    if not batch:
                        raise _Failed(status, [*issues, *(i for i in step.issues if not i.blocking)]) from exc
                    results[_n(step)] = EntryResult(status, outcome=issues)
            answer = self._answer(run, [results[n] for n in sorted(results)])
            run.msg.status, run.msg.effects, run.msg.processed_at = MessageStatus.PROCESSED, run.effects, run.at
            run.msg.ack = answer.journal_text()
            await repo.journal.add(run.msg)
        await self._publish(run.msg, run.events)
        return answer

    async def _step(self, repo: Repository, run: _Run, step: Step) -> EntryResult:
        created = step.method == "POST"
        if step.condition is not None:
            found = await _matches(repo, step.resource_type, step.condition)
            if len(found) > 1:
                raise FhirHttpError(412, IssueType.MULTIPLE_MATCHES, f"{len(found)} {step.resource_type} match")
            if step.method == "POST" and found:  # If-None-Exist: it exists, nothing to create
                location, resource = await read_effect(repo, step.resource_type, EntityRef("", found[0]))
                return EntryResult(200, location=location, resource=resource, outcome=step.issues)
            if step.method == "PUT" and step.resource_type not in CONDITIONAL_UPDATE:
                raise FhirHttpError(400, IssueType.NOT_SUPPORTED, f"conditional update of {step.resource_type}")
            created = created or not found  # a conditional update that matches nothing creates (201)
        applier = Applier(repo, actor=run.actor, at=run.at, tz=self.tz)
        await applier.apply_all(step.converted.commands if step.converted else ())
        run.effects += [e for e in applier.effects if e not in run.effects]
        run.events += applier.events
        kind = STORED_AS.get(step.resource_type)
        primary = next((e for e in applier.effects if e.type == kind), None)
        if primary is None:
            return EntryResult(200, outcome=step.issues)
        location, resource = await read_effect(repo, step.resource_type, primary)
        status = 201 if created else 200
        return EntryResult(status, location=location, resource=resource, outcome=step.issues)

    def _answer(self, run: _Run, results: list[EntryResult]) -> FhirAnswer:
        bundle = run.submission.bundle
        if bundle is None:
            [result] = results
            body: JSON | None = result.resource
            if "return=OperationOutcome" in run.prefer or body is None:
                body = operation_outcome(result.outcome)
            elif "return=minimal" in run.prefer:
                body = None
            return FhirAnswer(result.status, body, result.location)
        if "return=representation" not in run.prefer:
            results = [EntryResult(r.status, r.location, r.etag, r.last_modified, r.outcome) for r in results]
        shape = transaction_response if bundle.type == "transaction" else batch_response
        return FhirAnswer(200, shape(results))

    async def _not_applied(self, run: _Run, step: Step) -> FhirAnswer:
        """A valid resource Huizhen does not take: journaled FILTERED, answered with why."""
        filtered = step.resource_type == "ServiceRequest"  # a mapped type, but not a consultation request
        status = 422 if filtered else 404
        code = IssueType.BUSINESS_RULE if filtered else IssueType.NOT_SUPPORTED
        reason = (
            "ServiceRequest is taken only as a consultation request (code in consultation_orders.csv)"
            if filtered else f"{step.resource_type} is not supported by Huizhen"
        )
        answer = outcome_answer(status, [error(code, reason, step.resource_type)])
        run.msg.status, run.msg.error, run.msg.processed_at = MessageStatus.FILTERED, reason, run.at
        run.msg.ack = answer.journal_text()
        await self._journal(run.msg)
        await self._publish(run.msg, [])
        return answer

    async def _refused(self, msg: Message, failed: tuple[int, list[Issue]], *, rejected: bool = False) -> FhirAnswer:
        status, issues = failed
        answer = outcome_answer(status, issues)
        first = next((i for i in issues if i.blocking), None)
        where = f"{first.expression[0]}: " if first and first.expression else ""
        reason = f"{where}{first.diagnostics}" if first else f"HTTP {status}"
        msg.status, msg.error, msg.processed_at = MessageStatus.ERROR, ("rejected: " if rejected else "") + reason, (
            self.clock()
        )
        msg.effects, msg.ack = [], answer.journal_text()
        await self._journal(msg)
        log.warning("FHIR submission not applied (%s)", status, extra={"message_id": msg.id, "sender": msg.sender})
        await self._publish(msg, [])
        return answer

    async def _journal(self, msg: Message) -> None:
        async with self.store.write() as repo:
            await repo.journal.add(msg)

    async def _publish(self, msg: Message, events: list[Event]) -> None:
        for event in events:
            await self.bus.publish(event)
        await self.bus.publish(
            Event(
                topic=MESSAGE_TOPIC, type=msg.status.value,
                data={"id": msg.id, "channel": msg.channel, "status": msg.status.value, "type": msg.type,
                      "sender": msg.sender, "control_id": msg.control_id},
            )
        )


async def _matches(repo: Repository, resource_type: str, ident: Identifier) -> list[str]:
    """Huizhen ids of the resources a conditional create or update names."""
    if resource_type == "Patient":
        if ident.system:
            patient = await repo.patients.by_identifier(ident.system, ident.value)
            return [patient.id] if patient else []
        page = await repo.patients.search(identifier=ident.value, first=2)
        return [p.id for p, _ in page.items]
    found: Any = None
    if resource_type == "Practitioner":
        found = await repo.directory.practitioner_by_identifier(ident.system, ident.value)
    elif resource_type == "Organization":
        found = await repo.directory.facility_by_code(ident.value)
    elif resource_type == "Encounter":
        found = await repo.clinical.encounter_by_visit(ident)
    elif resource_type == "ServiceRequest":
        found = await repo.consultations.by_source_order(ident)
    else:
        raise FhirHttpError(400, IssueType.NOT_SUPPORTED, f"conditional create or update of {resource_type}")
    return [found.id] if found is not None else []


@contextlib.asynccontextmanager
async def _savepoint(repo: Repository, use: bool) -> AsyncIterator[None]:
    if not use:
        yield
        return
    async with repo.conn.begin_nested():
        yield


def _n(step: Step) -> int:
    return step.index if step.index is not None else 0


def _entry_failed(step: Step) -> EntryResult:
    return EntryResult(status_of(step.issues), outcome=step.issues)
