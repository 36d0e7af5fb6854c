"""``huizhen import``: load FHIR JSON, ndjson, Bundles and HL7 v2 files through the inbound pipelines.

Each submission is journaled on the channel it would have arrived on over
the network, with ``peer`` ``import:<file>``: a FHIR resource or Bundle on
``fhir`` (through :class:`~.fhir_write.FhirWriter`, exactly as a request to
``/fhir`` would be), an HL7 v2 message on ``mllp`` (through the
:class:`~huizhen.integration.engine.InboundEngine`, as an MLLP frame would
be). So what the network refuses an import refuses too, for the same
reasons; a refused submission can be fixed and reprocessed like any other
(``reprocessMessage``); importing the same file again applies nothing twice
(the same bytes from the same sender are DUPLICATEs).

What a file holds is judged by its content, not only its name:

* HL7 v2 — it starts with ``MSH`` (or a batch header, or MLLP framing): one
  or many messages, split by :func:`~.hl7_file.split_hl7_messages`;
* ndjson — ``.ndjson`` / ``.jsonl``, or several lines that each hold a JSON
  object (FHIR Bulk Data output): one resource per line;
* FHIR JSON — one resource or one Bundle. A ``transaction`` or ``batch``
  Bundle is posted to the base as it is; any other Bundle (``collection``,
  ``searchset``, a Synthea export…) is posted as a ``batch`` of its entries.
  A resource with an ``id`` is a ``PUT Type/id`` (idempotent; references to
  it by that id resolve), one without a ``POST Type``.

In a folder, files are taken recursively in name order; hidden files and
files whose extension is none of :data:`EXTENSIONS` are skipped (counted).
"""

from __future__ import annotations

import getpass
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from huizhen.adapters.fhir_request import FhirRequest
from huizhen.adapters.fhir_write import FhirAnswer
from huizhen.adapters.hl7_channel import CHANNEL as HL7_CHANNEL
from huizhen.adapters.hl7_file import split_hl7_messages
from huizhen.integration.engine import Outcome
from huizhen.integration.model import Actor, MessageStatus
from huizhen.mappings.fhir import jsonio
from huizhen.mappings.fhir.outcome import InvalidResource

if TYPE_CHECKING:
    from huizhen.app import Services
    from huizhen.settings import Settings

EXTENSIONS: Final = frozenset({".json", ".ndjson", ".jsonl", ".hl7", ".er7", ".msg", ".txt"})
_NDJSON: Final = frozenset({".ndjson", ".jsonl"})
_HL7_STARTS: Final = (b"MSH", b"FHS", b"BHS")
_PEER_MAX: Final = 200


class Kind(StrEnum):
    FHIR = "fhir"
    HL7 = "hl7"


@dataclass(frozen=True, slots=True)
class Item:
    """One submission: a FHIR resource or Bundle, or one HL7 v2 message."""

    source: str  # "file", "file:line" (ndjson) or "file#n" (the n-th HL7 message)
    file: Path
    kind: Kind
    payload: bytes
    size: int  # bytes of the file this item accounts for (the progress bar)


@dataclass
class ImportReport:
    accepted: int = 0
    duplicates: int = 0  # of accepted: imported before, nothing applied again
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    not_applied: Counter[str] = field(default_factory=Counter)  # Bundle entries of types Huizhen does not map
    skipped: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejected and self.accepted > 0

    def lines(self) -> list[str]:
        out = [f"rejected  {source}: {reason}" for source, reason in self.rejected]
        out.append(
            f"accepted {self.accepted}" + (f" ({self.duplicates} already imported)" if self.duplicates else "")
            + f", rejected {len(self.rejected)}"
        )
        if self.not_applied:
            kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.not_applied.items()))
            out.append(f"Bundle entries validated and journaled, not applied: {kinds}")
        if self.skipped:
            out.append(f"skipped {len(self.skipped)} file(s) that are not FHIR JSON, ndjson or HL7 v2")
        return out


def collect_files(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """(files to import, files skipped) for files and folders named on the command line."""
    files: list[Path] = []
    skipped: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        for found in sorted(p for p in path.rglob("*") if p.is_file()):
            hidden = any(part.startswith(".") for part in found.relative_to(path).parts)
            (skipped if hidden or found.suffix.lower() not in EXTENSIONS else files).append(found)
    return files, skipped


def read_items(path: Path) -> Iterator[Item]:
    """The submissions in one file (see the module docstring for how its content is judged)."""
    data = path.read_bytes()
    head = data.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n\x0b")
    if head.startswith(_HL7_STARTS):
        messages = split_hl7_messages(data)
        for n, message in enumerate(messages, 1):
            yield Item(f"{path}#{n}", path, Kind.HL7, message, _share(len(data), len(messages), n))
    elif path.suffix.lower() in _NDJSON or _looks_like_ndjson(head):
        lines = data.split(b"\n")
        for n, line in enumerate(lines, 1):
            if line.strip():
                yield Item(f"{path}:{n}", path, Kind.FHIR, line.strip(), len(line) + 1)
    else:
        yield Item(str(path), path, Kind.FHIR, data, len(data))


def _share(total: int, parts: int, n: int) -> int:
    return total // parts + (total % parts if n == parts else 0)


def _looks_like_ndjson(head: bytes) -> bool:
    lines = [line.strip() for line in head.splitlines() if line.strip()]
    if len(lines) < 2 or not all(line.startswith(b"{") and line.endswith(b"}") for line in lines[:2]):
        return False
    try:
        json.loads(head)
    except ValueError:
        return True  # a line is an object, the whole is not one document
    return False


def request_for(item: Item, sender: str, facility: str | None) -> FhirRequest:
    """The FHIR write an item is: what a HIS would have sent to ``/fhir`` for it."""
    try:
        data = jsonio.load_json(item.payload)
    except InvalidResource:  # journaled and refused by the pipeline, with its reason
        return FhirRequest("POST", "", item.payload, sender, facility)
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        return FhirRequest("POST", "", item.payload, sender, facility)
    kind = data["resourceType"]
    if kind == "Bundle":
        if data.get("type") in ("transaction", "batch"):
            return FhirRequest("POST", "", item.payload, sender, facility)
        return FhirRequest("POST", "", jsonio.dumps(as_batch(data)), sender, facility)
    resource_id = data.get("id")
    if isinstance(resource_id, str) and resource_id:
        return FhirRequest("PUT", f"{kind}/{resource_id}", item.payload, sender, facility)
    return FhirRequest("POST", kind, item.payload, sender, facility)


def as_batch(bundle: dict[str, Any]) -> dict[str, Any]:
    """A Bundle of another type (collection, searchset…) as the batch that writes its entries."""
    entries = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            entries.append(entry)  # refused by the pipeline with the element path
            continue
        kind, resource_id = resource.get("resourceType"), resource.get("id")
        url = f"{kind}/{resource_id}" if resource_id else str(kind)
        request = {"method": "PUT" if resource_id else "POST", "url": url}
        entries.append({**{k: v for k, v in entry.items() if k not in ("request", "response", "search")},
                        "request": request})
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}


