"""Parsed documents kept across requests: a front end sends the same few again and again.

Unlike strawberry's ``ParserCache`` this never parses in the hook: a document
is taken from the cache when a request sends a text parsed before, and
stored after strawberry's own parse step succeeded. A text that does not parse
goes through that step every time, so its syntax error reaches the hooks that
give every error a code, as without the cache. graphql-core's validation and
execution only read a document, so one parse serves every request.
Parsing the work-list's document cost about half a millisecond a request.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from graphql import DocumentNode
from strawberry.extensions import SchemaExtension


class Documents:
    """Least-recently-used parsed documents by (query text, parse options)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._found: OrderedDict[tuple[str, Any], DocumentNode] = OrderedDict()

    def get(self, key: tuple[str, Any]) -> DocumentNode | None:
        document = self._found.get(key)
        if document is not None:
            self._found.move_to_end(key)
        return document

    def put(self, key: tuple[str, Any], document: DocumentNode) -> None:
        self._found[key] = document
        self._found.move_to_end(key)
        while len(self._found) > self.maxsize:
            self._found.popitem(last=False)


class DocumentCache(SchemaExtension):
    def __init__(self, documents: Documents) -> None:
        self.documents = documents

    def on_parse(self) -> Iterator[None]:
        ctx = self.execution_context
        key = (ctx.query, repr(ctx.parse_options)) if ctx.query else None
        if key is not None and ctx.graphql_document is None:
            ctx.graphql_document = self.documents.get(key)
        yield
        if key is not None and ctx.graphql_document is not None:
            self.documents.put(key, ctx.graphql_document)
