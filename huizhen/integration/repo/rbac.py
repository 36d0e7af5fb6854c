"""The stored Casbin rules (``rbac_rules``): plain rows; the vocabulary lives in :mod:`huizhen.rbac.policy`."""

from __future__ import annotations

from sqlalchemy import and_, delete, select

from huizhen.integration import tables as t
from huizhen.integration.repo.base import RepoBase

RuleRow = tuple[str, str, str, str, str]  # ptype, v0, v1, v2, v3


class RbacRules(RepoBase):
    async def all(self) -> list[RuleRow]:
        r = t.rbac_rules.c
        rows = await self.conn.execute(select(r.ptype, r.v0, r.v1, r.v2, r.v3).order_by(r.id))
        return [(row[0], row[1], row[2], row[3], row[4]) for row in rows]

    async def add(self, rule: RuleRow) -> bool:
        """Insert one rule; False when it is already there."""
        stmt = (
            self.upsert_into(t.rbac_rules)
            .values(dict(zip(("ptype", "v0", "v1", "v2", "v3"), rule, strict=True)))
            .on_conflict_do_nothing()
        )
        return bool((await self.conn.execute(stmt)).rowcount)

    async def remove(self, rule: RuleRow) -> bool:
        r = t.rbac_rules.c
        stmt = delete(t.rbac_rules).where(
            and_(r.ptype == rule[0], r.v0 == rule[1], r.v1 == rule[2], r.v2 == rule[3], r.v3 == rule[4])
        )
        return bool((await self.conn.execute(stmt)).rowcount)

    async def replace_all(self, rules: list[RuleRow]) -> None:
        await self.conn.execute(delete(t.rbac_rules))
        if rules:
            await self.conn.execute(
                t.rbac_rules.insert(), [dict(zip(("ptype", "v0", "v1", "v2", "v3"), x, strict=True)) for x in rules]
            )
