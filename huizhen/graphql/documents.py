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

from graphql import DocumentNode, GraphQLError, OperationDefinitionNode
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


class OperationChoice(SchemaExtension):
    """A document with several operations and no ``operationName`` is a request error.

    The GraphQL specification (GetOperation) refuses it: the server cannot know which one the
    client meant. strawberry's execution context falls back to the first operation's name when
    none is given, so graphql-core's own check never sees the missing name and the first
    operation ran. Runs after the validation cache (which sets the list of validation errors).
    """

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        # strawberry keeps the name the client sent here (``operation_name`` falls back to the first)
        if getattr(context, "_provided_operation_name", None) is None and document is not None:
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            if len(operations) > 1:
                error = GraphQLError(
                    "Must provide operationName: the document holds several operations", nodes=operations
                )
                context.pre_execution_errors = [*(context.pre_execution_errors or []), error]
        yield
