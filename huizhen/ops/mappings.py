"""Mapping tables without a restart: reload ``config/mappings/*.csv`` when they change.

A reload reads and checks every table first (:func:`load_code_tables` names
the file and line of a bad row); only a complete, valid set replaces the
tables the channels use, so a broken edit leaves the old tables in force.
The watcher polls the files' modification times (no extra dependency, works
on network file systems) and also reloads when another instance announces a
reload on the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from huizhen.integration.errors import ConfigurationError
from huizhen.integration.events import Event
from huizhen.mappings.codes import CodeTables, load_code_tables
from huizhen.mappings.hl7v2.context import MappingContext

if TYPE_CHECKING:
    from huizhen.app import Services

log = logging.getLogger(__name__)
TOPIC = "mappings"


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    detail: str  # what was loaded, or why the files were rejected


def signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a table is edited, added or removed."""
    out = []
    for path in sorted(directory.glob("*.csv")):
        with contextlib.suppress(OSError):  # removed between glob and stat
            st = path.stat()
            out.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(out)


def install(services: Services, tables: CodeTables) -> None:
    """Hand ``tables`` to every channel that maps codes (HL7 v2 and FHIR)."""
    hl7 = services.codecs.get("mllp")
    if hl7 is not None and hasattr(hl7, "context"):
        hl7.context = MappingContext(tables=tables, timezone=hl7.context.timezone)
    fhir_codec = services.codecs.get("fhir")
    if fhir_codec is not None and hasattr(fhir_codec, "tables"):
        fhir_codec.tables = tables
    if services.fhir is not None:
        services.fhir.tables = tables


def reload(services: Services) -> ReloadResult:
    directory = services.settings.resolved_mappings_dir
    try:
        tables = load_code_tables(directory)
    except ConfigurationError as exc:
        services.metrics.mapping_reloads.labels("rejected").inc()
        log.error("mapping tables rejected; the previous tables stay in force: %s", exc)
        return ReloadResult(False, str(exc))
    install(services, tables)
    services.metrics.mapping_reloads.labels("ok").inc()
    detail = (f"{len(tables.facilities)} facilities, {len(tables.departments)} departments, "
              f"{len(tables.consultation_orders)} consultation order codes")
    log.info("mapping tables reloaded", extra={"directory": str(directory), "tables": detail})
    return ReloadResult(True, detail)


def _origin(services: Services) -> str:
    return f"{os.getpid()}:{id(services)}"


async def announce(services: Services) -> None:
    """Tell the other instances (through the bus) to reload too; this one has already."""
    await services.bus.publish(Event(topic=TOPIC, type="reload", data={"origin": _origin(services)}))


@contextlib.asynccontextmanager
async def watcher(services: Services) -> AsyncIterator[None]:
    """Reload on a file change (every ``mappings_poll_seconds``) or a bus announcement."""
    interval = services.settings.mappings_poll_seconds
    if interval <= 0:
        yield
        return
    directory = services.settings.resolved_mappings_dir
    subscription = services.bus.subscribe(TOPIC)

    async def poll() -> None:
        seen = await asyncio.to_thread(signature, directory)
        while True:
            await asyncio.sleep(interval)
            now = await asyncio.to_thread(signature, directory)
            if now != seen:
                seen = now
                reload(services)

    async def listen() -> None:
        async for event in subscription:
            if event.data.get("origin") != _origin(services):
                reload(services)

    tasks = [asyncio.create_task(poll(), name="mappings-poll"), asyncio.create_task(listen(), name="mappings-bus")]
    try:
        yield
    finally:
        subscription.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
