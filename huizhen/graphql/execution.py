"""A shorter path through graphql-core for plain scalar fields, objects and lists.

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

The objects and lists between them (``edges``, ``node``, ``patient``,
``observations``: some 400 values a page) cost graphql-core five calls per
object and three more per list item before their fields are reached; the same
context completes them with a loop that goes straight to the object's field
set (see :class:`LeanExecutionContext`).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import CoroutineType, GeneratorType
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    Undefined,
    is_leaf_type,
)
from graphql.execution.executor import to_nodes
from graphql.execution.middleware import MiddlewareManager
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

_NOT_LEAN = (None, None, False)


def _basic_attribute(field_def: GraphQLField) -> str | None:
    """The attribute a strawberry basic field reads (no resolver, no permission classes, no field
    extensions, no arguments: strawberry itself answers it with ``getattr``), else None."""
    field = field_def.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if (
        isinstance(field, StrawberryField) and field.is_basic_field and not field.extensions
        and not field_def.args and getattr(field_def.resolve, "_is_default", False)
        and field.default_resolver is getattr
    ):
        return field.python_name
    return None


def _lean(field_def: GraphQLField) -> tuple[str | None, Any, bool]:
    """(attribute, serialize, nullable) for a plain scalar field, else (None, None, False)."""
    cached = field_def.extensions.get("huizhen-lean")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    found: tuple[str | None, Any, bool] = _NOT_LEAN
    attribute = _basic_attribute(field_def)
    if attribute is not None:
        nullable = not isinstance(field_def.type, GraphQLNonNull)
        leaf = field_def.type.of_type if isinstance(field_def.type, GraphQLNonNull) else field_def.type
        if is_leaf_type(leaf):
            assert isinstance(leaf, GraphQLLeafType)
            found = (attribute, leaf.serialize, nullable)
    field_def.extensions = {**field_def.extensions, "huizhen-lean": found}
    return found


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a field's value completes to: an object, a list of objects, or a list of leaves."""

    nullable: bool
    object_type: GraphQLObjectType | None  # the object, or a list's item object; None: a list of leaves
    item_type: GraphQLOutputType | None  # a list's item type as declared (non-null or not); None: not a list
    item_nullable: bool
    serialize: Any  # a list of leaves: the leaf type's ``serialize``


def _shape(field_def: GraphQLField) -> _Shape | None:
    """The shape of a field completed by :class:`LeanExecutionContext` itself; None for the others
    (abstract types, objects with an ``is_type_of`` check, lists of lists, leaves)."""
    cached = field_def.extensions.get("huizhen-shape", Undefined)
    if cached is not Undefined:
        return cached  # type: ignore[no-any-return]
    found: _Shape | None = None
    nullable = not isinstance(field_def.type, GraphQLNonNull)
    inner = field_def.type.of_type if isinstance(field_def.type, GraphQLNonNull) else field_def.type
    if isinstance(inner, GraphQLObjectType):
        if inner.is_type_of is None:
            found = _Shape(nullable, inner, None, False, None)
    elif isinstance(inner, GraphQLList):
        item = inner.of_type
        item_nullable = not isinstance(item, GraphQLNonNull)
        leaf = item.of_type if isinstance(item, GraphQLNonNull) else item
        if isinstance(leaf, GraphQLObjectType):
            if leaf.is_type_of is None:
                found = _Shape(nullable, leaf, item, item_nullable, None)
        elif is_leaf_type(leaf):
            assert isinstance(leaf, GraphQLLeafType)
            found = _Shape(nullable, None, item, item_nullable, leaf.serialize)
    field_def.extensions = {**field_def.extensions, "huizhen-shape": found}
    return found


_PLAIN: dict[type, bool] = {}  # by class: classes are few and live as long as the schema


def _plain(cls: type) -> bool:
    """Whether values of this class are completed as they are: not an error to raise, nothing
    awaitable (graphql-core's ``is_awaitable`` asks the same of each value)."""
    found = _PLAIN.get(cls)
    if found is None:
        found = _PLAIN[cls] = not (
            issubclass(cls, (BaseException, CoroutineType, GeneratorType))
            or hasattr(cls, "__await__") or hasattr(cls, "__getattr__")
        )
    return found


def _has_middleware(manager: MiddlewareManager | None) -> bool:
    """Whether a middleware wraps resolvers: strawberry passes a manager on every request, empty
    unless an extension implements ``resolve``; an empty one wraps nothing."""
    return manager is not None and bool(manager.middlewares)


