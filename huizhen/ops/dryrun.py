"""``huizhen mappings test FILE.hl7``: what each message would map to, with nothing stored.

The same decoder and mappers as the MLLP channel, with the tables read from
disk now (so an admin sees the effect of an edit before reloading or
reprocessing). The commands are printed as they would be applied.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from huizhen.adapters.hl7_channel import Hl7Codec
from huizhen.adapters.hl7_file import split_hl7_messages
from huizhen.integration.errors import HuizhenError
from huizhen.mappings.codes import load_code_tables
from huizhen.mappings.hl7v2.context import MappingContext
from huizhen.mappings.hl7v2.registry import default_registry
from huizhen.settings import Settings


@dataclass
class DryRun:
    index: int
    control_id: str | None
    type: str | None
    outcome: str  # "would apply", "filtered", "would fail (AE)", "would be rejected (AR)"
    detail: str | None
    commands: list[dict[str, Any]]


def plain(value: Any) -> Any:
    """Commands as plain data (dataclasses → dicts, enums → values), for printing as JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) not in (None, [], (), {})}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def dry_run(settings: Settings, path: Path, mappings_dir: Path | None = None) -> Iterator[DryRun]:
    tables = load_code_tables(mappings_dir or settings.resolved_mappings_dir)  # a bad table: ConfigurationError
    codec = Hl7Codec(default_registry(), MappingContext(tables=tables, timezone=settings.tz),
                     processing_id=settings.hl7_processing_id)
    for i, raw in enumerate(split_hl7_messages(path.read_bytes()), 1):
        try:
            inbound = codec.decode(raw)
        except HuizhenError as exc:
            yield DryRun(i, None, None, "would be rejected (AR)", str(exc), [])
            continue
        try:
            mapped = codec.map(inbound)
        except HuizhenError as exc:
            yield DryRun(i, inbound.control_id, inbound.type, "would fail (AE)", str(exc), [])
            continue
        commands = [{"command": type(c).__name__, **plain(c)} for c in mapped.commands]
        warnings = "; ".join(str(w) for w in mapped.warnings) or None
        if mapped.filtered:
            yield DryRun(i, inbound.control_id, inbound.type, "filtered", mapped.filtered, [])
        else:
            yield DryRun(i, inbound.control_id, inbound.type, "would apply", warnings, commands)
