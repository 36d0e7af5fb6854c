"""The checks fhir.resources leaves out, walked over the JSON beside the models.

pydantic coerces: ``"active": "yes"`` becomes ``True`` and ``"valueInteger": "5"``
becomes ``5``, and no code is checked against its required value set. FHIR R4
JSON allows none of that. After the model accepted a resource, :func:`check`
walks the JSON it came from and reports, with the element's path:

* a primitive of the wrong JSON type (boolean, integer, decimal vs string);
* a code outside its required value set (see :mod:`.r4`);
* a decimal with more than :data:`MAX_DECIMAL_DIGITS` significant digits;
* ``null`` where a value belongs, and (as warnings) empty objects and arrays;
* R4B data types that R4 does not have.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from huizhen.mappings.fhir.models import Element, Kind, Model, elements, resource_model
from huizhen.mappings.fhir.outcome import Issue, IssueType, error, warning

# XML Schema's minimum decimal precision, which FHIR's decimal inherits; values
# beyond it do not survive common FHIR servers (fhir-server rejects them too).
MAX_DECIMAL_DIGITS: Final = 18
_NOT_R4_TYPES: Final = frozenset({"CodeableReference", "RatioRange"})
_JSON_KIND: Final = {
    Kind.BOOLEAN: "a JSON boolean",
    Kind.INTEGER: "a JSON integer",
    Kind.DECIMAL: "a JSON number",
    Kind.STRING: "a JSON string",
}


def check(data: Mapping[str, Any], model: type[Model], path: str) -> list[Issue]:
    issues: list[Issue] = []
    stack: list[tuple[Mapping[str, Any], type[Model], str]] = [(data, model, path)]
    while stack:
        node, cls, where = stack.pop()
        table = elements(cls)
        for key, value in node.items():
            element = table.get(key)
            if element is None:  # resourceType, or an unknown element pydantic reported
                continue
            at = f"{where}.{key}"
            items = value if isinstance(value, list) else [value]
            if isinstance(value, list) and not value:
                issues.append(warning(IssueType.STRUCTURE, "empty array", at))
            for n, item in enumerate(items):
                item_at = f"{at}[{n}]" if isinstance(value, list) else at
                if item is None:
                    # null only pads arrays of primitives against their "_x" twin
                    padded = element.kind not in _COMPLEX or key.startswith("_")
                    if not (isinstance(value, list) and padded):
                        issues.append(error(IssueType.VALUE, "null is not a FHIR value", item_at))
                    continue
                if element.kind in _COMPLEX:
                    child = _child_model(element, item)
                    if child is None or not isinstance(item, Mapping):
                        continue
                    if child.__name__ in _NOT_R4_TYPES:
                        issues.append(error(IssueType.STRUCTURE, f"{child.__name__} is not an R4 type", item_at))
                    if not item:
                        issues.append(warning(IssueType.STRUCTURE, "empty object", item_at))
                    stack.append((item, child, item_at))
                else:
                    issues.extend(_primitive(element, item, item_at))
    issues.sort(key=lambda issue: issue.expression)
    return issues


_COMPLEX: Final = (Kind.MODEL, Kind.RESOURCE)
_JSON_NAME: Final[dict[type, str]] = {bool: "boolean", str: "string", dict: "object", list: "array"}


def _child_model(element: Element, item: Any) -> type[Model] | None:
    if element.kind is Kind.MODEL:
        return element.model
    if isinstance(item, Mapping) and isinstance(item.get("resourceType"), str):
        return resource_model(item["resourceType"])
    return None


def _primitive(element: Element, value: Any, at: str) -> list[Issue]:
    kind = element.kind
    ok = {
        Kind.BOOLEAN: isinstance(value, bool),
        Kind.INTEGER: isinstance(value, int) and not isinstance(value, bool),
        Kind.DECIMAL: isinstance(value, int | float | Decimal) and not isinstance(value, bool),
        Kind.STRING: isinstance(value, str),
    }[kind]
    if not ok:
        found = _JSON_NAME.get(type(value), "number")
        return [error(IssueType.VALUE, f"must be {_JSON_KIND[kind]}, found {found}", at)]
    if kind is Kind.DECIMAL:
        digits = len(Decimal(str(value)).as_tuple().digits)
        if digits > MAX_DECIMAL_DIGITS:
            return [
                error(
                    IssueType.VALUE,
                    f"decimal {value} has {digits} significant digits; at most {MAX_DECIMAL_DIGITS} are supported",
                    at,
                )
            ]
    if element.codes is not None and value not in element.codes:
        allowed = ", ".join(sorted(element.codes))
        return [error(IssueType.CODE_INVALID, f"{value!r} is not one of: {allowed}", at)]
    return []
