"""The inbound pipeline: journal → decode → map → apply → commit → events → answer.

The engine knows no wire format. Each channel hands it a :class:`Codec` that
decodes bytes into an :class:`Inbound`, maps it to commands, and writes the
protocol's answer (an HL7 ACK, an OperationOutcome…) for an :class:`Outcome`.

Promises (DESIGN.md, "Inbound pipeline"):

* APPLIED — the journal row and every effect are committed in one transaction
  before the answer is returned, so a positive answer means durable. That
  transaction may carry other messages too (the store's group commit: one
  commit for the messages that arrive together), each isolated from the others.
* FAILED — the message is journaled as ERROR with the reason and can be
  reprocessed; nothing of it was applied (the transaction rolled back).
* REJECTED — the input could not be taken at all; it is journaled as ERROR
  for the admins, and the answer says why.
* A sender + control id already answered is journaled DUPLICATE and gets the
  same answer again; nothing is applied twice.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol

from huizhen.integration.apply import Applier
from huizhen.integration.commands import Command
from huizhen.integration.errors import BadInput, Conflict, HuizhenError, NotFound
from huizhen.integration.events import Event, EventBus
from huizhen.integration.model import Actor, Message, MessageStatus
from huizhen.integration.repo import Repository
from huizhen.integration.store import Store
from huizhen.integration.tables import ANSWERED_ONCE_CHANNELS

log = logging.getLogger(__name__)

MESSAGE_TOPIC = "message"
_MAX_FACILITY_IDS = 10_000  # senders are facilities: far fewer in any real deployment


class Outcome(enum.Enum):
    APPLIED = "applied"
    FAILED = "failed"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Inbound:
    """A decoded message: who sent it, its control id and type, and the parsed payload."""

    sender: str
    control_id: str
    type: str
    payload: Any
    charset: str = "utf-8"  # Python codec of the message and of its answer


@dataclass(frozen=True)
class Identity:
    """What can be read of who sent input that did not decode, and what it claims to be; for the journal."""

    sender: str | None = None
    control_id: str | None = None
    type: str | None = None


@dataclass(frozen=True)
class Mapped:
    commands: tuple[Command, ...] = ()
    warnings: tuple[Any, ...] = ()
    filtered: str | None = None  # why no data is applied on purpose; ``commands`` may still link the message


class Codec(Protocol):
    channel: str

    def decode(self, raw: bytes) -> Inbound:
        """Raise a :class:`HuizhenError` for input to reject."""

    def map(self, message: Inbound) -> Mapped:
        """Raise a :class:`HuizhenError` for a message that cannot be applied."""

    def answer(
        self, message: Inbound, outcome: Outcome, error: Exception | None, warnings: tuple[Any, ...]
    ) -> bytes | None:
        """The protocol answer; ``None`` when the sender asked for none."""

    def reject(self, raw: bytes, error: Exception) -> bytes | None:
        """The answer to input that did not decode."""

    def identify(self, raw: bytes) -> Identity:
        """Best effort, never raising: the sender, control id and type of input that did not decode,
        so that an admin sees in the journal who sent a rejected message and which one it was."""


@dataclass
class Result:
    message: Message
    answer: bytes | None
    outcome: Outcome
    events: list[Event] = field(default_factory=list)


@dataclass
class _Step:
    """What one transaction of the pipeline decided; published and answered after its commit."""

    answer: bytes | None
    outcome: Outcome
    events: list[Event] = field(default_factory=list)
    error: Exception | None = None
    facilities: dict[str, str] = field(default_factory=dict)  # ids by code the transaction committed


class InboundEngine:
    def __init__(
        self, store: Store, bus: EventBus, tz: tzinfo, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.store = store
        self.bus = bus
        self.tz = tz
        self.clock = clock or (lambda: datetime.now(UTC))
        # Facility ids by code from committed transactions: a code never changes its
        # facility (the directory saves by code, never deletes), so the lookup is paid once.
        self._facility_ids: dict[str, str] = {}

    async def receive(self, codec: Codec, raw: bytes, *, peer: str | None = None) -> Result:
        """Take one message through the pipeline; never raises for bad input.

        Decoding and mapping are pure and run before the write; the duplicate
        check, the effects and the journal row are one job of the store's
        group commit, so a message costs no transaction of its own.
        """
        msg = Message(channel=codec.channel, raw=raw, received_at=self.clock(), peer=peer)
        try:
            inbound = codec.decode(raw)
        except HuizhenError as exc:
            return await self._rejected(codec, msg, raw, exc)
        msg.sender, msg.control_id, msg.type = inbound.sender, inbound.control_id, inbound.type
        mapped: Mapped | Exception
        try:
            mapped = codec.map(inbound)
        except Exception as exc:  # decided inside the job: a duplicate is answered all the same
            mapped = exc

        runs = 0

        async def job(repo: Repository) -> _Step:
            # The first run of a message to apply does not look for an earlier answer: the journal's
            # unique index on answered (sender, control id) of the engine's channels
            # (tables.ANSWERED_ONCE_CHANNELS) refuses the row of a duplicate, the
            # transaction (or its savepoint) rolls back, and the group commit runs the job once
            # more, alone: that run looks. So the common case costs no query for it.
            nonlocal runs
            runs += 1
            if runs > 1 or not isinstance(mapped, Mapped) or codec.channel not in ANSWERED_ONCE_CHANNELS:
                duplicate = await self._duplicate_in(repo, inbound, msg)
                if duplicate is not None:
                    return duplicate
            if isinstance(mapped, HuizhenError):
                return await self._failed_in(repo, codec, inbound, msg, mapped, new=True)
            if isinstance(mapped, Exception):
                raise mapped
            return await self._apply_in(repo, codec, inbound, msg, mapped, new=True)

        return await self._commit(codec, inbound, msg, job, new=True)

    async def reprocess(self, codec: Codec, message_id: str) -> Result:
        """Run an ERROR message through the current mappings again, in its journal row."""
        async with self.store.read() as repo:
            msg = await repo.journal.get(message_id)
        if msg is None:
            raise NotFound("Message", message_id)
        if msg.status is not MessageStatus.ERROR:
            raise BadInput(f"only ERROR messages can be reprocessed; this one is {msg.status}")
        try:
            inbound = codec.decode(msg.raw)
        except HuizhenError as exc:
            msg.error, msg.processed_at = str(exc), self.clock()
            await self._journal(msg, new=False)
            return Result(msg, None, Outcome.REJECTED)
        try:
            mapped = codec.map(inbound)
        except HuizhenError as exc:
            return await self._commit(codec, inbound, msg, self._failure(codec, inbound, msg, exc, new=False),
                                      new=False)

        async def job(repo: Repository) -> _Step:
            earlier = await repo.journal.processed(inbound.sender, inbound.control_id)
            if earlier is not None:  # sent again and applied since: applying this one too would be twice
                raise Conflict(f"message {earlier.id} with the same sender and control id was applied since")
            return await self._apply_in(repo, codec, inbound, msg, mapped, new=False)

        return await self._commit(codec, inbound, msg, job, new=False)

    async def _commit(
        self, codec: Codec, inbound: Inbound, msg: Message, job: Callable[[Repository], Awaitable[_Step]], *,
        new: bool,
    ) -> Result:
        # Two transactions answering the same sender + control id at once: the journal's unique
        # index lets one commit; the other's row conflicts, and its job runs again (a duplicate).
        try:
            step = await self.store.batched(job)
        except HuizhenError as exc:  # the effects were rolled back; the message is journaled as failed
            step = await self.store.batched(self._failure(codec, inbound, msg, exc, new=new))
        if len(self._facility_ids) < _MAX_FACILITY_IDS:
            self._facility_ids.update(step.facilities)
        if msg.status is MessageStatus.DUPLICATE:
            log.info("duplicate message answered again", extra=_log_fields(msg))
        elif step.error is not None:
            log.warning("message not applied: %s", type(step.error).__name__, extra=_log_fields(msg))
        return await self._done(msg, step.answer, step.outcome, step.events)

    def _failure(
        self, codec: Codec, inbound: Inbound, msg: Message, exc: Exception, *, new: bool
    ) -> Callable[[Repository], Awaitable[_Step]]:
        """The job that journals ``msg`` as failed with ``exc``."""

        async def job(repo: Repository) -> _Step:
            # a message answered before is a duplicate, even where applying it again fails
            duplicate = await self._duplicate_in(repo, inbound, msg) if new else None
            return duplicate or await self._failed_in(repo, codec, inbound, msg, exc, new=new)

        return job

    async def _duplicate_in(self, repo: Repository, inbound: Inbound, msg: Message) -> _Step | None:
        """Journal ``msg`` as a DUPLICATE with the earlier answer, if its sender + control id had one."""
        earlier = await repo.journal.processed(inbound.sender, inbound.control_id)
        if earlier is None:
            return None
        msg.status, msg.ack, msg.processed_at = MessageStatus.DUPLICATE, earlier.ack, self.clock()
        msg.error, msg.effects = f"duplicate of message {earlier.id}", []
        await repo.journal.add(msg)
        again = earlier.ack.encode(inbound.charset) if earlier.ack else None
        return _Step(again, Outcome.APPLIED)

    async def _apply_in(
        self, repo: Repository, codec: Codec, inbound: Inbound, msg: Message, mapped: Mapped, *, new: bool
    ) -> _Step:
        at = self.clock()
        applier = Applier(repo, actor=Actor.system(f"{codec.channel}:{inbound.sender}"), at=at, tz=self.tz,
                          committed_facilities=self._facility_ids)
        # a filtered message carries no data; its commands only link it (an inbound ACK to the outbound message)
        await applier.apply_all(mapped.commands)
        msg.status = MessageStatus.PROCESSED if mapped.filtered is None else MessageStatus.FILTERED
        msg.error = mapped.filtered
        msg.effects, msg.processed_at = applier.effects, at
        answer = codec.answer(inbound, Outcome.APPLIED, None, mapped.warnings)
        msg.ack = _text(answer, inbound.charset)
        await (repo.journal.add(msg) if new else repo.journal.update(msg))
        return _Step(answer, Outcome.APPLIED, applier.events, facilities=applier.facilities)

    async def _failed_in(
        self, repo: Repository, codec: Codec, inbound: Inbound, msg: Message, exc: Exception, *, new: bool
    ) -> _Step:
        msg.status, msg.error, msg.processed_at, msg.effects = MessageStatus.ERROR, str(exc), self.clock(), []
        answer = codec.answer(inbound, Outcome.FAILED, exc, ())
        msg.ack = _text(answer, inbound.charset)
        await (repo.journal.add(msg) if new else repo.journal.update(msg))
        return _Step(answer, Outcome.FAILED, error=exc)

    async def _rejected(self, codec: Codec, msg: Message, raw: bytes, exc: Exception) -> Result:
        msg.status, msg.error, msg.processed_at = MessageStatus.ERROR, f"rejected: {exc}", self.clock()
        who = codec.identify(raw)
        msg.sender, msg.control_id, msg.type = who.sender, who.control_id, who.type
        answer = codec.reject(raw, exc)
        msg.ack = _text(answer, "utf-8")
        await self._journal(msg)
        log.warning("message rejected: %s", type(exc).__name__, extra=_log_fields(msg))
        return await self._done(msg, answer, Outcome.REJECTED, [])

    async def _journal(self, msg: Message, *, new: bool = True) -> None:
        async def job(repo: Repository) -> None:
            await (repo.journal.add(msg) if new else repo.journal.update(msg))

        await self.store.batched(job)

    async def _done(self, msg: Message, answer: bytes | None, outcome: Outcome, events: list[Event]) -> Result:
        for event in events:
            await self.bus.publish(event)
        await self.bus.publish(
            Event(
                topic=MESSAGE_TOPIC,
                type=msg.status.value,
                data={"id": msg.id, "channel": msg.channel, "status": msg.status.value, "type": msg.type,
                      "sender": msg.sender, "control_id": msg.control_id},
            )
        )
        return Result(msg, answer, outcome, events)


def _text(answer: bytes | None, charset: str) -> str | None:
    """The answer as it is journaled: text in the charset it was written in."""
    if answer is None:
        return None
    try:
        return answer.decode(charset)
    except UnicodeDecodeError:
        return answer.decode("latin-1")  # a reject answer to undecodable input


def _log_fields(msg: Message) -> dict[str, Any]:
    return {"channel": msg.channel, "message_id": msg.id, "control_id": msg.control_id, "sender": msg.sender,
            "type": msg.type, "status": msg.status.value}