class _Step:
    """One field of a field set, as this request executes it."""

    __slots__ = (
        "args", "attr", "details", "field_def", "name", "nullable", "serialize", "shape", "subfields", "subplan",
    )

    def __init__(self, name: str, details: Any, field_def: GraphQLField | None, attr: str | None,
                 serialize: Any, nullable: bool, shape: _Shape | None) -> None:
        self.name, self.details, self.field_def = name, details, field_def
        self.attr, self.serialize, self.nullable, self.shape = attr, serialize, nullable, shape
        self.args: dict[str, Any] | None = None  # the field's arguments, coerced once for the request
        self.subfields: Any = None  # the object's field set, collected once; False: it defers (full path)
        self.subplan: Any = Undefined  # the steps of that field set (None: graphql-core's way), looked up once


class LeanExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Fields answered in ``execute_fields`` itself, the field's plan looked up once per selection
    (graphql-core collects a list's item selection once, so the same field set comes back for each
    row):

    * plain scalar fields: no ``Path``, no ``execute_field`` call;
    * fields whose value is an object, a list of objects or a list of leaves (``patient``,
      ``edges``, ``observations``…): the resolver called as graphql-core calls it (its arguments
      coerced once per request, not per row), and the value completed by a loop that goes
      straight to the object's field set, instead of graphql-core's five calls per object
      (``complete_value`` twice, ``complete_object_value``, ``collect_and_execute_subfields``,
      ``collect_subfields``) and three per list item.

    Whatever is not the usual case — a null for a non-null field, an awaitable, an error, a value
    a scalar refuses, ``@defer`` — is completed by graphql-core's own ``complete_value`` (or the
    field goes the full way), so errors, paths and locations are graphql-core's own. The other
    fields of the set go through graphql-core as one smaller set."""

    def build_per_event_executor(self, payload: Any) -> Any:
        """The executor of one subscription event, sharing with the subscription's other events
        what depends only on the operation and its variables: the root field set collected by the
        first event (so that graphql-core's memo of the subfields, keyed by the identity of their
        field group, hits from the second event on instead of collecting the selection again and
        keeping every event's copy for the life of the subscription) and the lean plans of the
        field sets (:meth:`_plan`)."""
        shared = self.__dict__
        shared.setdefault("_lean_plans", {})  # the copy below shares these dicts
        shared.setdefault("_event_root", {})
        return super().build_per_event_executor(payload)

    def execute_collected_root_fields(  # type: ignore[override]
        self, root_type: GraphQLObjectType, root_value: Any, grouped_field_set: Any, serially: bool,
        new_defer_usages: Any,
    ) -> Any:
        roots: dict[str, Any] | None = self.__dict__.get("_event_root")
        if roots is not None and not new_defer_usages:  # a subscription's event
            first = roots.setdefault(root_type.name, grouped_field_set)
            if first is not grouped_field_set and _same_fields(first, grouped_field_set):
                grouped_field_set = first
        return super().execute_collected_root_fields(  # type: ignore[misc]
            root_type, root_value, grouped_field_set, serially, new_defer_usages
        )

    def execute_fields(  # type: ignore[override]
        self, parent_type: GraphQLObjectType, source: Any, path: Any, grouped_field_set: Any, *args: Any
    ) -> Any:
        plan = None if _has_middleware(self.middleware_manager) else self._plan(parent_type, grouped_field_set)
        if plan is None:
            return super().execute_fields(parent_type, source, path, grouped_field_set, *args)
        return self._execute_plan(plan, parent_type, source, path, grouped_field_set, *args)

    def _execute_plan(
        self, plan: list[_Step], parent_type: GraphQLObjectType, source: Any, path: Any, grouped_field_set: Any,
        *args: Any,
    ) -> Any:
        """``execute_fields`` with the field set's steps at hand (an object or list field keeps
        them on its step, so that the rows of a list do not look them up again, one by one)."""
        shaped = not args or args[0] is None  # no delivery group (``@defer``) to keep
        values: dict[str, Any] = {}
        rest: dict[str, Any] | None = None
        later: list[str] | None = None
        try:
            for step in plan:
                name = step.name
                serialize = step.serialize
                if serialize is not None:
                    try:
                        value = getattr(source, step.attr)  # type: ignore[arg-type]
                    except Exception:
                        value = Undefined
                    if value is None:
                        if step.nullable:
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
                elif step.shape is not None and shaped:
                    value = self._execute_shaped(step, parent_type, source, path)
                    if value is not Undefined:
                        values[name] = value
                        if value is not None and type(value) is not dict and type(value) is not list:
                            if later is None:
                                later = []
                            later.append(name)  # an awaitable, completed on its own
                        continue
                if rest is None:
                    rest = {}
                rest[name] = step.details  # its error (a null, a refused value) is graphql-core's own
        except Exception:
            if later:  # graphql-core's own care: what was started settles, its errors are not lost
                self.settle_in_background([values[n] for n in later])
            raise
        found: Any = None if rest is None else super().execute_fields(parent_type, source, path, rest, *args)
        if later is None and (found is None or not self.is_awaitable(found)):
            return values if found is None else _merged(grouped_field_set, values, found)
        return _merged_later(grouped_field_set, values, later or [], found, self.is_awaitable(found))

    def _execute_shaped(self, step: _Step, parent_type: GraphQLObjectType, source: Any, path: Any) -> Any:
        """``execute_field`` for an object or list field: the value, an awaitable of it, or
        Undefined when its attribute raised (the full path then answers it)."""
        field_def: Any = step.field_def
        return_type = field_def.type
        field_path = Path(path, step.name, parent_type.name)
        info = None
        try:
            if step.attr is not None:
                try:
                    result = getattr(source, step.attr)
                except Exception:
                    return Undefined
            else:
                info = self.build_resolve_info(field_def, to_nodes(step.details), parent_type, field_path)
                arguments = step.args
                if arguments is None:
                    first = step.details[0]
                    arguments = step.args = get_argument_values(
                        field_def, first.node, self.variable_values, first.fragment_variable_values,
                        self.hide_suggestions,
                    ) if field_def.args or first.node.arguments else {}
                result = field_def.resolve(source, info, **arguments)
                if self.is_awaitable(result):
                    return self.complete_awaitable_value(return_type, step.details, info, field_path, result, None)
            completed = self._complete(step, parent_type, field_path, info, result)
            if completed is not None and type(completed) is not dict and type(completed) is not list:
                return self._awaited(completed, return_type, step.details, field_path)
            return completed
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, step.details, field_path)
            return None

    def _complete(self, step: _Step, parent_type: GraphQLObjectType, path: Path, info: Any, result: Any) -> Any:
        shape: Any = step.shape
        if result is None:
            return None if shape.nullable else self._full(step, parent_type, path, info, result)
        if not _plain(type(result)):
            return self._full(step, parent_type, path, info, result)
        if shape.item_type is None:  # an object
            subfields = self._subfields(step)
            if subfields is False:
                return self._full(step, parent_type, path, info, result)
            plan = self._subplan(step)
            if plan is None:
                return self.execute_fields(shape.object_type, result, path, subfields, None)
            return self._execute_plan(plan, shape.object_type, result, path, subfields, None)
        if type(result) is not list:
            return self._full(step, parent_type, path, info, result)
        if shape.object_type is None:  # a list of leaves
            serialize = shape.serialize
            leaves: list[Any] = []
            for item in result:
                if item is None and shape.item_nullable:
                    leaves.append(None)
                    continue
                if item is None or not _plain(type(item)):
                    return self._full(step, parent_type, path, info, result)
                try:
                    out = serialize(item)
                except Exception:
                    out = None
                if out is None or out is Undefined:  # refused: graphql-core's error
                    return self._full(step, parent_type, path, info, result)
                leaves.append(out)
            return leaves
        subfields = self._subfields(step)
        if subfields is False or not all(item is not None and _plain(type(item)) for item in result):
            return self._full(step, parent_type, path, info, result)
        object_type, item_type, details = shape.object_type, shape.item_type, step.details
        plan = self._subplan(step)
        completed: list[Any] = []
        later: list[int] | None = None
        try:
            for index, item in enumerate(result):
                item_path = Path(path, index, None)
                try:
                    done = (
                        self.execute_fields(object_type, item, item_path, subfields, None) if plan is None
                        else self._execute_plan(plan, object_type, item, item_path, subfields, None)
                    )
                except Exception as raw_error:
                    self.handle_field_error(raw_error, item_type, details, item_path)
                    done = None
                else:
                    if type(done) is not dict:
                        done = self._awaited(done, item_type, details, item_path)
                        if later is None:
                            later = []
                        later.append(index)
                completed.append(done)
        except Exception:
            if later:
                self.settle_in_background([completed[i] for i in later])
            raise
        return completed if later is None else _list_later(completed, later)

    def _subfields(self, step: _Step) -> Any:
        """The object's field set for this field group (graphql-core's memo, kept on the step)."""
        found = step.subfields
        if found is None:
            shape: Any = step.shape
            grouped, new_defer_usages, _ = self.collect_subfields(shape.object_type, step.details)
            found = step.subfields = False if new_defer_usages else grouped
        return found

    def _subplan(self, step: _Step) -> list[_Step] | None:
        """The steps of the object's field set (after :meth:`_subfields`), kept on the step."""
        found = step.subplan
        if found is Undefined:
            shape: Any = step.shape
            found = step.subplan = (
                None if _has_middleware(self.middleware_manager) else self._plan(shape.object_type, step.subfields)
            )
        return found  # type: ignore[no-any-return]

    def _full(self, step: _Step, parent_type: GraphQLObjectType, path: Path, info: Any, result: Any) -> Any:
        """graphql-core's own completion of the value: its errors, paths and locations."""
        field_def: Any = step.field_def
        if info is None:
            info = self.build_resolve_info(field_def, to_nodes(step.details), parent_type, path)
        return self.complete_value(field_def.type, step.details, info, path, result, None)

    async def _awaited(self, awaitable: Any, return_type: GraphQLOutputType, details: Any, path: Path) -> Any:
        try:
            return await awaitable
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, details, path)
            return None

    def get_stream_usage(self, field_details_list: Any, path: Any) -> Any:
        """No ``@stream`` on a list field that carries no directive at all: answered without
        graphql-core's look-up, which misses (a raised ``KeyError``) and reads the directives again
        for every list of every row, ~150 a work-list page. graphql-core, too, reads only the first
        node (validation makes the others equivalent)."""
        if not field_details_list[0].node.directives:
            return None
        return super().get_stream_usage(field_details_list, path)

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> list[_Step] | None:
        """The steps for this field set (None when no field takes the short path), kept for the
        request with the set itself, so that its id stays its own."""
        plans: dict[int, tuple[Any, list[_Step] | None]] = self.__dict__.setdefault("_lean_plans", {})
        found = plans.get(id(grouped_field_set))
        if found is not None and found[0] is grouped_field_set:
            return found[1]
        steps: list[_Step] = []
        for name, field_details_list in grouped_field_set.items():
            node = field_details_list[0].node
            field_def = self.schema.get_field(parent_type, node.name.value)
            attr, serialize, nullable = _lean(field_def) if field_def is not None and not node.arguments else _NOT_LEAN
            shape = None
            if attr is None and field_def is not None and not node.directives:  # ``@stream``: the full path
                shape = _shape(field_def)
                attr = _basic_attribute(field_def) if shape is not None and not node.arguments else None
                if shape is not None and attr is None and field_def.resolve is None:
                    shape = None  # graphql-core's default resolver: the full path
            steps.append(_Step(name, field_details_list, field_def, attr, serialize, nullable, shape))
        plan = steps if any(s.serialize is not None or s.shape is not None for s in steps) else None
        plans[id(grouped_field_set)] = (grouped_field_set, plan)
        return plan


