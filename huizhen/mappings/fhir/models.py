"""Lookups into the fhir.resources R4B model classes, cached.

The models know each element's JSON name, whether it repeats, and its type:
another model, a contained resource, or a primitive. :mod:`.conformance`
walks JSON beside them.
"""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel

from huizhen.mappings.fhir import r4

Model = FHIRAbstractModel
_ABSTRACT = frozenset({"Resource", "DomainResource"})


class Kind(enum.Enum):
    MODEL = "model"
    RESOURCE = "resource"  # a contained or entry resource: typed by its resourceType
    BOOLEAN = "boolean"
    INTEGER = "integer"
    DECIMAL = "decimal"
    STRING = "string"  # every other primitive is written as a JSON string


@dataclass(frozen=True, slots=True)
class Element:
    kind: Kind
    repeats: bool
    model: type[Model] | None = None
    codes: frozenset[str] | None = None  # the required value set of a code element


@cache
def resource_model(resource_type: str) -> type[Model] | None:
    """The R4B model of a concrete resource type, or None."""
    if resource_type in _ABSTRACT or not resource_type.isidentifier():
        return None
    try:
        cls = get_fhir_model_class(resource_type)
    except ValueError:
        return None
    if not cls.has_resource_base() or cls.get_resource_type() != resource_type:
        return None
    return cls


def is_r4_resource_type(resource_type: str) -> bool:
    if resource_type in r4.R4B_ONLY:
        return False
    return resource_type in r4.R4_ONLY or resource_model(resource_type) is not None


@cache
def elements(cls: type[Model]) -> dict[str, Element]:
    """JSON property name -> element description, primitive extensions (``_x``) included."""
    table: dict[str, Element] = {}
    for name, info in cls.model_fields.items():
        alias = info.alias or name
        if alias == "fhir_comments":
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        element = _describe(info.annotation)
        if element.kind is Kind.STRING and alias[0] != "_":
            element = Element(element.kind, element.repeats, None, _codes(cls, alias, extra))
        table[alias] = element
    return table


def _codes(cls: type[Model], alias: str, extra: dict[str, Any]) -> frozenset[str] | None:
    for base in cls.__mro__:
        if (base.__name__, alias) in r4.OPEN_CODES:
            return None
        fixed = r4.REQUIRED_CODES.get((base.__name__, alias))
        if fixed is not None:
            return fixed
    listed = extra.get("enum_values")
    if isinstance(listed, list) and listed and "+" not in listed:  # "+": truncated list
        return frozenset(str(code) for code in listed)
    return None


def _describe(annotation: Any) -> Element:
    repeats = False
    while True:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin in (typing.Union, types.UnionType):
            annotation = next(a for a in args if a is not type(None))
        elif origin in (list, typing.List):  # noqa: UP006 - typing.List is what the models use
            repeats, annotation = True, args[0]
        elif origin is typing.Annotated:
            annotation = args[0]
        else:
            break
    klass = getattr(annotation, "get_model_klass", None)
    if klass is not None:
        model = klass()
        if model.get_resource_type() in _ABSTRACT:
            return Element(Kind.RESOURCE, repeats)
        return Element(Kind.MODEL, repeats, model)
    if annotation is bool:
        return Element(Kind.BOOLEAN, repeats)
    if annotation is int:
        return Element(Kind.INTEGER, repeats)
    if annotation is Decimal:
        return Element(Kind.DECIMAL, repeats)
    return Element(Kind.STRING, repeats)
