"""Parsed documents served again: only documents that parsed, under the same parse options."""

from __future__ import annotations

import strawberry
from strawberry.extensions import MaxTokensLimiter

from huizhen.graphql.documents import DocumentCache, Documents


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, name: str = "世界") -> str:
        return f"你好, {name}"


def schema(documents: Documents, max_tokens: int = 50) -> strawberry.Schema:
    return strawberry.Schema(query=Query, extensions=[
        lambda: MaxTokensLimiter(max_token_count=max_tokens), lambda: DocumentCache(documents),
    ])


def test_a_document_is_parsed_once_and_answers_the_same() -> None:
    documents = Documents(maxsize=2)
    s = schema(documents)
    first = s.execute_sync('{ hello(name: "吴") }')
    [(key, document)] = list(documents._found.items())
    second = s.execute_sync('{ hello(name: "吴") }')
    assert first.data == second.data == {"hello": "你好, 吴"} and not second.errors
    assert documents._found[key] is document
    for text in ("{ a: hello }", "{ b: hello }", "{ c: hello }"):
        assert s.execute_sync(text).errors is None
    assert len(documents._found) == 2 and key not in documents._found  # least recently used went first


def test_what_does_not_parse_is_refused_every_time_and_never_kept() -> None:
    documents = Documents(maxsize=8)
    s = schema(documents, max_tokens=5)
    for _ in range(2):
        broken = s.execute_sync("{ hello(name: ")
        assert broken.errors and "Syntax Error" in broken.errors[0].message
        too_long = s.execute_sync('{ a: hello b: hello(name: "x") }')
        assert too_long.errors and "token" in too_long.errors[0].message.lower()
    assert not documents._found
