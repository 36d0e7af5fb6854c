"""Re-encrypt every encrypted column under the active data key, in small batches, while serving.

Every ``*_enc`` column of the canonical tables is covered (found from the
table metadata, so a new encrypted column is never forgotten). Each batch is
one short write transaction: rows are walked in primary-key order, values
under an older key id are decrypted and encrypted again, and each update is
conditional on the old ciphertext (``… WHERE pk = :pk AND col = :old``), so a
value a running server rewrote in the meantime is left alone and looked at
again on the next pass. ``reencrypt_all`` repeats passes until one changes
nothing. Blind indexes are not touched: the index key does not rotate (see
``crypto.py``).

Columns that were plaintext before their encrypted twin existed (``PLAINTEXT``:
the journal's error and ACK before migration 0009, the outbox's before 0010, a study's StudyID
before 0014) are sealed on the way:
each value moves into its ``*_enc`` column under the active key and the
plaintext column is cleared, in the same conditional way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Table, and_, func, select, tuple_

from huizhen.integration import tables as t
from huizhen.integration.store import Store

BATCH = 200
# (table, plaintext column, its encrypted twin): rows written before the twin existed
PLAINTEXT: tuple[tuple[Table, str, str], ...] = (
    (t.messages, "error", "error_enc"), (t.messages, "ack", "ack_enc"),
    (t.outbox, "last_error", "last_error_enc"), (t.outbox, "ack", "ack_enc"),
    (t.imaging_studies, "study_id", "study_id_enc"),
)


@dataclass
class RekeyReport:
    active: str
    reencrypted: dict[str, int] = field(default_factory=dict)  # "table.column" -> values
    sealed: dict[str, int] = field(default_factory=dict)  # plaintext "table.column" -> values moved
    passes: int = 0

    @property
    def total(self) -> int:
        return sum(self.reencrypted.values())


def encrypted_columns() -> list[tuple[Table, list[Column[Any]]]]:
    out = []
    for table in t.metadata.sorted_tables:
        cols = [c for c in table.columns if c.name.endswith("_enc")]
        if cols:
            out.append((table, cols))
    return out


def _after(pk: list[Column[Any]], last: tuple[Any, ...]) -> Any:
    """Rows past ``last`` in primary-key order: where a batched walk goes on."""
    return tuple_(*pk) > tuple_(*last) if len(pk) > 1 else pk[0] > last[0]


async def reencrypt_pass(
    store: Store, report: RekeyReport, *, batch: int = BATCH, progress: Callable[[int], None] | None = None
) -> int:
    """One walk over every encrypted column; how many values it re-encrypted."""
    ring, changed = store.keyring, 0
    for table, cols in encrypted_columns():
        pk = list(table.primary_key.columns)
        last: tuple[Any, ...] | None = None
        while True:
            query = select(*pk, *cols).order_by(*pk).limit(batch)
            if last is not None:
                query = query.where(_after(pk, last))
            async with store.write() as repo:
                rows = (await repo.conn.execute(query)).all()
                for row in rows:
                    for i, col in enumerate(cols):
                        old = row[len(pk) + i]
                        if old is None or ring.key_id_of(old) == ring.active:
                            continue
                        new = ring.encrypt(ring.decrypt(old))
                        where = and_(*(c == row[j] for j, c in enumerate(pk)), col == old)
                        done = await repo.conn.execute(table.update().where(where).values({col.name: new}))
                        if done.rowcount:
                            name = f"{table.name}.{col.name}"
                            report.reencrypted[name] = report.reencrypted.get(name, 0) + 1
                            changed += 1
            if progress is not None:
                progress(len(rows))
            if len(rows) < batch:
                break
            last = tuple(rows[-1][: len(pk)])
    report.passes += 1
    return changed


async def seal_plaintext(store: Store, report: RekeyReport, *, batch: int = BATCH) -> int:
    """Move every value of a ``PLAINTEXT`` column into its encrypted twin; how many were moved."""
    ring, moved = store.keyring, 0
    for table, plain_name, sealed_name in PLAINTEXT:
        plain = table.c[plain_name]
        pk = list(table.primary_key.columns)
        name = f"{table.name}.{plain_name}"
        last: tuple[Any, ...] | None = None
        while True:  # in primary-key order from where the last batch ended: a value changed meanwhile is not met again
            query = select(*pk, plain).where(plain.is_not(None)).order_by(*pk).limit(batch)
            if last is not None:
                query = query.where(_after(pk, last))
            async with store.write() as repo:
                rows = (await repo.conn.execute(query)).all()
                for row in rows:
                    where = and_(*(c == row[j] for j, c in enumerate(pk)), plain == row[len(pk)])
                    done = await repo.conn.execute(table.update().where(where).values(
                        {sealed_name: ring.encrypt_text(row[len(pk)]), plain_name: None}
                    ))
                    if done.rowcount:
                        report.sealed[name] = report.sealed.get(name, 0) + 1
                        moved += 1
            if len(rows) < batch:
                break
            last = tuple(rows[-1][: len(pk)])
    return moved


async def plaintext_left(store: Store) -> dict[str, int]:
    """Values still in a ``PLAINTEXT`` column, by ``table.column``."""
    async with store.read() as repo:
        return {
            f"{table.name}.{plain}": int((await repo.conn.execute(
                select(func.count()).where(table.c[plain].is_not(None))
            )).scalar_one())
            for table, plain, _ in PLAINTEXT
        }


async def reencrypt_all(store: Store, *, batch: int = BATCH, max_passes: int = 10) -> RekeyReport:
    """Seal what is still plaintext, then passes until none changes anything (values written
    meanwhile by servers still on the old key)."""
    report = RekeyReport(active=store.keyring.active)
    await seal_plaintext(store, report, batch=batch)
    for _ in range(max_passes):
        if not await reencrypt_pass(store, report, batch=batch):
            break
    return report


async def values_by_key_id(store: Store) -> dict[str, int]:
    """How many encrypted values each key id protects (a rotation is done when only the active one is left)."""
    counts: dict[str, int] = {}
    async with store.read() as repo:
        for _table, cols in encrypted_columns():
            for col in cols:
                result = await repo.conn.stream(select(col).where(col.is_not(None)))
                async for (blob,) in result:
                    kid = store.keyring.key_id_of(blob)
                    counts[kid] = counts.get(kid, 0) + 1
    return counts


__all__ = [
    "PLAINTEXT", "RekeyReport", "encrypted_columns", "plaintext_left", "reencrypt_all", "reencrypt_pass",
    "seal_plaintext", "values_by_key_id",
]
