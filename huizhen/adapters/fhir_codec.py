"""The FHIR channel's codec: a journaled request ⇄ validated resources ⇄ planned commands.

A journaled FHIR message is a :class:`~.fhir_request.FhirRequest` (see there).
:func:`plan` turns a decoded submission into :class:`Step` s, one per resource
(Bundle entries in dependency order), each with its commands or the issues
that stop it. :class:`FhirCodec` is what the engine is handed to reprocess a
journaled FHIR message; live requests go through :mod:`.fhir_write`, which
uses the same plan.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from huizhen.adapters.fhir_errors import failure
from huizhen.adapters.fhir_request import FhirRequest, condition_of, control_id
from huizhen.integration.engine import Identity, Inbound, Mapped, Outcome
from huizhen.integration.model import Identifier
from huizhen.mappings.codes import CodeTables
from huizhen.mappings.fhir import systems
from huizhen.mappings.fhir.bundle import BundleEntry, ParsedBundle, parse_bundle
from huizhen.mappings.fhir.bundle_map import map_bundle
from huizhen.mappings.fhir.commands import Converted, Origin, Target, convert
from huizhen.mappings.fhir.inbound import map_resource
from huizhen.mappings.fhir.jsonio import dumps, load_json
from huizhen.mappings.fhir.outcome import InvalidResource, Issue, IssueType, error, information, operation_outcome
from huizhen.mappings.fhir.references import Ref, parse_reference
from huizhen.mappings.fhir.result import Mapped as MappedResource
from huizhen.mappings.fhir.result import Unmapped, UnmappedReason
from huizhen.mappings.fhir.validate import Validated, validate_resource

CHANNEL = "fhir"


@dataclass(frozen=True, slots=True)
class Submission:
    request: FhirRequest
    resource: Validated | None = None  # a single resource
    bundle: ParsedBundle | None = None


@dataclass(slots=True)
class Step:
    """One resource to apply (or not): a Bundle entry, or the request's resource (``index`` None)."""

    index: int | None
    resource_type: str
    method: str
    logical_id: str | None
    condition: Identifier | None
    converted: Converted | None = None  # None: nothing to apply (see issues)
    issues: list[Issue] = field(default_factory=list)
    unmapped: bool = False  # validated but not for Huizhen: reported, not applied

    @property
    def path(self) -> str:
        return f"Bundle.entry[{self.index}].resource" if self.index is not None else self.resource_type

    @property
    def ok(self) -> bool:
        return not any(i.blocking for i in self.issues)


def decode(raw: bytes) -> Submission:
    request = FhirRequest.decode(raw)
    if request.resource_type is None:
        return Submission(request, bundle=parse_bundle(request.body))
    data = load_json(request.body)
    resource = validate_resource(data, expected_type=request.resource_type)
    if request.id is not None and resource.id != request.id:
        why = f"the resource's id must be {request.id!r}, as in the URL"
        raise InvalidResource([error(IssueType.INVALID, why, f"{resource.resource_type}.id")])
    return Submission(request, resource=resource)


class OrderCodes(Mapping[tuple[str, str], str | None]):
    """consultation_orders.csv as the FHIR mapper asks it: (system, code) → department.

    The table's codes carry no system, so a code matches in any system; SNOMED
    CT "Consultation", which Huizhen itself writes, always matches. A lookup
    view: it cannot be listed.
    """

    def __init__(self, tables: CodeTables, facility: str | None) -> None:
        self.tables, self.facility = tables, facility

    def __getitem__(self, key: tuple[str, str]) -> str | None:
        if key in ((systems.SNOMED, systems.SNOMED_CONSULTATION), ("*", systems.SNOMED_CONSULTATION)):
            return None
        found = self.tables.consultation_orders.get(self.facility, key[1])
        if found is None:
            raise KeyError(key)
        return found.department

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except (KeyError, TypeError, IndexError):
            return False
        return True

    def __iter__(self) -> Iterator[tuple[str, str]]:
        raise TypeError("consultation order codes are looked up, not listed")

    def __len__(self) -> int:
        return len(self.tables.consultation_orders)


def plan(submission: Submission, tables: CodeTables, tz: tzinfo) -> list[Step]:
    request = submission.request
    origin = Origin(request.sender, request.facility, tz)
    codes = OrderCodes(tables, request.facility)
    if submission.resource is not None:
        resource = submission.resource
        step = Step(None, resource.resource_type, request.method, request.id or resource.id, request.condition)
        _convert(step, map_resource(resource, consultation_codes=codes), origin, lambda _: None)
        return [step]
    if submission.bundle is None:
        return []
    return _bundle_steps(submission.bundle, origin, codes)


