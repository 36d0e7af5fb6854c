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
from strawberry.permission import PermissionExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.base import StrawberryOptional
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

    def get_stream_usage(self, field_details_list: Any, path: Any) -> Any:
        """No ``@stream`` on a list field that carries no directive at all: answered without
        graphql-core's look-up, which misses (a raised ``KeyError``) and reads the directives again
        for every list of every row, ~150 a work-list page. graphql-core, too, reads only the first
        node (validation makes the others equivalent)."""
        if not field_details_list[0].node.directives:
            return None
        return super().get_stream_usage(field_details_list, path)

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


# Argument types a direct resolver hands over as graphql-core coerced them (strawberry's own
# conversion of these is the identity; input types, enums and IDs are left to it)
_PLAIN_ARGUMENTS = (int, str, float, bool)


def install_direct_resolvers(schema: Any) -> int:
    """Resolver fields answered without strawberry's per-call chain; how many were installed.

    strawberry calls a resolver through some ten frames (its ``Info``, the arguments' conversion,
    the field extensions chained with ``functools.partial``, the permission extension, the
    resolver wrapper): a work-list page has some 200 relation fields (``patient``, ``expert``,
    ``observations``…), and the chain cost more than the resolvers themselves. A field takes the
    direct way when it is

    * a plain (not ``async``) resolver taking ``self`` and ``info`` and arguments of plain
      scalar types (int, str, float, bool, optional or not), no ``root``/``parent``;
    * guarded, if at all, only by :func:`huizhen.graphql.guard.can` permissions
      (``needs = (object, action)``), with no other field extension;
    * in a schema without exception handlers.

    The direct resolver asks the request's authorizer what ``can`` would ask; on a "no" it hands
    over to strawberry's own resolver, so a denial is audited and answered ``FORBIDDEN`` exactly
    as before. graphql-core still completes the value (paths, errors, nulls are its own).
    """
    converter = schema.schema_converter
    installed = 0
    for gql_type in schema._schema.type_map.values():
        if not isinstance(gql_type, GraphQLObjectType) or gql_type.name.startswith("__"):
            continue
        for field_def in gql_type.fields.values():
            field = field_def.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
            direct = _direct(converter, field, field_def) if isinstance(field, StrawberryField) else None
            if direct is not None:
                field_def.resolve = direct
                installed += 1
    return installed


def _direct(converter: Any, field: StrawberryField, field_def: GraphQLField) -> Any:
    resolver = field.base_resolver
    if (
        resolver is None or field.is_async or field.is_subscription or field_def.resolve is None
        or resolver.root_parameter is not None or resolver.parent_parameter is not None
        or resolver.self_parameter is None or converter._get_field_exception_handlers(field)
    ):
        return None
    needs: list[tuple[str, str]] = []
    for extension in field.extensions:
        if not isinstance(extension, PermissionExtension) or extension.fail_silently:
            return None
        for permission in extension.permissions:
            found = getattr(type(permission), "needs", None)
            if not (isinstance(found, tuple) and len(found) == 2):
                return None
            needs.append(found)
    names: list[tuple[str, str]] = []  # (GraphQL name, Python name)
    for argument in field.arguments:
        kind = argument.type.of_type if isinstance(argument.type, StrawberryOptional) else argument.type
        if kind not in _PLAIN_ARGUMENTS:
            return None
        names.append((converter.config.name_converter.get_graphql_name(argument), argument.python_name))
    if len(names) != len(field_def.args):
        return None
    full = field_def.resolve
    func: Any = resolver.wrapped_func
    info_name = resolver.info_parameter.name if resolver.info_parameter is not None else None
    info_class: Any = converter.config.info_class

    def resolve(source: Any, info: Any, **kwargs: Any) -> Any:
        context = info.context
        for obj, action in needs:
            if not context.allowed(obj, action):
                return full(source, info, **kwargs)  # strawberry's way: the denial audited, FORBIDDEN
        arguments = {python: kwargs[gql] for gql, python in names if gql in kwargs}
        if info_name is not None:
            arguments[info_name] = info_class(_raw_info=info, _field=field)
        return func(source, **arguments)

    return resolve
