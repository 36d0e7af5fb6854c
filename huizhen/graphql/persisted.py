"""Persisted queries: an allow-list of operation hashes, and APQ-style lookup by hash.

A client sends ``extensions.persistedQuery.sha256Hash`` (the hex SHA-256 of
the document) with or without ``query``:

* hash only: the document is taken from the allow-list file or from what
  this instance has seen; unknown → ``PERSISTED_QUERY_NOT_FOUND`` (the client
  sends the document once more with the hash, as Apollo clients do);
* hash and document: the hash must match the document (``BAD_INPUT``).

With ``persisted_queries_only`` (production), a document whose hash is not in
the allow-list is refused with ``PERSISTED_QUERY_NOT_ALLOWED`` before it is
parsed. The allow-list file is either JSON, ``{"<sha256>": "<document>", …}``
(an operation manifest), or text with one hash per line (``#`` comments).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from graphql.error import GraphQLError
from strawberry.extensions import SchemaExtension

from huizhen.integration.errors import BadInput, ConfigurationError, HuizhenError

_SEEN = 1000


class PersistedQueryNotFound(HuizhenError):
    code = "PERSISTED_QUERY_NOT_FOUND"


class PersistedQueryNotAllowed(HuizhenError):
    code = "PERSISTED_QUERY_NOT_ALLOWED"


def document_hash(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


class PersistedQueries:
    def __init__(self, allowed: dict[str, str | None], *, enforce: bool) -> None:
        self.allowed = allowed  # hash -> document (None when the file lists hashes only)
        self.enforce = enforce
        self._seen: OrderedDict[str, str] = OrderedDict()

    @classmethod
    def from_file(cls, path: Path | None, *, enforce: bool) -> PersistedQueries:
        if path is None:
            if enforce:
                raise ConfigurationError("persisted_queries_only needs persisted_queries_file")
            return cls({}, enforce=False)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"persisted_queries_file {path}: {exc.strerror}") from exc
        allowed: dict[str, str | None] = {}
        if path.suffix == ".json":
            try:
                manifest = json.loads(text)
            except ValueError as exc:
                raise ConfigurationError(f"persisted_queries_file {path} is not valid JSON: {exc}") from exc
            if not isinstance(manifest, dict) or not all(isinstance(v, str) for v in manifest.values()):
                raise ConfigurationError(f"persisted_queries_file {path} must map sha256 hashes to documents")
            for h, doc in manifest.items():
                if document_hash(doc) != h.lower():
                    raise ConfigurationError(f"persisted_queries_file {path}: hash {h} does not match its document")
                allowed[h.lower()] = doc
        else:
            for line in text.splitlines():
                h = line.split("#", 1)[0].strip().lower()
                if h:
                    allowed[h] = None
        return cls(allowed, enforce=enforce)

    def resolve(self, query: str | None, extensions: dict[str, object] | None) -> str | None:
        """The document to run, or an error the client can act on."""
        wanted = _wanted_hash(extensions)
        if query is None and wanted is not None:
            found = self.allowed.get(wanted) or self._seen.get(wanted)
            if found is None:
                raise PersistedQueryNotFound("PersistedQueryNotFound")
            query = found
        if query is None:
            return None
        actual = document_hash(query)
        if wanted is not None and wanted != actual:
            raise BadInput("persistedQuery.sha256Hash does not match the query")
        if self.enforce and actual not in self.allowed:
            raise PersistedQueryNotAllowed(f"operation {actual} is not on the allow-list")
        if wanted is not None:
            self._seen[actual] = query
            while len(self._seen) > _SEEN:
                self._seen.popitem(last=False)
        return query


def _wanted_hash(extensions: dict[str, object] | None) -> str | None:
    pq = (extensions or {}).get("persistedQuery")
    if pq is None:
        return None
    h = pq.get("sha256Hash") if isinstance(pq, dict) else None
    if not isinstance(h, str) or len(h) != 64:
        raise BadInput("extensions.persistedQuery.sha256Hash must be a hex SHA-256")
    return h.lower()


class PersistedQueryCheck(SchemaExtension):
    """Runs before parsing: swaps a hash for its document, refuses what the allow-list lacks."""

    def __init__(self, registry: PersistedQueries) -> None:
        self.registry = registry

    def on_operation(self) -> Iterator[None]:
        ctx = self.execution_context
        try:
            ctx.query = self.registry.resolve(ctx.query, ctx.operation_extensions)
        except HuizhenError as exc:
            # raised before the operation runs, so ErrorCodes never sees it: coded here
            raise GraphQLError(str(exc), extensions={"code": exc.code}) from exc
        yield