def _bundle_steps(bundle: ParsedBundle, origin: Origin, codes: OrderCodes) -> list[Step]:
    targets: dict[int, Target] = {}

    def local(ref: Ref) -> Target | None:
        n = bundle.resolve(ref.url) if ref.url else None
        return targets.get(n) if n is not None else None

    steps: dict[int, Step] = {}
    for item in map_bundle(bundle, consultation_codes=codes):
        entry = item.entry
        step = Step(entry.index, _entry_type(entry), entry.method or "POST", _logical_id(entry), None,
                    issues=list(item.issues))
        query = entry.if_none_exist or (entry.url.partition("?")[2] if entry.url else "")
        try:
            step.condition = condition_of(query)
        except InvalidResource as exc:
            step.issues += _at(exc.issues, step)
        if item.result is not None and step.ok:
            _convert(step, item.result, origin, local)
        if step.converted is not None and step.converted.target is not None:
            targets[entry.index] = step.converted.target
        steps[entry.index] = step
    return [steps[n] for n in bundle.order]


def _convert(step: Step, result: MappedResource[Any] | Unmapped, origin: Origin, local: Any) -> None:
    if isinstance(result, Unmapped):
        step.unmapped = True
        if step.index is None:
            step.issues.append(information(IssueType.NOT_SUPPORTED, result.detail, step.resource_type))
        elif result.reason is UnmappedReason.FILTERED:  # an unmapped type's entry already says so
            step.issues.append(information(IssueType.INFORMATIONAL, f"not applied: {result.detail}", step.path))
        return
    try:
        converted = convert(result, origin, logical_id=step.logical_id, local=local)
    except InvalidResource as exc:
        step.issues += _at(exc.issues, step)
        return
    step.converted = converted
    step.issues += _at([i for i in converted.issues if i not in result.warnings or step.index is None], step)


def _at(issues: list[Issue] | tuple[Issue, ...], step: Step) -> list[Issue]:
    """Issues of a resource, moved under its Bundle entry."""
    if step.index is None:
        return list(issues)
    moved = []
    for issue in issues:
        paths = tuple(step.path + p[p.index("."):] if "." in p else step.path for p in issue.expression)
        moved.append(Issue(issue.severity, issue.code, issue.diagnostics, paths or (step.path,)))
    return moved


def _entry_type(entry: BundleEntry) -> str:
    if entry.resource is not None:
        return entry.resource.resource_type
    return (entry.url or "").split("?")[0].split("/")[0] or "Resource"


def _logical_id(entry: BundleEntry) -> str | None:
    """The sender's name for an entry's resource: its id, the PUT URL's, or its fullUrl's."""
    if entry.resource is not None and entry.resource.id:
        return entry.resource.id
    if entry.method == "PUT" and entry.url and "?" not in entry.url and "/" in entry.url:
        return entry.url.split("/")[1]
    if entry.full_url:
        ref = parse_reference(entry.full_url)
        return ref.id or entry.full_url.rpartition(":")[2] or None
    return None


class FhirCodec:
    """The engine's view of the FHIR channel, used to reprocess journaled FHIR messages.

    A reprocessed message applies its resources' commands in one transaction;
    conditional create/update are not re-evaluated (the commands are upserts by
    identifier, which is what a condition on an identifier asks for).
    """

    channel = CHANNEL

    def __init__(self, tables: CodeTables, tz: tzinfo) -> None:
        self.tables, self.tz = tables, tz

    def decode(self, raw: bytes) -> Inbound:
        submission = decode(raw)
        request = submission.request
        kind = f"Bundle/{submission.bundle.type}" if submission.bundle else f"{request.method} {request.resource_type}"
        return Inbound(sender=request.sender, control_id=control_id(raw), type=kind, payload=submission)

    def map(self, message: Inbound) -> Mapped:
        steps = plan(_submission(message), self.tables, self.tz)
        blocking = [i for s in steps for i in s.issues if i.blocking]
        if blocking:
            raise InvalidResource(blocking)
        commands = tuple(c for s in steps if s.converted for c in s.converted.commands)
        notes = tuple(i for s in steps for i in s.issues)
        if not commands:
            return Mapped(warnings=notes, filtered="; ".join(i.diagnostics for i in notes) or "nothing to apply")
        return Mapped(commands=commands, warnings=notes)

    def answer(
        self, message: Inbound, outcome: Outcome, error: Exception | None, warnings: tuple[Any, ...]
    ) -> bytes | None:
        issues = failure(error)[1] if error is not None else []
        return dumps(operation_outcome([*issues, *(w for w in warnings if isinstance(w, Issue))]))

    def reject(self, raw: bytes, error: Exception) -> bytes | None:
        return dumps(operation_outcome(failure(error)[1]))

    def identify(self, raw: bytes) -> Identity:
        """The journaled request line and sender, as :mod:`.fhir_write` journals them."""
        try:
            request = FhirRequest.decode(raw)
        except InvalidResource:
            return Identity()
        return Identity(request.sender, control_id(raw), f"{request.method} {request.resource_type or 'Bundle'}")


def _submission(message: Inbound) -> Submission:
    if not isinstance(message.payload, Submission):
        raise TypeError("the FHIR codec was handed a message it did not decode")
    return message.payload
