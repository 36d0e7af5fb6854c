"""Validate FHIR R4 JSON into fhir.resources models, or say exactly what is wrong.

:func:`parse_resource` takes a request body, :func:`validate_resource` an already
parsed JSON object (a Bundle entry, say). Both return :class:`Validated` or raise
:class:`~.outcome.InvalidResource` whose issues name each element by its FHIRPath
(``Observation.status``, ``Bundle.entry[1].resource.birthDate``). See :mod:`.r4`
for how R4 is judged with the R4B models, :mod:`.conformance` for the checks
added on top of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from huizhen.mappings.fhir import r4
from huizhen.mappings.fhir.conformance import check
from huizhen.mappings.fhir.jsonio import load_json
from huizhen.mappings.fhir.models import Model, is_r4_resource_type, resource_model
from huizhen.mappings.fhir.outcome import (
    InvalidResource,
    Issue,
    IssueType,
    error,
    information,
)


@dataclass(frozen=True, slots=True)
class Validated:
    resource_type: str
    data: dict[str, Any]  # the JSON as received, decimals exact
    model: Model | None  # None only for the types in r4.NO_R4_MODEL
    warnings: tuple[Issue, ...] = ()

    @property
    def id(self) -> str | None:
        value = self.data.get("id")
        return value if isinstance(value, str) else None


def parse_resource(body: bytes | str, *, expected_type: str | None = None) -> Validated:
    return validate_resource(load_json(body), expected_type=expected_type)


def validate_resource(data: Any, *, expected_type: str | None = None, path: str | None = None) -> Validated:
    """``path`` is the FHIRPath of ``data`` inside its container (default: its type)."""
    if not isinstance(data, dict):
        kind = "JSON array" if isinstance(data, list) else f"JSON {type(data).__name__}"
        raise InvalidResource([error(IssueType.STRUCTURE, f"a FHIR resource is a JSON object, not a {kind}")])
    resource_type = _resource_type(data, expected_type, path)
    root = path or resource_type
    nested = list(_nested_type_issues(data, root))
    if nested:
        raise InvalidResource(nested)
    if resource_type in r4.NO_R4_MODEL:
        note = information(
            IssueType.INFORMATIONAL,
            f"{resource_type} was checked as JSON only: fhir.resources has no R4 model of it",
            root,
        )
        return Validated(resource_type, data, None, (note,))
    model_class = resource_model(resource_type)
    if model_class is None:  # excluded by _resource_type; kept for the type checker
        raise InvalidResource([error(IssueType.NOT_SUPPORTED, f"no model for {resource_type}")])
    model: Model | None = None
    found: list[Issue] = []
    try:
        model = model_class.model_validate(data)
    except ValidationError as exc:
        found = [_issue(e, root) for e in exc.errors()]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # fhir_core internals
        found = [error(IssueType.STRUCTURE, f"cannot be read as {resource_type}: {exc!r}", root)]
    # the JSON-level checks run either way, so one answer lists every problem
    seen = {issue.expression for issue in found}
    found += [issue for issue in check(data, model_class, root) if issue.expression not in seen]
    if model is None or any(issue.blocking for issue in found):
        raise InvalidResource(found)
    return Validated(resource_type, data, model, tuple(found))


def _resource_type(data: Mapping[str, Any], expected: str | None, path: str | None) -> str:
    at = f"{path}.resourceType" if path else "resourceType"
    value = data.get("resourceType")
    if value is None or value == "":
        raise InvalidResource([error(IssueType.REQUIRED, "resourceType is missing", at)])
    if not isinstance(value, str) or not is_r4_resource_type(value):
        why = "an R4B resource type, not R4" if value in r4.R4B_ONLY else "not a FHIR R4 resource type"
        raise InvalidResource([error(IssueType.INVALID, f"{value!r} is {why}", at)])
    if expected is not None and value != expected:
        raise InvalidResource([error(IssueType.INVALID, f"expected a {expected}, found a {value}", at)])
    return value


def _nested_type_issues(data: Mapping[str, Any], root: str) -> Iterator[Issue]:
    """Resources inside resources: the elements of type Resource (see :func:`_holds_resource`)."""
    # (node, FHIRPath with indices, element path from the enclosing resource's type, node is a resource)
    stack: list[tuple[Any, str, str, bool]] = [(data, root, "", True)]
    while stack:
        node, at, element, is_resource = stack.pop()
        if isinstance(node, list):
            stack.extend((v, f"{at}[{n}]", element, is_resource) for n, v in enumerate(node))
        elif isinstance(node, dict):
            if is_resource:
                try:
                    found = _resource_type(node, None, at)
                except InvalidResource as exc:
                    yield from exc.issues
                    continue
                if found in r4.NO_R4_MODEL and node is not data:
                    yield error(
                        IssueType.NOT_SUPPORTED,
                        f"{found} cannot be validated inside another resource (fhir.resources has no R4 model of it)",
                        at,
                    )
                    continue
                element = found
            for key, value in node.items():
                if key != "div":
                    path = f"{element}.{key}"
                    stack.append((value, f"{at}.{key}", path, _holds_resource(path, key)))


def _holds_resource(element: str, key: str) -> bool:
    """Whether an element is of type Resource in R4: only these four (and Parameters' nested parts) are.

    Matching on the element's name alone would take ``CapabilityStatement.rest.resource``
    (a BackboneElement) for a resource.
    """
    if key == "contained":
        return element.count(".") == 1  # DomainResource.contained, not an element of that name deeper down
    return element in _RESOURCE_ELEMENTS or (
        element.startswith("Parameters.parameter.part.") and element.endswith(".resource")
        and set(element.split(".")[2:-1]) == {"part"}
    )


_RESOURCE_ELEMENTS = frozenset(
    {"Bundle.entry.resource", "Bundle.entry.response.outcome", "Parameters.parameter.resource"}
)


def _issue(err: Any, root: str) -> Issue:
    loc = [p for p in err["loc"] if isinstance(p, int) or _ELEMENT.fullmatch(str(p))]
    at = root
    for part in loc:
        if isinstance(part, int):
            at += f"[{part}]"
        else:
            at += "." + ("resourceType" if part == "resource_type" else part)
    kind = err["type"]
    if kind in ("missing", "model_field_validation.missing"):
        return error(IssueType.REQUIRED, "required element is missing", at)
    if kind == "extra_forbidden":
        return error(IssueType.STRUCTURE, f"unknown element {loc[-1]!r}", at)
    if kind == "list_type":
        return error(IssueType.STRUCTURE, "must be a JSON array (the element repeats)", at)
    if kind in _OBJECT_EXPECTED:
        return error(IssueType.STRUCTURE, "must be a JSON object", at)
    if kind == "fhir-validation-wrong-resource-type":
        return error(
            IssueType.STRUCTURE,
            f"resourceType {err.get('input')!r} is not allowed here (is the resource missing its 'resource' wrapper?)",
            at,
        )
    message = " ".join(str(err["msg"]).removeprefix("Value error, ").split())
    found = err.get("input")
    if isinstance(found, str | int | float) and not isinstance(found, bool):
        message += f" (found {str(found)[:80]!r})"
    return error(IssueType.VALUE, message, at)


_ELEMENT = re.compile(r"_?[A-Za-z][A-Za-z0-9_]*")
_OBJECT_EXPECTED = frozenset({"dict_type", "model_type", "model_attributes_type", "json_invalid"})
