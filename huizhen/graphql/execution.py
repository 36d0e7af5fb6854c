"""A shorter path through graphql-core for plain scalar fields.

A page of the work-list is some two thousand fields, and four in five are
plain attributes of a built object (``Consultation.number``,
``Observation.unit``…). graphql-core gives each the full treatment: resolve
info, the resolver, the awaitable check, value completion with its type
checks, in all some ten calls per field, which made a page's execution most of
its CPU. A plain scalar field needs only the attribute and its type's
``serialize``; this execution context takes that path for fields that are

* strawberry basic fields (no resolver, no permission classes, no field
  extensions: strawberry itself resolves them with ``getattr``),
* of a scalar or enum type, with no arguments,

when no middleware wraps the resolvers (Huizhen installs none; strawberry hands
graphql-core an empty manager on every request, which is not "none" to a bare
truth test). Anything else — a ``None`` for a non-null field, a value the
scalar refuses, an attribute that raises — goes the full way, so errors,
paths and locations are graphql-core's own.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLField, GraphQLLeafType, GraphQLNonNull, GraphQLObjectType, Undefined, is_leaf_type
from graphql.execution.middleware import MiddlewareManager
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

_NOT_LEAN = (None, None, False)


def _lean(field_def: GraphQLField) -> tuple[str | None, Any, bool]:
    """(attribute, serialize, nullable) for a plain scalar field, else (None, None, False)."""
    cached = field_def.extensions.get("huizhen-lean")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    found: tuple[str | None, Any, bool] = _NOT_LEAN
    field = field_def.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if (
        isinstance(field, StrawberryField) and field.is_basic_field and not field.extensions
        and not field_def.args and getattr(field_def.resolve, "_is_default", False)
        and field.default_resolver is getattr
    ):
        nullable = not isinstance(field_def.type, GraphQLNonNull)
        leaf = field_def.type.of_type if isinstance(field_def.type, GraphQLNonNull) else field_def.type
        if is_leaf_type(leaf):
            assert isinstance(leaf, GraphQLLeafType)
            found = (field.python_name, leaf.serialize, nullable)
    field_def.extensions = {**field_def.extensions, "huizhen-lean": found}
    return found


def _has_middleware(manager: MiddlewareManager | None) -> bool:
    """Whether a middleware wraps resolvers: strawberry passes a manager on every request, empty
    unless an extension implements ``resolve``; an empty one wraps nothing."""
    return manager is not None and bool(manager.middlewares)


# (response name, field group, attribute, serialize, nullable); attribute None: the full path
_Step = tuple[str, Any, str | None, Any, bool]


class LeanExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Plain scalar fields are answered in ``execute_fields`` itself: no ``Path``, no
    ``execute_field`` call, the field's plan looked up once per selection (graphql-core
    collects a list's item selection once, so the same field set comes back for each row).
    The other fields of the set go through graphql-core as one smaller set."""

    def execute_fields(  # type: ignore[override]
        self, parent_type: GraphQLObjectType, source: Any, path: Any, grouped_field_set: Any, *args: Any
    ) -> Any:
        plan = None if _has_middleware(self.middleware_manager) else self._plan(parent_type, grouped_field_set)
        if plan is None:
            return super().execute_fields(parent_type, source, path, grouped_field_set, *args)
        values: dict[str, Any] = {}
        rest: dict[str, Any] | None = None
        for name, field_details_list, attr, serialize, nullable in plan:
            if attr is not None:
                try:
                    value = getattr(source, attr)
                except Exception:
                    value = Undefined
                if value is None:
                    if nullable:
                        values[name] = None
                        continue
                elif value is not Undefined:
                    try:
                        out = serialize(value)
                    except Exception:
                        out = None
                    if out is not None and out is not Undefined:
                        values[name] = out
                        continue
            if rest is None:
                rest = {}
            rest[name] = field_details_list  # its error (a null, a refused value) is graphql-core's own
        if rest is None:
            return values
        found: Any = super().execute_fields(parent_type, source, path, rest, *args)
        if self.is_awaitable(found):
            return _merged_later(grouped_field_set, values, found)
        return _merged(grouped_field_set, values, found)

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> list[_Step] | None:
        """The steps for this field set (None when no field is plain), kept for the request with
        the set itself, so that its id stays its own."""
        plans: dict[int, tuple[Any, list[_Step] | None]] = self.__dict__.setdefault("_lean_plans", {})
        found = plans.get(id(grouped_field_set))
        if found is not None and found[0] is grouped_field_set:
            return found[1]
        steps: list[_Step] = []
        for name, field_details_list in grouped_field_set.items():
            node = field_details_list[0].node
            field_def = self.schema.get_field(parent_type, node.name.value)
            lean = _lean(field_def) if field_def is not None and not node.arguments else _NOT_LEAN
            steps.append((name, field_details_list, *lean))
        plan = steps if any(step[2] is not None for step in steps) else None
        plans[id(grouped_field_set)] = (grouped_field_set, plan)
        return plan


def _merged(order: Any, values: dict[str, Any], found: dict[str, Any]) -> dict[str, Any]:
    """The fields in the order the query selected them, as graphql-core would answer them."""
    return {name: values[name] if name in values else found[name] for name in order
            if name in values or name in found}


async def _merged_later(order: Any, values: dict[str, Any], found: Any) -> dict[str, Any]:
    return _merged(order, values, await found)
