"""The short path for plain scalar fields answers exactly as graphql-core's full path:
same data, and the same errors (message, path) when a value does not fit its type."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, ClassVar

import strawberry
from graphql import parse
from graphql.execution.execute import map_source_to_response_event
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from huizhen.graphql.execution import LeanExecutionContext


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


@strawberry.type
class Row:
    name: str
    nickname: str | None
    count: int
    colour: Colour

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()


ROWS: list[Any] = []


@strawberry.type
class Query:
    @strawberry.field
    def rows(self) -> list[Row | None]:
        return ROWS


QUERY = "{ rows { name nickname count colour shout } }"


def both(rows: list[Any]) -> tuple[Any, Any]:
    ROWS[:] = rows
    lean = strawberry.Schema(query=Query, execution_context_class=LeanExecutionContext).execute_sync(QUERY)
    full = strawberry.Schema(query=Query).execute_sync(QUERY)
    return lean, full


def errors(result: Any) -> list[tuple[str, list[Any]]]:
    return [(e.message, e.path) for e in result.errors or []]


def test_plain_fields_answer_as_the_full_path() -> None:
    lean, full = both([Row(name="张三", nickname=None, count=3, colour=Colour.GREEN)])
    assert lean.data == full.data == {
        "rows": [{"name": "张三", "nickname": None, "count": 3, "colour": "GREEN", "shout": "张三"}]
    }
    assert lean.errors is None


def test_null_in_a_non_null_field_is_graphql_cores_error() -> None:
    lean, full = both([Row(name=None, nickname="x", count=1, colour=Colour.RED)])  # type: ignore[arg-type]
    assert errors(lean) == errors(full) and errors(lean)[0][1] == ["rows", 0, "name"]
    assert lean.data == full.data == {"rows": [None]}


def test_a_value_its_scalar_refuses_is_graphql_cores_error() -> None:
    lean, full = both([Row(name="a", nickname=None, count="many", colour=Colour.RED)])  # type: ignore[arg-type]
    assert errors(lean) == errors(full) and "Int cannot represent" in errors(lean)[0][0]


class _FullPath(StrawberryGraphQLCoreExecutionContext):
    """Sits behind the short path in the MRO: sees each field that the short path hands on."""

    seen: ClassVar[list[str]] = []

    def execute_field(self, parent_type: Any, source: Any, field_details_list: Any, *args: Any) -> Any:
        _FullPath.seen.append(f"{parent_type.name}.{field_details_list[0].node.name.value}")
        return super().execute_field(parent_type, source, field_details_list, *args)


class _Probed(LeanExecutionContext, _FullPath):
    pass


def test_plain_fields_take_the_short_path_under_strawberry() -> None:
    """strawberry hands graphql-core a (possibly empty) middleware manager on every request;
    an empty one must not send every scalar the full way."""
    ROWS[:] = [Row(name="a", nickname=None, count=1, colour=Colour.RED)] * 3
    _FullPath.seen.clear()
    result = strawberry.Schema(query=Query, execution_context_class=_Probed).execute_sync(QUERY)
    assert result.errors is None
    assert _FullPath.seen == ["Row.shout"] * 3  # the list of rows, too, is completed on the short path


@strawberry.type
class Fragile:
    name: str


@strawberry.type
class FragileQuery:
    @strawberry.field
    def fragile(self) -> Fragile | None:
        return object.__new__(Fragile)  # its ``name`` was never set: reading it raises

    @strawberry.field
    def rows(self) -> list[Row | None]:
        return ROWS


def test_an_attribute_that_raises_and_mixed_fields_answer_as_the_full_path() -> None:
    ROWS[:] = [Row(name="a", nickname="b", count=2, colour=Colour.GREEN), None]
    query = "{ fragile { name } rows { count shout name c: colour n: nickname } }"
    lean = strawberry.Schema(query=FragileQuery, execution_context_class=LeanExecutionContext).execute_sync(query)
    full = strawberry.Schema(query=FragileQuery).execute_sync(query)
    assert lean.data == full.data and lean.data is not None
    assert list(lean.data["rows"][0]) == ["count", "shout", "name", "c", "n"]  # the query's order
    assert errors(lean) == errors(full) and errors(lean)[0][1] == ["fragile", "name"]


def test_stream_still_streams_a_list_that_asks_for_it() -> None:
    """Lists without directives skip graphql-core's ``@stream`` look-up; one with ``@stream`` streams."""
    import asyncio

    from strawberry.schema.config import StrawberryConfig

    ROWS[:] = [Row(name=n, nickname=None, count=1, colour=Colour.RED) for n in "abc"]
    schema = strawberry.Schema(query=Query, execution_context_class=LeanExecutionContext,
                               config=StrawberryConfig(enable_experimental_incremental_execution=True))
    streamed = asyncio.run(schema.execute("{ rows @stream(initialCount: 1) { name } }"))
    assert streamed.initial_result.data == {"rows": [{"name": "a"}]}  # type: ignore[union-attr]
    assert schema.execute_sync("{ rows { name } }").data == {"rows": [{"name": n} for n in "abc"]}


# Objects and lists: completed on the short path, with graphql-core's answers when a value is not usual.

@strawberry.type
class Leaf:
    label: str
    tags: list[str]

    @strawberry.field
    def boom(self) -> str | None:
        raise ValueError("boom")


@strawberry.type
class Branch:
    name: str
    leaf: Leaf  # a plain (attribute) object field
    maybe: Leaf | None

    @strawberry.field
    def leaves(self, first: int = 2) -> list[Leaf]:
        return LEAVES[:first]

    @strawberry.field
    def strict(self) -> Leaf:
        return STRICT[0]

    @strawberry.field
    def items(self) -> list[Leaf | None] | None:
        return ITEMS

    @strawberry.field
    async def later(self) -> list[Leaf]:
        return LEAVES[:1]