def _same_fields(a: Any, b: Any) -> bool:
    """Whether two collected field sets select the same nodes of the document under the same names
    (an event's root fields, collected again from the same operation and variables)."""
    if a.keys() != b.keys():
        return False
    for name, details in a.items():
        other = b[name]
        if len(details) != len(other) or any(
            x.node is not y.node or x.defer_usage is not y.defer_usage
            or x.fragment_variable_values is not y.fragment_variable_values
            for x, y in zip(details, other, strict=True)
        ):
            return False
    return True


def _merged(order: Any, values: dict[str, Any], found: dict[str, Any]) -> dict[str, Any]:
    """The fields in the order the query selected them, as graphql-core would answer them."""
    return {name: values[name] if name in values else found[name] for name in order
            if name in values or name in found}


async def _merged_later(
    order: Any, values: dict[str, Any], later: list[str], found: Any, found_later: bool
) -> dict[str, Any]:
    """The fields once the awaitable ones are done, awaited together as graphql-core does."""
    awaitables = [values[n] for n in later] + ([found] if found_later else [])
    done = [await awaitables[0]] if len(awaitables) == 1 else await gather_with_cancel(*awaitables)
    values.update(zip(later, done, strict=False))
    if found_later:
        found = done[-1]
    return values if found is None else _merged(order, values, found)


async def _list_later(completed: list[Any], indices: list[int]) -> list[Any]:
    if len(indices) == 1:
        completed[indices[0]] = await completed[indices[0]]
    else:
        for index, value in zip(indices, await gather_with_cancel(*(completed[i] for i in indices)), strict=True):
            completed[index] = value
    return completed
