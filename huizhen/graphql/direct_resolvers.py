"""Resolver fields called directly, without strawberry's per-call chain (see
:func:`install_direct_resolvers`); the lean execution of the fields between them is
:mod:`huizhen.graphql.execution`."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLField, GraphQLObjectType
from strawberry.permission import PermissionExtension
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.base import StrawberryOptional
from strawberry.types.field import StrawberryField

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
