"""Every failure of the FHIR edge as an HTTP status and OperationOutcome issues, decided here.

    FhirHttpError        a request the edge refuses itself (404, 405, 406, 412, 413, 415)
    InvalidResource      400 when the input cannot be read as FHIR (not JSON, too deep,
                         unknown elements, wrong resourceType), 422 when it can but
                         breaks a rule (a required element, a code, a reference to nothing)
    NotFound             422 inside a write (a reference to nothing), 404 for a read
    Conflict             409 (an identifier held by another patient, a concurrent change)
    InvalidTransition    409
    BadInput             400
"""

from __future__ import annotations

from collections.abc import Sequence

from huizhen.integration.errors import BadInput, Conflict, HuizhenError, InvalidTransition, NotFound
from huizhen.mappings.fhir.outcome import InvalidResource, Issue, IssueType, error

_UNREADABLE = frozenset({IssueType.STRUCTURE, IssueType.TOO_COSTLY, IssueType.INVALID})
# which element a missing entity was named by, per resource type
_REFERENCE_ELEMENT = {("Patient", "Patient"): "link.other", ("PractitionerRole", "Practitioner"): "practitioner"}


class FhirHttpError(HuizhenError):
    """A request refused at the HTTP level; ``issue`` says why."""

    def __init__(self, status: int, code: IssueType, diagnostics: str, *expression: str) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.issue = error(code, diagnostics, *expression)


def status_of(issues: Sequence[Issue]) -> int:
    blocking = [i for i in issues if i.blocking]
    unreadable = any(
        i.code in _UNREADABLE or not i.expression or any(p.endswith("resourceType") for p in i.expression)
        for i in blocking
    )
    return 400 if unreadable else 422


def failure(exc: Exception, *, path: str | None = None, resource_type: str | None = None) -> tuple[int, list[Issue]]:
    """The status and issues of an error raised while applying the resource at ``path``."""
    if isinstance(exc, FhirHttpError):
        return exc.status, [exc.issue]
    if isinstance(exc, InvalidResource):
        return status_of(exc.issues), list(exc.issues)
    at = (path,) if path else ()
    if isinstance(exc, NotFound):
        element = _REFERENCE_ELEMENT.get((resource_type or "", exc.entity), "subject")
        where = (f"{path}.{element}",) if path and exc.entity in ("Patient", "Practitioner") else at
        return 422, [error(IssueType.NOT_FOUND, f"a reference to nothing: {exc}", *where)]
    if isinstance(exc, Conflict):
        return 409, [error(IssueType.CONFLICT, str(exc), *at)]
    if isinstance(exc, InvalidTransition):
        return 409, [error(IssueType.BUSINESS_RULE, str(exc), *at)]
    if isinstance(exc, BadInput):
        return 400, [error(IssueType.INVALID, str(exc), *at)]
    return 500, [error(IssueType.EXCEPTION, f"{type(exc).__name__}: the request could not be carried out", *at)]
