"""A FHIR write as the journal keeps it, so it can be decoded again like an HL7 frame.

:class:`FhirRequest` is the request line, the headers that change its meaning
(``If-None-Exist``), who sent it, and the body, as one byte string
(:meth:`FhirRequest.encode`). The control id is a digest of those bytes: the
same request resent by the same sender is a duplicate, answered again and not
applied twice.

A PUT over the API carries the time it was received among those bytes, so it is
never taken for an earlier one: a PUT is idempotent (sent again, it leaves the
same state), while answering it from the journal would drop a resource set back
to content it had before (male, female, then male again: stored female).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import parse_qsl

from huizhen.integration.model import Identifier
from huizhen.mappings.fhir.outcome import InvalidResource, IssueType, error


@dataclass(frozen=True, slots=True)
class FhirRequest:
    """A write as it is journaled: ``POST Patient``, ``PUT Patient/1``, ``PUT Patient?identifier=…``, ``POST``."""

    method: str
    path: str  # after the FHIR base, no leading slash; "" for a Bundle
    body: bytes
    sender: str
    facility: str | None = None
    if_none_exist: str | None = None
    received: str | None = None  # when a PUT came in (see the module's docstring); None: deduplicated by content

    def encode(self) -> bytes:
        head = [f"{self.method} {self.path}".rstrip(), f"Sender: {self.sender}"]
        head += [f"Facility: {self.facility}"] if self.facility else []
        head += [f"If-None-Exist: {self.if_none_exist}"] if self.if_none_exist else []
        head += [f"Received: {self.received}"] if self.received else []
        return "\r\n".join(head).encode() + b"\r\n\r\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> FhirRequest:
        head, sep, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        method, _, path = lines[0].partition(" ")
        fields = dict(line.partition(": ")[::2] for line in lines[1:])
        if not sep or method not in ("POST", "PUT") or "Sender" not in fields:
            raise InvalidResource([error(IssueType.STRUCTURE, "not a journaled FHIR request")])
        return cls(method, path, body, fields["Sender"], fields.get("Facility"), fields.get("If-None-Exist"),
                   fields.get("Received"))

    @property
    def resource_type(self) -> str | None:
        return self.path.split("?")[0].split("/")[0] or None

    @property
    def id(self) -> str | None:
        parts = self.path.split("?")[0].split("/")
        return parts[1] if len(parts) > 1 and parts[1] else None

    @property
    def condition(self) -> Identifier | None:
        """The identifier of a conditional create or update."""
        query = self.if_none_exist or self.path.partition("?")[2]
        return condition_of(query)


def condition_of(query: str) -> Identifier | None:
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(name != "identifier" for name, _ in pairs):
        raise InvalidResource([error(IssueType.NOT_SUPPORTED, "only identifier= is supported in a condition")])
    for _, value in pairs:
        system, _, code = value.rpartition("|")
        return Identifier(system, code)
    return None


def control_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()
