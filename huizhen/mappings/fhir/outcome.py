"""OperationOutcome: the FHIR answer to every problem, built in one place.

Issues are typed (:class:`IssueSeverity`, :class:`IssueType` are the standard's
value sets) and carry a FHIRPath ``expression`` naming the element, e.g.
``Observation.status`` or ``Bundle.entry[2].resource.birthDate``.
:class:`InvalidResource` carries them through the core's error tree to the edge.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from huizhen.integration.errors import BadInput


class IssueSeverity(enum.StrEnum):
    FATAL = "fatal"
    ERROR = "error"
    WARNING = "warning"
    INFORMATION = "information"


class IssueType(enum.StrEnum):
    """http://hl7.org/fhir/issue-type (the codes an edge can meet)."""

    INVALID = "invalid"
    STRUCTURE = "structure"
    REQUIRED = "required"
    VALUE = "value"
    INVARIANT = "invariant"
    SECURITY = "security"
    LOGIN = "login"
    FORBIDDEN = "forbidden"
    PROCESSING = "processing"
    NOT_SUPPORTED = "not-supported"
    DUPLICATE = "duplicate"
    MULTIPLE_MATCHES = "multiple-matches"
    NOT_FOUND = "not-found"
    TOO_LONG = "too-long"
    CODE_INVALID = "code-invalid"
    EXTENSION = "extension"
    TOO_COSTLY = "too-costly"
    BUSINESS_RULE = "business-rule"
    CONFLICT = "conflict"
    TRANSIENT = "transient"
    EXCEPTION = "exception"
    TIMEOUT = "timeout"
    INCOMPLETE = "incomplete"
    THROTTLED = "throttled"
    INFORMATIONAL = "informational"


@dataclass(frozen=True, slots=True)
class Issue:
    severity: IssueSeverity
    code: IssueType
    diagnostics: str
    expression: tuple[str, ...] = ()

    @property
    def blocking(self) -> bool:
        return self.severity in (IssueSeverity.FATAL, IssueSeverity.ERROR)

    def to_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": str(self.severity),
            "code": str(self.code),
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


def error(code: IssueType, diagnostics: str, *expression: str) -> Issue:
    return Issue(IssueSeverity.ERROR, code, diagnostics, expression)


def warning(code: IssueType, diagnostics: str, *expression: str) -> Issue:
    return Issue(IssueSeverity.WARNING, code, diagnostics, expression)


def information(code: IssueType, diagnostics: str, *expression: str) -> Issue:
    return Issue(IssueSeverity.INFORMATION, code, diagnostics, expression)


def operation_outcome(issues: Iterable[Issue], *, id: str | None = None) -> dict[str, Any]:
    """An OperationOutcome resource; with no issues, the "all OK" form."""
    rendered = [issue.to_fhir() for issue in issues]
    if not rendered:
        rendered = [information(IssueType.INFORMATIONAL, "All OK").to_fhir()]
    outcome: dict[str, Any] = {"resourceType": "OperationOutcome"}
    if id is not None:
        outcome["id"] = id
    outcome["issue"] = rendered
    return outcome


class InvalidResource(BadInput):
    """Input that cannot be accepted; ``issues`` say where and why."""

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues = tuple(issues)
        first = next((i for i in self.issues if i.blocking), None) or (self.issues[0] if self.issues else None)
        where = f"{first.expression[0]}: " if first and first.expression else ""
        super().__init__(f"{where}{first.diagnostics}" if first else "invalid FHIR resource")

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)
