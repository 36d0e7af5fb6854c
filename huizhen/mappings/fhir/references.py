"""FHIR references as the mappers hand them to the engine: parsed, not resolved.

A reference names its target in one of several ways (relative ``Patient/123``,
an absolute URL, ``urn:uuid:…`` inside a Bundle, ``#id`` for a contained
resource, a conditional ``Patient?identifier=sys|val`` in a transaction, or a
logical ``identifier``). :class:`Ref` keeps what was said; the engine, which
knows what exists, resolves it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fhir.resources.R4B.reference import Reference as FhirReference

from huizhen.integration.model import Identifier


class RefKind(enum.StrEnum):
    RELATIVE = "relative"  # Patient/123
    ABSOLUTE = "absolute"  # http://his.example/fhir/Patient/123
    URN = "urn"  # urn:uuid:… / urn:oid:…: a Bundle entry's fullUrl
    CONTAINED = "contained"  # #p1
    CONDITIONAL = "conditional"  # Patient?identifier=system|value
    IDENTIFIER = "identifier"  # Reference.identifier only
    DISPLAY = "display"  # Reference.display only: nothing to resolve


@dataclass(frozen=True, slots=True)
class Ref:
    kind: RefKind
    type: str | None = None
    id: str | None = None
    url: str | None = None  # the reference string exactly as sent
    identifier: Identifier | None = None
    display: str | None = None

    def __str__(self) -> str:
        if self.url:
            return self.url
        if self.identifier:
            return f"{self.type or 'Resource'}?identifier={self.identifier.system}|{self.identifier.value}"
        return self.display or ""


_RELATIVE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")
_ABSOLUTE = re.compile(r"https?://\S+?/" + _RELATIVE.pattern)
_CONDITIONAL = re.compile(r"([A-Z][A-Za-z]+)\?(.+)")
_LONGEST = 4096


def ref_of(reference: FhirReference | None) -> Ref | None:
    """The :class:`Ref` of a Reference element; None when it says nothing."""
    if reference is None:
        return None
    given = _identifier(reference)
    text = reference.reference
    if text:
        return parse_reference(text, type=reference.type, display=reference.display, identifier=given)
    if given is not None:
        return Ref(RefKind.IDENTIFIER, reference.type, identifier=given, display=reference.display)
    if reference.display:
        return Ref(RefKind.DISPLAY, reference.type, display=reference.display)
    return None


def parse_reference(
    text: str,
    *,
    type: str | None = None,
    display: str | None = None,
    identifier: Identifier | None = None,
) -> Ref:
    if text.startswith("#"):
        return Ref(RefKind.CONTAINED, type, text[1:], text, identifier, display)
    if text.startswith("urn:"):
        return Ref(RefKind.URN, type, None, text, identifier, display)
    if len(text) > _LONGEST:  # no regex over an attacker's megabyte
        return Ref(RefKind.ABSOLUTE, type, None, text, identifier, display)
    if m := _RELATIVE.fullmatch(text):
        return Ref(RefKind.RELATIVE, m[1], m[2], text, identifier, display)
    if m := _ABSOLUTE.fullmatch(text):
        return Ref(RefKind.ABSOLUTE, m[1], m[2], text, identifier, display)
    if m := _CONDITIONAL.fullmatch(text):
        for name, value in parse_qsl(m[2]):
            if name == "identifier":
                system, _, code = value.rpartition("|")
                identifier = Identifier(system, code)
        return Ref(RefKind.CONDITIONAL, m[1], None, text, identifier, display)
    return Ref(RefKind.ABSOLUTE, type, None, text, identifier, display)


def _identifier(reference: FhirReference) -> Identifier | None:
    ident = reference.identifier
    if ident is None or not ident.value:
        return None
    return Identifier(ident.system or "", ident.value)


def reference_strings(data: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every ``Reference.reference`` string in a resource's JSON, with its path."""
    stack: list[tuple[Any, str]] = [(data, path)]
    while stack:
        node, at = stack.pop()
        if isinstance(node, dict):
            value = node.get("reference")
            if isinstance(value, str):
                yield f"{at}.reference", value
            stack.extend((v, f"{at}.{k}") for k, v in node.items() if k != "reference")
        elif isinstance(node, list):
            stack.extend((v, f"{at}[{n}]") for n, v in enumerate(node))
