"""The ``/signaling`` protocol's words, typed: client messages, error codes, close codes.

Every text frame is parsed once, here, into one of the declared models; the
session never looks into a raw dict. See DESIGN.md, "Signaling protocol".
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from huizhen.integration.errors import HuizhenError

_ID = Field(min_length=1, max_length=64)


class Code(enum.StrEnum):
    """``error.code`` values."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    ROOM_CLOSED = "ROOM_CLOSED"  # the consultation is not (or no longer) ASSIGNED or IN_PROGRESS
    BAD_JSON = "BAD_JSON"
    BAD_INPUT = "BAD_INPUT"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    NOT_IN_ROOM = "NOT_IN_ROOM"
    ALREADY_JOINED = "ALREADY_JOINED"
    UNKNOWN_PEER = "UNKNOWN_PEER"  # ``to`` names no peer of the sender's room
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    RATE_LIMITED = "RATE_LIMITED"
    NETCHECK_BUSY = "NETCHECK_BUSY"
    NETCHECK_UNAVAILABLE = "NETCHECK_UNAVAILABLE"
    NETCHECK_TIMEOUT = "NETCHECK_TIMEOUT"
    INTERNAL = "INTERNAL"


class Close(enum.IntEnum):
    """WebSocket close codes the server uses."""

    NORMAL = 1000
    POLICY = 1008  # rate abuse
    TOO_BIG = 1009
    UNAUTHORIZED = 4401
    ROOM_CLOSED = 4410
    SLOW_CONSUMER = 4429


class SignalingError(HuizhenError):
    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[assignment]  # per instance: the protocol's error code

    def as_message(self) -> dict[str, str]:
        return {"type": "error", "code": self.code, "message": str(self)}


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Auth(_Msg):
    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=8192)


class Join(_Msg):
    type: Literal["join"]
    room: str = _ID


class Sdp(_Msg):
    type: Literal["offer", "answer"]
    to: str = _ID
    sdp: str = Field(min_length=1)


class Candidate(_Msg):
    type: Literal["candidate"]
    to: str = _ID
    candidate: dict[str, Any] | None  # null: end of candidates


class Leave(_Msg):
    type: Literal["leave"]


class Stats(_Msg):
    type: Literal["stats"]
    bitrateKbps: float = Field(ge=0, le=1_000_000)  # the wire names
    lossPct: float = Field(ge=0, le=100)
    rttMs: float = Field(ge=0, le=600_000)


class NetCheck(_Msg):
    """Start a pre-call network check, optionally for a consultation (recorded on its timeline)."""

    type: Literal["netcheck"]
    room: str | None = Field(default=None, min_length=1, max_length=64)


ClientMessage = Annotated[Auth | Join | Sdp | Candidate | Leave | Stats | NetCheck, Field(discriminator="type")]
_ADAPTER: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
TYPES = frozenset({"auth", "join", "offer", "answer", "candidate", "leave", "stats", "netcheck"})
Relayed = Sdp | Candidate


def parse(text: str) -> ClientMessage:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise SignalingError(Code.BAD_JSON, f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        raise SignalingError(Code.BAD_INPUT, "a message is a JSON object with a string 'type'")
    if doc["type"] not in TYPES:
        raise SignalingError(Code.UNKNOWN_TYPE, f"unknown message type {doc['type'][:40]!r}")
    try:
        return _ADAPTER.validate_python(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"][1:]) or doc["type"]
        raise SignalingError(Code.BAD_INPUT, f"{where}: {err['msg']}") from exc


def error(code: Code, message: str) -> dict[str, str]:
    return {"type": "error", "code": code, "message": message}
