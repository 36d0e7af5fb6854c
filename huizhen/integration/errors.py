"""The integration core's exception tree.

    HuizhenError                 base of everything the core raises on purpose
    ├── NotFound                 an entity id that does not exist (or is hidden)
    ├── BadInput                 a value the caller sent that cannot be used
    ├── InvalidTransition        a workflow transition the current state forbids
    ├── Conflict                 a concurrent change won (optimistic lock, unique key)
    ├── Forbidden                the viewer's roles do not allow the operation (RBAC)
    └── ConfigurationError       a setting that cannot be used; stops start-up

Edges turn these into their protocol's answer in exactly one place
(GraphQL ``extensions.code``, HL7 ACK AE/AR, FHIR OperationOutcome, DIMSE status).
"""

from __future__ import annotations

from typing import Any


class HuizhenError(Exception):
    code = "INTERNAL"


class NotFound(HuizhenError):
    code = "NOT_FOUND"

    def __init__(self, entity: str, entity_id: str) -> None:
        super().__init__(f"{entity} {entity_id!r} not found")
        self.entity = entity
        self.entity_id = entity_id


class BadInput(HuizhenError):
    code = "BAD_INPUT"


class InvalidTransition(HuizhenError):
    code = "INVALID_TRANSITION"

    def __init__(self, state: Any, transition: Any) -> None:
        super().__init__(f"cannot {transition} a consultation in state {state}")
        self.state = str(state)
        self.transition = str(transition)


class Conflict(HuizhenError):
    code = "CONFLICT"


class ConfigurationError(HuizhenError):
    code = "CONFIGURATION"


class Forbidden(HuizhenError):
    """The viewer's roles do not allow the operation at all (a row they may not see is a NotFound)."""

    code = "FORBIDDEN"
