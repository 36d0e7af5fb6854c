"""What a mapper is given and what it gives back.

``MappingContext`` is built once in the composition root (code tables, the
local time zone); ``Scope`` is the per-message working state a mapper uses:
the sending facility resolved through the facility table, and the warnings
it collects. ``MappingResult`` is the typed outcome the engine applies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from zoneinfo import ZoneInfo

from huizhen.integration.commands import Command
from huizhen.integration.model import Urgency
from huizhen.mappings.codes import CodeTables, FacilityEntry

from .errors import ErrorDetail, ErrorLocation, MappingError
from .parse import Hl7Message
from .tables import ErrorCode, Severity

DEFAULT_TIMEZONE = "Asia/Shanghai"
_MSH4 = ErrorLocation("MSH", 1, 4)


@dataclass(frozen=True, slots=True)
class MappingContext:
    tables: CodeTables
    timezone: tzinfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIMEZONE))


@dataclass(frozen=True, slots=True)
class MappingResult:
    """Commands to apply in order; or, when ``filtered`` says why, nothing to apply.

    A filtered message is journaled FILTERED and acknowledged AA. Warnings are
    worth an ERR segment of severity W in the ACK and a line in the journal.
    """

    commands: tuple[Command, ...] = ()
    warnings: tuple[ErrorDetail, ...] = ()
    filtered: str | None = None


Mapper = Callable[[Hl7Message, MappingContext], MappingResult]


class Scope:
    """Per-message mapping state."""

    def __init__(self, message: Hl7Message, context: MappingContext) -> None:
        self.message = message
        self.tables = context.tables
        self.timezone = context.timezone
        self.warnings: list[ErrorDetail] = []
        header = message.header
        self.facility: FacilityEntry | None = self.tables.facility(header.value(4, 1)) or self.tables.facility(
            header.value(4, 2)
        )
        if self.facility is None and header.sending_facility:
            self.warn(_MSH4, f"sending facility {header.sending_facility!r} is not in facilities.csv")

    @property
    def facility_code(self) -> str | None:
        """The facility's code; MSH-4 as sent when the table lacks it; MSH-3 without MSH-4."""
        if self.facility is not None:
            return self.facility.code
        header = self.message.header
        return header.sending_facility or header.sending_application or None

    def default_system(self) -> str:
        """The system of an identifier that names no assigning authority."""
        code = self.facility_code
        if not code:
            raise MappingError(
                "an identifier has no assigning authority and MSH-3 and MSH-4 are empty",
                code=ErrorCode.REQUIRED_FIELD_MISSING,
                location=_MSH4,
            )
        return code

    def department(self, value: str, location: ErrorLocation) -> str | None:
        """A local department through departments.csv; kept as sent when unmapped."""
        if not value:
            return None
        found = self.tables.departments.get(self.facility_code, value)
        if found is None:
            self.warn(location, f"department {value!r} is not in departments.csv; kept as sent")
        return found or value

    def urgency(self, value: str, location: ErrorLocation) -> Urgency:
        """A priority through priorities.csv; empty is ROUTINE, unknown is an error.

        A priority the table lacks must not be guessed: a CRITICAL request
        filed as ROUTINE is worse than an AE the sender sees at once.
        """
        if not value:
            return Urgency.ROUTINE
        found = self.tables.priorities.get(self.facility_code, value)
        if found is None:
            raise MappingError(
                f"priority {value!r} is not in priorities.csv",
                code=ErrorCode.TABLE_VALUE_NOT_FOUND,
                location=location,
            )
        return found

    def warn(
        self,
        location: ErrorLocation | None,
        text: str,
        code: ErrorCode = ErrorCode.TABLE_VALUE_NOT_FOUND,
    ) -> None:
        self.warnings.append(ErrorDetail(code, text, Severity.WARNING, location))

    def result(self, commands: Sequence[Command]) -> MappingResult:
        return MappingResult(tuple(commands), tuple(self.warnings))

    def filtered(self, reason: str) -> MappingResult:
        return MappingResult((), tuple(self.warnings), reason)
