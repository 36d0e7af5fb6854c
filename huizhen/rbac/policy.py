"""Policy as data: the vocabulary, the rule lines, and the CSV format of ``huizhen policy``.

A rule is one Casbin line. ``p, role, domain, object, action`` gives a role a
permission in a domain (a facility code, ``*`` for every facility);
``g, user, role, domain`` assigns a role to a user in a domain (``*``:
platform-wide). A user's roles are the token's ``roles`` claim in the token's
``facility`` domain (``*`` when the token names none) plus the g lines stored
for the user's id.

Parsing is all-or-nothing: the first unknown role, object or action, or a
malformed line, rejects the whole file with its line number.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from huizhen.integration.errors import BadInput

PLATFORM: Final = "*"
ROLES: Final = frozenset(
    {
        "primary_doctor", "expert", "patient", "coordinator", "integration_admin", "security_officer", "auditor",
        "his_system",
    }
)
OBJECTS: Final = frozenset(
    {
        "patient", "consultation", "observation", "study", "directory", "message", "channel", "policy", "audit",
        "case", "stats", "call",
    }
)
ACTIONS: Final = frozenset(
    {
        "read", "write", "request", "submit", "assign", "decline", "start", "complete", "cancel", "reprocess", "raw",
        "join", "observe", "break_glass", "*",
    }
)
_NAME = re.compile(r"^[\w.:@\-]{1,200}$")  # letters of any script (张医生), no quotes or spaces
_DOMAIN = re.compile(r"^(\*|[A-Za-z0-9_.\-]{1,64})$")


class PolicyError(BadInput):
    """A rule or a policy file that cannot be used; ``line`` names the file line."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line


@dataclass(frozen=True, slots=True, order=True)
class Rule:
    ptype: str  # "p" or "g"
    v0: str  # p: role; g: user
    v1: str  # p: domain; g: role
    v2: str  # p: object; g: domain
    v3: str = ""  # p: action

    @classmethod
    def permission(cls, role: str, domain: str, obj: str, action: str) -> Rule:
        return checked(cls("p", role, domain, obj, action))

    @classmethod
    def assignment(cls, user: str, role: str, domain: str) -> Rule:
        return checked(cls("g", user, role, domain, ""))

    @property
    def fields(self) -> list[str]:
        return [self.v0, self.v1, self.v2, self.v3] if self.ptype == "p" else [self.v0, self.v1, self.v2]

    def line(self) -> str:
        return ", ".join([self.ptype, *self.fields])


def checked(rule: Rule, line: int | None = None) -> Rule:
    if rule.ptype == "p":
        role, domain, obj, action = rule.v0, rule.v1, rule.v2, rule.v3
        if obj not in OBJECTS:
            raise PolicyError(f"unknown object {obj!r} (known: {', '.join(sorted(OBJECTS))})", line)
        if action not in ACTIONS:
            raise PolicyError(f"unknown action {action!r} (known: {', '.join(sorted(ACTIONS))})", line)
    elif rule.ptype == "g":
        user, role, domain = rule.v0, rule.v1, rule.v2
        if not _NAME.match(user):
            raise PolicyError(f"invalid user id {user!r}", line)
        if user in ROLES:
            raise PolicyError(f"{user!r} is a role: role inheritance is not configurable", line)
    else:
        raise PolicyError(f"unknown rule type {rule.ptype!r}: expected p or g", line)
    if role not in ROLES:
        raise PolicyError(f"unknown role {role!r} (known: {', '.join(sorted(ROLES))})", line)
    if not _DOMAIN.match(domain):
        raise PolicyError(f"invalid domain {domain!r}: a facility code or *", line)
    return rule


def parse_csv(text: str) -> list[Rule]:
    """Every rule of a policy file, or :class:`PolicyError` for the first bad line."""
    rules: list[Rule] = []
    # a file saved by Excel or Notepad on Windows starts with a UTF-8 byte order mark
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            cells = [c.strip() for c in next(csv.reader([raw], skipinitialspace=True))]
        except csv.Error as exc:
            raise PolicyError(f"malformed line: {exc}", number) from exc
        if not cells or cells[0] not in ("p", "g"):
            raise PolicyError(f"a line starts with p or g, not {cells[0] if cells else ''!r}", number)
        want = 5 if cells[0] == "p" else 4
        if len(cells) != want or any(not c for c in cells):
            raise PolicyError(f"a {cells[0]} line has {want - 1} non-empty fields, found {len(cells) - 1}", number)
        rules.append(checked(Rule(cells[0], cells[1], cells[2], cells[3], cells[4] if want == 5 else ""), number))
    return rules


def to_csv(rules: Iterable[Rule]) -> str:
    out = io.StringIO()
    out.write("# Huizhen policy: p, role, domain, object, action / g, user, role, domain\n")
    for rule in sorted(set(rules)):
        out.write(rule.line() + "\n")
    return out.getvalue()


def etag(rules: Iterable[Rule], role: str | None = None) -> str:
    """A version tag of one role's lines (its p lines and the g lines assigning it), or of the whole policy.

    A change names the tag it was based on; when another change to that role landed in between, the
    tags differ and the change is refused as a conflict instead of overwriting what the other made.
    """
    lines = sorted({r.line() for r in rules if role is None or (r.v0 if r.ptype == "p" else r.v1) == role})
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def role_of(rule: Rule) -> str:
    return rule.v0 if rule.ptype == "p" else rule.v1
