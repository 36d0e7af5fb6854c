"""The persisted-query registry: allow-list files, hash lookup, enforcement."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from huizhen.graphql.persisted import PersistedQueries, PersistedQueryNotAllowed, PersistedQueryNotFound
from huizhen.integration.errors import BadInput, ConfigurationError

DOC = "query Me { me { id } }"
H = hashlib.sha256(DOC.encode()).hexdigest()


def ext(h: str) -> dict[str, object]:
    return {"persistedQuery": {"version": 1, "sha256Hash": h}}


def test_manifest_serves_documents_by_hash(tmp_path: Path) -> None:
    f = tmp_path / "ops.json"
    f.write_text(json.dumps({H: DOC}))
    reg = PersistedQueries.from_file(f, enforce=True)
    assert reg.resolve(None, ext(H)) == DOC
    assert reg.resolve(DOC, None) == DOC
    with pytest.raises(PersistedQueryNotAllowed):
        reg.resolve("{ me { roles } }", None)
    with pytest.raises(PersistedQueryNotFound):
        reg.resolve(None, ext("a" * 64))


def test_hash_list_allows_documents_sent_in_full(tmp_path: Path) -> None:
    f = tmp_path / "ops.txt"
    f.write_text(f"# allowed operations\n{H.upper()}  # Me\n\n")
    reg = PersistedQueries.from_file(f, enforce=True)
    assert reg.resolve(DOC, None) == DOC
    with pytest.raises(PersistedQueryNotFound):  # hashes only: the document is not known yet
        PersistedQueries.from_file(f, enforce=True).resolve(None, ext(H))
    reg.resolve(DOC, ext(H))
    assert reg.resolve(None, ext(H)) == DOC  # registered APQ-style


def test_bad_input_and_bad_files(tmp_path: Path) -> None:
    reg = PersistedQueries({}, enforce=False)
    with pytest.raises(BadInput):
        reg.resolve(DOC, ext("b" * 64))
    with pytest.raises(BadInput):
        reg.resolve(DOC, {"persistedQuery": {"sha256Hash": 42}})
    with pytest.raises(ConfigurationError):
        PersistedQueries.from_file(None, enforce=True)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"c" * 64: DOC}))
    with pytest.raises(ConfigurationError, match="does not match"):
        PersistedQueries.from_file(bad, enforce=False)
    with pytest.raises(ConfigurationError):
        PersistedQueries.from_file(tmp_path / "missing.txt", enforce=False)
