"""FHIR JSON bytes in and out.

Reading: UTF-8 (a leading BOM is tolerated), decimals kept exactly as
:class:`~decimal.Decimal` (FHIR decimals carry their precision: ``7.20`` is not
``7.2``), no ``NaN``/``Infinity``, no duplicate properties, nesting at most
:data:`MAX_DEPTH` deep. Every failure is an :class:`InvalidResource`.

Writing: :func:`dumps` writes those decimals back digit for digit, which the
standard library's encoder cannot do.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Final

from huizhen.mappings.fhir.outcome import InvalidResource, Issue, IssueType, error

MAX_DEPTH: Final = 64
_BOM: Final = "\ufeff"


class _DuplicateProperty(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateProperty(key)
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(body: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one JSON document, enforcing the rules above."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidResource(
                [error(IssueType.STRUCTURE, f"body is not UTF-8: {exc.reason} at byte {exc.start}")]
            ) from exc
    else:
        text = body
    text = text.removeprefix(_BOM)
    try:
        value = json.loads(text, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_object)
    except _DuplicateProperty as exc:
        raise InvalidResource([error(IssueType.STRUCTURE, f"duplicate JSON property {exc.args[0]!r}")]) from exc
    except RecursionError as exc:
        raise InvalidResource([_too_deep(max_depth)]) from exc
    except ValueError as exc:  # json.JSONDecodeError and the NaN guard
        raise InvalidResource([error(IssueType.STRUCTURE, f"not valid JSON: {exc}")]) from exc
    if _depth(value) > max_depth:
        raise InvalidResource([_too_deep(max_depth)])
    return value


def _too_deep(limit: int) -> Issue:
    return error(IssueType.TOO_COSTLY, f"JSON nested deeper than {limit} levels")


def _depth(value: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node)
    return deepest


def dumps(value: Any, *, indent: int | None = None) -> bytes:
    """Serialise JSON-shaped data (dict/list/str/int/float/bool/None/Decimal) as UTF-8."""
    parts: list[str] = []
    _write(value, parts, indent, 0)
    return "".join(parts).encode("utf-8")


def _write(value: Any, out: list[str], indent: int | None, level: int) -> None:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} cannot be written as a JSON number")
        out.append(str(value))
    elif isinstance(value, dict):
        _write_items(list(value.items()), "{}", out, indent, level)
    elif isinstance(value, list | tuple):
        _write_items(list(value), "[]", out, indent, level)
    else:
        out.append(json.dumps(value, ensure_ascii=False))


def _write_items(items: list[Any], brackets: str, out: list[str], indent: int | None, level: int) -> None:
    if not items:
        out.append(brackets)
        return
    inner = "\n" + " " * (indent * (level + 1)) if indent is not None else ""
    outer = "\n" + " " * (indent * level) if indent is not None else ""
    out.append(brackets[0])
    for n, item in enumerate(items):
        out.append(("," if n else "") + inner)
        if brackets == "{}":
            key, item = item
            out.append(json.dumps(str(key), ensure_ascii=False) + (": " if indent else ":"))
        _write(item, out, indent, level + 1)
    out.append(outer + brackets[1])
