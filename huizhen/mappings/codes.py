"""Code tables from ``config/mappings/*.csv``: where hospitals differ, as data.

Every table has a ``facility`` column: a row with a facility code applies to
that facility only, a row with it empty applies to all, and a facility's own
row wins. Keys match case-insensitively after trimming. Loading checks every
row and raises :class:`ConfigurationError` naming the file and line, so a
broken table stops start-up instead of mis-mapping messages later.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from huizhen.integration.errors import ConfigurationError
from huizhen.integration.model import Coding, Facility, FacilityLevel, Gender, Urgency

T = TypeVar("T")
LOINC = "http://loinc.org"
Row = dict[str, str]
_WHERE = "__where__"  # file:line of a row, for error messages
_MAX_REMEMBERED = 10_000  # lookups a table keeps the answer of; more are looked up again


class ScopedTable(Generic[T]):
    """``(facility, key) → value``, falling back to the rows for every facility."""

    def __init__(self, rows: Iterable[tuple[str, str, T]] = ()) -> None:
        self._values: dict[tuple[str, str], T] = {}
        for facility, key, value in rows:
            self._values[(_norm(facility), _norm(key))] = value

    def get(self, facility: str | None, key: str) -> T | None:
        key = _norm(key)
        if facility:
            found = self._values.get((_norm(facility), key))
            if found is not None:
                return found
        return self._values.get(("", key))

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True, slots=True)
class ConsultationOrder:
    """An order code that means "consultation request", with its target department."""

    code: str
    department: str | None = None


@dataclass(frozen=True, slots=True)
class FacilityEntry:
    code: str
    name: str
    level: FacilityLevel
    region: str | None = None

    def to_facility(self) -> Facility:
        return Facility(code=self.code, name=self.name, level=self.level, region=self.region)


class LabCodes:
    """Local lab code (with its coding system, or any system) → LOINC."""

    def __init__(self, rows: Iterable[tuple[str, str, str, Coding]] = ()) -> None:
        self._table = ScopedTable((f, _lab_key(s, c), v) for f, s, c, v in rows)
        # answers by (facility, system, code): a lab sends the same few hundred codes all day,
        # ten or more per ORU^R01. Kept with the table, so a reloaded table starts afresh.
        self._found: dict[tuple[str | None, str | None, str], Coding | None] = {}

    def get(self, facility: str | None, system: str | None, code: str) -> Coding | None:
        key = (facility, system, code)
        try:
            return self._found[key]
        except KeyError:
            pass
        found = self._table.get(facility, _lab_key(system or "", code)) or self._table.get(
            facility, _lab_key("", code)
        )
        if len(self._found) >= _MAX_REMEMBERED:
            self._found.clear()
        self._found[key] = found
        return found


@dataclass(frozen=True, slots=True)
class CodeTables:
    lab_codes: LabCodes
    departments: ScopedTable[str]
    consultation_orders: ScopedTable[ConsultationOrder]
    priorities: ScopedTable[Urgency]
    genders: ScopedTable[Gender]
    patient_classes: ScopedTable[str]
    facilities: dict[str, FacilityEntry]  # MSH-4 as sent (case-folded) → facility

    def facility(self, sending_facility: str) -> FacilityEntry | None:
        return self.facilities.get(_norm(sending_facility))

    @classmethod
    def empty(cls) -> CodeTables:
        return cls(LabCodes(), ScopedTable(), ScopedTable(), ScopedTable(), ScopedTable(), ScopedTable(), {})


def load_code_tables(directory: Path) -> CodeTables:
    """Read every table from ``directory`` (``config/mappings``)."""
    return CodeTables(
        lab_codes=_lab_codes(directory / "lab_codes.csv"),
        departments=_table(directory / "departments.csv", "local_code", "department", str, extra=("department_en",)),
        consultation_orders=_consultation_orders(directory / "consultation_orders.csv"),
        priorities=_table(directory / "priorities.csv", "priority", "urgency", Urgency),
        genders=_table(directory / "genders.csv", "local_code", "gender", Gender),
        patient_classes=_table(directory / "patient_classes.csv", "patient_class", "encounter_class", str),
        facilities=_facilities(directory / "facilities.csv"),
    )


def _table(path: Path, key: str, column: str, kind: Callable[[str], T], extra: tuple[str, ...] = ()) -> ScopedTable[T]:
    rows = _rows(path, ("facility", key, column, *extra), required=(key, column))
    return ScopedTable((r["facility"], r[key], _convert(kind, r[column], r)) for r in rows)


def _lab_codes(path: Path) -> LabCodes:
    columns = ("facility", "local_system", "local_code", "loinc_code", "loinc_display")
    rows = _rows(path, columns, required=("local_code", "loinc_code"))
    return LabCodes(
        (r["facility"], r["local_system"], r["local_code"], Coding(r["loinc_code"], LOINC, r["loinc_display"] or None))
        for r in rows
    )


def _consultation_orders(path: Path) -> ScopedTable[ConsultationOrder]:
    columns = ("facility", "order_code", "department", "description")
    rows = _rows(path, columns, required=("order_code",))
    return ScopedTable(
        (r["facility"], r["order_code"], ConsultationOrder(r["order_code"], r["department"] or None)) for r in rows
    )


def _facilities(path: Path) -> dict[str, FacilityEntry]:
    columns = ("sending_facility", "facility_code", "facility_name", "level", "region")
    rows = _rows(path, columns, required=("sending_facility", "facility_code", "facility_name"))
    return {
        _norm(r["sending_facility"]): FacilityEntry(
            r["facility_code"],
            r["facility_name"],
            _convert(FacilityLevel, r["level"] or FacilityLevel.PRIMARY.value, r),
            r["region"] or None,
        )
        for r in rows
    }


def _convert(kind: Callable[[str], T], value: str, row: Row) -> T:
    try:
        return kind(value)
    except ValueError as exc:
        raise ConfigurationError(f"{row[_WHERE]}: {value!r} is not a valid value") from exc


def _rows(path: Path, columns: tuple[str, ...], required: tuple[str, ...]) -> list[Row]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or ())]
            if missing:
                raise ConfigurationError(f"{path}: missing column(s) {', '.join(missing)}")
            rows = []
            for row in reader:
                clean = {c: (row.get(c) or "").strip() for c in columns}
                clean[_WHERE] = f"{path}:{reader.line_num}"
                empty = [c for c in required if not clean[c]]
                if empty:
                    raise ConfigurationError(f"{clean[_WHERE]}: empty {', '.join(empty)}")
                rows.append(clean)
            return rows
    except OSError as exc:
        raise ConfigurationError(f"cannot read code table {path}: {exc}") from exc


def _lab_key(system: str, code: str) -> str:
    return f"{system.strip()}\x1f{code.strip()}"


def _norm(text: str) -> str:
    return text.strip().casefold()


def read_table(path: Path, columns: tuple[str, ...], required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV table in ``config/mappings/``, checked like the code tables (file:line in errors)."""
    return [{c: row[c] for c in columns} for row in _rows(path, columns, required)]
