"""What every repository shares: the transaction, the key ring, the dialect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from huizhen.integration import tables as t
from huizhen.integration.crypto import KeyRing
from huizhen.integration.model import Coding, HumanName, Identifier
from huizhen.integration.repo import prepared
from huizhen.integration.repo.prepared import ByIds, Prepared, Row


def _next_value(insert: Any) -> Prepared:
    stmt = insert(t.sequences).values(name=bindparam("name"), value=1)
    return Prepared(
        stmt.on_conflict_do_update(index_elements=[t.sequences.c.name], set_={"value": t.sequences.c.value + 1})
        .returning(t.sequences.c.value)
    )


# built once, run on the driver: every audit flush (a work-list page's) takes the next value of the
# audit counter, and building this upsert cost more than running it
_NEXT_VALUE = {"sqlite": _next_value(sqlite.insert), "postgresql": _next_value(postgresql.insert)}


class RepoBase:
    def __init__(self, conn: AsyncConnection, keyring: KeyRing, dialect: str) -> None:
        self.conn = conn
        self.keyring = keyring
        self.dialect = dialect

    async def run(self, statement: Prepared, params: Mapping[str, Any]) -> list[Row]:
        """A hot-path statement, straight on the driver (see :mod:`.prepared`); SELECT rows as dicts."""
        return await prepared.run(self.conn, statement, params)

    async def run_values(self, statement: Prepared, params: Mapping[str, Any]) -> list[list[Any]]:
        """:meth:`run` with each row a list of its values, for rows unpacked by position."""
        return await prepared.run_values(self.conn, statement, params)

    async def run_ids(self, statement: ByIds, ids: Sequence[str], **params: Any) -> list[Row]:
        """A :class:`ByIds` statement for these ids; its rows as dicts."""
        return await self.run(statement.prepared(self.dialect), statement.params(self.dialect, ids, **params))

    async def run_ids_values(self, statement: ByIds, ids: Sequence[str], **params: Any) -> list[list[Any]]:
        """:meth:`run_ids` with each row a list of its values, for rows unpacked by position."""
        return await self.run_values(statement.prepared(self.dialect), statement.params(self.dialect, ids, **params))

    async def run_count(self, statement: Prepared, params: Mapping[str, Any]) -> int:
        """A hot-path INSERT, UPDATE or DELETE; how many rows it changed."""
        return await prepared.run_count(self.conn, statement, params)

    async def run_many(self, statement: Prepared, rows: Sequence[Mapping[str, Any]]) -> None:
        await prepared.run_many(self.conn, statement, rows)

    def sealed_text(self, sealed: bytes | None, plain: str | None) -> str | None:
        """An encrypted text column, or its plaintext twin for a row written before the column was
        encrypted (``huizhen.integration.rekey.PLAINTEXT``)."""
        return self.keyring.decrypt_text(sealed) if sealed is not None else plain

    def upsert_into(self, table: Any) -> Any:
        """A dialect insert that supports ``on_conflict_do_*``."""
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    async def next_sequence(self, name: str) -> int:
        """Atomically increment and return a named counter (row-locked on PostgreSQL)."""
        rows = await self.run(_NEXT_VALUE[self.dialect], {"name": name})
        return int(rows[0]["value"])


def codings_to_json(codings: Sequence[Coding]) -> list[list[str | None]] | None:
    """Codings as ``[code, system, display]`` lists, None for none (a key left out of a document)."""
    return [[c.code, c.system, c.display] for c in codings] or None


def codings_from_json(doc: Sequence[Sequence[Any]] | None) -> tuple[Coding, ...]:
    return tuple(Coding(c[0], c[1], c[2]) for c in doc or ())


def like_escape(value: str) -> str:
    """``value`` taken literally in a LIKE pattern whose escape character is ``\\``."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def now() -> datetime:
    return datetime.now(UTC)


def identifiers_to_json(ids: list[Identifier]) -> list[dict[str, str]]:
    return [{"system": i.system, "value": i.value} for i in ids]


def identifiers_from_json(doc: list[dict[str, str]]) -> list[Identifier]:
    return [Identifier(system=d["system"], value=d["value"]) for d in doc]


def name_to_json(n: HumanName) -> dict[str, Any]:
    return {"family": n.family, "given": list(n.given), "text": n.text}


def name_from_json(doc: dict[str, Any]) -> HumanName:
    return HumanName(family=doc.get("family"), given=tuple(doc.get("given") or ()), text=doc.get("text") or "")
