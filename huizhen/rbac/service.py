"""The policy as live data: stored in ``rbac_rules``, seeded once, changed through one service, seen everywhere.

Each change is written with its audit event in one transaction, then a
``policy`` event goes out on the bus (Redis in scale-out); every instance's
watcher reloads the rules from the database when it hears one, so a change
takes effect everywhere within the bus latency. The seed (``policy.csv``)
is loaded on the first start only: a counter row makes it happen once even
when several instances start together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from huizhen.integration.errors import Conflict
from huizhen.integration.events import Event, EventBus
from huizhen.integration.model import Actor, AuditEvent
from huizhen.integration.repo import Repository
from huizhen.integration.store import Store
from huizhen.rbac.enforcer import Authorizer
from huizhen.rbac.policy import PLATFORM, Rule, etag, parse_csv, role_of

log = logging.getLogger(__name__)

TOPIC: Final = "policy"
_SEEDED: Final = "rbac-seed"
_VERSION: Final = "rbac-version"


class PolicyService:
    def __init__(self, store: Store, bus: EventBus, authorizer: Authorizer, seed: Path | None) -> None:
        self.store, self.bus, self.authorizer, self.seed = store, bus, authorizer, seed
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        subscription = self.bus.subscribe(TOPIC)  # before loading: a change made meanwhile is not missed
        await self.seed_once()
        await self.reload()

        async def watch() -> None:
            async with subscription:
                async for _ in subscription:
                    try:
                        await self.reload()
                    except Exception:  # a failed reload keeps the previous policy; the next event retries
                        log.exception("could not reload the RBAC policy")

        self._watcher = asyncio.create_task(watch(), name="rbac-policy-watcher")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def seed_once(self) -> None:
        if self.seed is None or not self.seed.exists():
            return
        rules = parse_csv(self.seed.read_text(encoding="utf-8"))
        async with self.store.write() as repo:
            if await repo.rbac.next_sequence(_SEEDED) == 1 and not await repo.rbac.all():
                await repo.rbac.replace_all([_row(r) for r in rules])
                log.info("RBAC policy seeded from %s (%d rules)", self.seed, len(rules))

    async def reload(self) -> None:
        async with self.store.read() as repo:
            rows = await repo.rbac.all()
        self.authorizer.load(Rule(*row) for row in rows)

    async def rules(self) -> list[Rule]:
        async with self.store.read() as repo:
            return [Rule(*row) for row in await repo.rbac.all()]

    async def add(self, rule: Rule, actor: Actor, *, reason: str | None = None,
                  expected_etag: str | None = None) -> bool:
        return await self._change(
            actor, "policy-add", rule, lambda repo: repo.rbac.add(_row(rule)),
            reason=reason, expected=(role_of(rule), expected_etag),
        )

    async def remove(self, rule: Rule, actor: Actor, *, reason: str | None = None,
                     expected_etag: str | None = None) -> bool:
        return await self._change(
            actor, "policy-remove", rule, lambda repo: repo.rbac.remove(_row(rule)),
            reason=reason, expected=(role_of(rule), expected_etag),
        )

    async def replace(self, rules: list[Rule], actor: Actor, *, reason: str | None = None,
                      expected_etag: str | None = None) -> None:
        async def apply(repo: Repository) -> bool:
            await repo.rbac.replace_all([_row(r) for r in sorted(set(rules))])
            return True

        await self._change(actor, "policy-import", None, apply, detail=f"{len(rules)} rules", reason=reason,
                           expected=(None, expected_etag))

    async def _change(self, actor: Actor, action: str, rule: Rule | None, apply: object,
                      detail: str | None = None, reason: str | None = None,
                      expected: tuple[str | None, str | None] = (None, None)) -> bool:
        detail = detail or (rule.line() if rule else None)
        if reason is not None and reason.strip():
            detail = f"{detail}; reason: {reason.strip()}"
        async with self.store.write() as repo:
            await repo.rbac.next_sequence(_VERSION)  # its row lock serialises policy changes across instances
            role, tag = expected
            if tag is not None:
                found = etag([Rule(*row) for row in await repo.rbac.all()], role)
                if found != tag:
                    what = f"role {role}" if role else "the policy"
                    raise Conflict(f"{what} was changed by someone else meanwhile (version {found}, "
                                   f"this change was based on {tag}): reload and try again")
            changed = bool(await apply(repo))  # type: ignore[operator]
            await repo.audit.append(AuditEvent(
                at=datetime.now(UTC), actor=actor.id, roles=list(actor.roles), action=action,
                outcome="success" if changed else "unchanged", entity_type="Policy",
                entity_id=None, detail=detail, source=actor.source, domain=actor.facility or PLATFORM,
            ))
        await self.reload()
        await self.bus.publish(Event(TOPIC, "changed", {"action": action}))
        return changed


def _row(rule: Rule) -> tuple[str, str, str, str, str]:
    return (rule.ptype, rule.v0, rule.v1, rule.v2, rule.v3)