class Importer:
    """Submits items through the services' pipelines and keeps the report."""

    def __init__(self, services: Services, *, sender: str, facility: str | None) -> None:
        if services.fhir is None:
            raise ValueError("the FHIR channel was not set up (Services.fhir)")
        self.services, self.writer, self.sender, self.facility = services, services.fhir, sender, facility
        self.actor = Actor(id=f"import:{_user()}", roles=("system",), facility=facility, source="huizhen import")
        self.report = ImportReport()

    async def run(self, items: Iterator[Item], progress: Callable[[int], object] = lambda _: None) -> ImportReport:
        for item in items:
            if item.kind is Kind.HL7:
                await self._hl7(item)
            else:
                await self._fhir(item)
            progress(item.size)
        return self.report

    async def _fhir(self, item: Item) -> None:
        request = request_for(item, self.sender, self.facility)
        answer = await self.writer.submit(request, actor=self.actor, peer=_peer(item))
        body = answer.body or {}
        if answer.status >= 400:
            self.report.rejected.append((item.source, _reason(answer)))
            return
        self.report.accepted += 1
        if body.get("resourceType") == "Bundle":
            self._entries(item, request, body)

    def _entries(self, item: Item, request: FhirRequest, body: dict[str, Any]) -> None:
        try:
            sent = jsonio.load_json(request.body).get("entry") or []
        except (InvalidResource, AttributeError):
            sent = []
        for n, entry in enumerate(body.get("entry") or []):
            response = entry.get("response") or {}
            status = int(str(response.get("status", "200")).split()[0] or 200)
            issues = (response.get("outcome") or {}).get("issue") or []
            if status >= 400:
                self.report.rejected.append((f"{item.source} entry[{n}]", _issues_text(issues) or f"HTTP {status}"))
            elif any("not applied" in str(i.get("diagnostics", "")) or i.get("code") == "not-supported"
                     for i in issues if i.get("severity") == "information"):
                resource = sent[n].get("resource") if n < len(sent) and isinstance(sent[n], dict) else None
                kind = resource.get("resourceType") if isinstance(resource, dict) else None
                self.report.not_applied[str(kind or "?")] += 1

    async def _hl7(self, item: Item) -> None:
        codec = self.services.codecs[HL7_CHANNEL]
        result = await self.services.engine.receive(codec, item.payload, peer=_peer(item))
        msg = result.message
        if result.outcome is Outcome.APPLIED:
            self.report.accepted += 1
            self.report.duplicates += msg.status is MessageStatus.DUPLICATE
        else:
            self.report.rejected.append((item.source, msg.error or result.outcome.value))


def _reason(answer: FhirAnswer) -> str:
    issues = (answer.body or {}).get("issue") or []
    return _issues_text([i for i in issues if i.get("severity") in ("error", "fatal")] or issues) or (
        f"HTTP {answer.status}"
    )


def _issues_text(issues: list[dict[str, Any]]) -> str:
    texts = []
    for issue in issues[:3]:
        where = ", ".join(issue.get("expression") or [])
        texts.append(f"{where}: {issue.get('diagnostics', issue.get('code'))}" if where else
                     str(issue.get("diagnostics", issue.get("code"))))
    more = f" (+{len(issues) - 3} more)" if len(issues) > 3 else ""
    return "; ".join(texts) + more


def _peer(item: Item) -> str:
    peer = f"import:{item.file}"
    return peer if len(peer) <= _PEER_MAX else "import:…" + str(item.file)[-(_PEER_MAX - 8):]


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


async def run_import(
    settings: Settings, files: Sequence[Path], *, sender: str, facility: str | None,
    progress: Callable[[int], object] = lambda _: None,
) -> ImportReport:
    """Import ``files`` into the embedded store (or the configured database), like ``huizhen demo``."""
    from huizhen.app import create_services

    services = await create_services(settings)
    try:
        importer = Importer(services, sender=sender, facility=facility)
        for path in files:
            try:
                await importer.run(read_items(path), progress)
            except OSError as exc:
                importer.report.rejected.append((str(path), f"cannot read: {exc.strerror or exc}"))
        return importer.report
    finally:
        await services.close()
