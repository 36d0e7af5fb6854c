"""The message journal and channel status, for integration admins."""

from __future__ import annotations

import strawberry

from huizhen.graphql.raw import raw_content
from huizhen.graphql.types import Info, JournaledMessage, iso
from huizhen.integration.paging import encode_cursor


@strawberry.type
class EntityReference:
    type: str
    id: strawberry.ID


@strawberry.type
class Message(JournaledMessage):
    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self._m.id)

    @strawberry.field
    def peer(self) -> str | None:
        return self._m.peer

    @strawberry.field
    def processed_at(self, info: Info) -> str | None:
        return iso(self._m.processed_at, info)

    @strawberry.field
    def error(self) -> str | None:
        return self._m.error

    @strawberry.field
    def ack(self) -> str | None:
        return self._m.ack

    @strawberry.field(description="The message as received, decrypted (integration_admin only; every view audited).")
    async def raw(self, info: Info) -> str:
        return await raw_content(info, self._m)

    @strawberry.field(description="Pass as `since` to messageProcessed when reconnecting.")
    def journal_cursor(self) -> str:
        return encode_cursor(self._m.received_at.isoformat(), self._m.id)

    @strawberry.field(description="The entities this message created or changed.")
    def effects(self) -> list[EntityReference]:
        return [EntityReference(type=e.type, id=strawberry.ID(e.id)) for e in self._m.effects]


@strawberry.type
class Channel:
    name: str
    direction: str
    state: str
    received: int
    errors: int
    queued: int
    last_error: str | None
    last_message_at: str | None
