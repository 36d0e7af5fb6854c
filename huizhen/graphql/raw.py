"""A journaled message's raw content: decrypted for integration admins only, every view audited."""

from __future__ import annotations

from datetime import UTC, datetime

from huizhen.graphql.types import Info
from huizhen.integration import model as m
from huizhen.integration.errors import Forbidden

ADMIN = "integration_admin"


def decode_raw(raw: bytes) -> str:
    """The message text: UTF-8, else GB 18030 (the Chinese HIS default), else Latin-1 (never fails)."""
    for charset in ("utf-8", "gb18030"):
        try:
            return raw.decode(charset)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


async def raw_content(info: Info, message: m.Message) -> str:
    """Decrypted content for an integration admin; every attempt is written to the audit trail."""
    ctx = info.context
    allowed = ADMIN in ctx.principal.roles
    event = m.AuditEvent(
        at=datetime.now(UTC), actor=ctx.principal.sub, roles=list(ctx.principal.roles), action="read-raw",
        entity_type="Message", entity_id=message.id, outcome="success" if allowed else "denied",
        detail=f"raw content of a {message.channel} message", source=ctx.source,
    )
    async with ctx.services.store.write() as repo:
        await repo.audit.append(event)
    if not allowed:
        raise Forbidden(f"needs the role {ADMIN}")
    return decode_raw(message.raw)