LEAVES: list[Any] = []
STRICT: list[Any] = []
ITEMS: list[Any] = []


@strawberry.type
class Tree:
    @strawberry.field
    def branches(self) -> list[Branch]:
        return BRANCHES


BRANCHES: list[Any] = []


def tree(query: str, **variables: Any) -> tuple[Any, Any]:
    import asyncio

    lean = asyncio.run(strawberry.Schema(query=Tree, execution_context_class=LeanExecutionContext)
                       .execute(query, variable_values=variables))
    full = asyncio.run(strawberry.Schema(query=Tree).execute(query, variable_values=variables))
    return lean, full


def leaf(label: str, *tags: str) -> Leaf:
    return Leaf(label=label, tags=list(tags))


def grow(n: int = 2) -> None:
    LEAVES[:] = [leaf("a", "x"), leaf("b"), leaf("c", "y", "z")]
    STRICT[:] = [leaf("s")]
    ITEMS[:] = [leaf("i"), None]
    BRANCHES[:] = [Branch(name=f"b{k}", leaf=leaf("l", "t"), maybe=None) for k in range(n)]


def test_objects_and_lists_answer_as_the_full_path() -> None:
    grow()
    query = """query($n: Int!) { branches { name leaf { label tags } maybe { label }
      leaves(first: $n) { label tags } two: leaves { label } strict { label } items { label } later { label } } }"""
    lean, full = tree(query, n=3)
    assert lean.errors is None and lean.data == full.data
    assert lean.data["branches"][1]["leaves"] == [{"label": "a", "tags": ["x"]}, {"label": "b", "tags": []},
                                                  {"label": "c", "tags": ["y", "z"]}]
    assert lean.data["branches"][0]["items"] == [{"label": "i"}, None]
    assert list(lean.data["branches"][0]) == ["name", "leaf", "maybe", "leaves", "two", "strict", "items", "later"]


def test_an_error_inside_a_list_item_is_located_as_graphql_core_locates_it() -> None:
    grow()
    lean, full = tree("{ branches { leaves { label boom } } }")
    assert lean.data == full.data
    assert errors(lean) == errors(full) and errors(lean)[0][1] == ["branches", 0, "leaves", 0, "boom"]


def test_a_null_for_a_non_null_object_or_item_propagates_as_in_graphql_core() -> None:
    grow()
    STRICT[:] = [None]
    lean, full = tree("{ branches { name strict { label } } }")
    assert lean.data is None and full.data is None  # non-null all the way up: no data at all
    assert errors(lean) == errors(full) and errors(lean)[0][1] == ["branches", 0, "strict"]
    grow()
    LEAVES[1] = None
    lean, full = tree("{ branches { leaves(first: 3) { label } items { label tags } } }")
    assert lean.data == full.data and errors(lean) == errors(full)
    assert errors(lean)[0][1] == ["branches", 0, "leaves", 1]
    grow()
    ITEMS[0] = leaf(None, "t")  # type: ignore[arg-type]  # a null in a non-null leaf of a nullable item
    lean, full = tree("{ branches { items { label } } }")
    assert lean.data == full.data and lean.data["branches"][0]["items"] == [None, None]
    assert errors(lean) == errors(full) and errors(lean)[0][1] == ["branches", 0, "items", 0, "label"]


def test_a_list_of_leaves_with_a_value_its_scalar_refuses_is_graphql_cores_error() -> None:
    grow()
    BRANCHES[0].leaf = leaf("l", "ok", {"no": "string"})  # type: ignore[arg-type]
    lean, full = tree("{ branches { leaf { tags } } }")
    assert lean.data == full.data and errors(lean) == errors(full)
    assert errors(lean)[0][1] == ["branches", 0, "leaf", "tags", 1]


def test_an_argument_that_does_not_coerce_is_graphql_cores_error() -> None:
    grow()
    lean, full = tree("query($n: Int!) { branches { leaves(first: $n) { label } } }", n=2)
    assert lean.data == full.data and lean.errors is None
    lean, full = tree('{ branches { leaves(first: "x") { label } } }')
    assert [e.message for e in lean.errors] == [e.message for e in full.errors]


@strawberry.type
class Item:
    name: str
    count: int

    @strawberry.field
    def tags(self, prefix: str) -> list[str]:
        return [prefix + self.name] * self.count


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def items(self) -> AsyncGenerator[Item, None]:  # not called: the test hands the events over
        yield Item(name="", count=0)


def test_a_subscriptions_events_share_its_collected_selection() -> None:
    """Each event answers its own payload; the selection is collected once for the subscription,
    so graphql-core's memo of subfields does not grow by one entry per event."""
    schema = strawberry.Schema(query=Query, subscription=Subscription, execution_context_class=LeanExecutionContext)
    executor = LeanExecutionContext.build(
        schema._schema, parse('subscription($p: String!) { items { name count tags(prefix: $p) } }'),
        raw_variable_values={"p": "#"},
    )
    assert isinstance(executor, LeanExecutionContext)

    async def events() -> AsyncIterator[Item]:
        for i in range(5):
            yield Item(name=f"n{i}", count=i)

    async def run() -> list[Any]:
        return [r async for r in map_source_to_response_event(executor, events())]

    results = asyncio.run(run())
    assert [r.errors for r in results] == [None] * 5
    assert [r.data for r in results] == [
        {"items": {"name": f"n{i}", "count": i, "tags": [f"#n{i}"] * i}} for i in range(5)
    ]
    assert len(executor._relevant_sub_fields) == 1
