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
truth test). Anything else — a
``None`` for a non-null field, a value the scalar refuses — goes the full way,
so errors, paths and locations are graphql-core's own.
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


class LeanExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def execute_field(  # type: ignore[override]
        self, parent_type: GraphQLObjectType, source: Any, field_details_list: Any, path: Any, *args: Any
    ) -> Any:
        if not _has_middleware(self.middleware_manager):
            field_def = self.schema.get_field(parent_type, field_details_list[0].node.name.value)
            if field_def is not None:
                attr, serialize, nullable = _lean(field_def)
                if attr is not None and not field_details_list[0].node.arguments:
                    value = getattr(source, attr)
                    if value is None:
                        if nullable:
                            return None
                    else:
                        try:
                            out = serialize(value)
                        except Exception:
                            out = None
                        if out is not None and out is not Undefined:
                            return out
        return super().execute_field(parent_type, source, field_details_list, path, *args)
