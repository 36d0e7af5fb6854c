"""DICOM test support: the listener in-process on a free port, and real peers to talk to it.

Peers are dcmtk's programs (``need_program`` skips without them, fails under
CI=true) and pynetdicom requestors run in a worker thread — the listener
bridges into the test's event loop, so nothing blocking may run on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.presentation import build_context

from huizhen.adapters.dicom import DicomListener
from huizhen.integration.events import InProcessBus
from huizhen.integration.store import Store
from huizhen.settings import Settings
from tests.conftest import IN_CI

CORPUS = Path(os.environ.get("HUIZHEN_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")) / "dicom"
FACILITY = "FAC001"
MODALITY = "MODALITY"  # a calling AE on the allow-list
WORKSTATION = "EXPERT_WS"  # another one, for queries and retrieves
PEERS = f"{MODALITY}={FACILITY},{WORKSTATION}={FACILITY}"
# storescu proposes only uncompressed transfer syntaxes unless told which compressed one to offer
STORESCU_OPTION = {
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.1.99": "-xd",
}


def need_program(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not installed (Debian package dcmtk; .ci/run installs it)"
    if IN_CI:
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


def corpus(name: str) -> Path:
    return CORPUS / name


def storable_corpus() -> list[Path]:
    """Every corpus file but the deliberately truncated one."""
    return sorted(p for p in CORPUS.glob("*.dcm") if p.name != "MR_truncated.dcm")


@dataclass
class Running:
    listener: DicomListener
    settings: Settings
    bus: InProcessBus
    store: Store

    @property
    def port(self) -> int:
        return self.listener.port


@contextlib.asynccontextmanager
async def running_listener(store: Store, data_dir: Path, **overrides: Any) -> AsyncIterator[Running]:
    values: dict[str, Any] = {"data_dir": data_dir, "dicom_peers": PEERS, **overrides}
    settings = Settings(**values)
    bus = InProcessBus()
    listener = DicomListener(settings, store, bus, port=0)
    await listener.start()
    try:
        yield Running(listener, settings, bus, store)
    finally:
        await listener.stop()


async def run_program(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    """A dcmtk program with TCP_NODELAY=1 (see the issue's measurements); its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        need_program(args[0]), *args[1:], cwd=cwd, env={**os.environ, "TCP_NODELAY": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def storescu(port: int, path: Path, *, ae_title: str = MODALITY) -> tuple[int, str]:
    syntax = str(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    option = STORESCU_OPTION.get(syntax, "-x=")
    return await run_program("storescu", "-R", option, "-aet", ae_title, "-aec", "HUIZHEN",
                             "127.0.0.1", str(port), str(path))


def _contexts(items: Sequence[Path | Dataset]) -> list[Any]:
    pairs: dict[tuple[str, str], None] = {}
    for item in items:
        ds = dcmread(item, stop_before_pixels=True) if isinstance(item, Path) else item
        pairs[(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))] = None
    return [build_context(sop, syntax) for sop, syntax in pairs]


def _store_sync(port: int, items: Sequence[Path | Dataset], ae_title: str) -> list[int]:
    ae = AE(ae_title)
    ae.requested_contexts = _contexts(items)
    assoc = ae.associate("127.0.0.1", port, ae_title="HUIZHEN")
    if not assoc.is_established:
        raise ConnectionRefusedError(f"association not established (rejected: {assoc.is_rejected})")
    try:
        return [int(assoc.send_c_store(item).Status) for item in items]
    finally:
        assoc.release()


async def pynetdicom_store(port: int, *items: Path | Dataset, ae_title: str = MODALITY) -> list[int]:
    """C-STORE from a pynetdicom requestor; a path is sent as its bytes, undecoded."""
    return await asyncio.to_thread(_store_sync, port, items, ae_title)


def _associate_sync(port: int, ae_title: str, contexts: Sequence[Any], fn: Any) -> Any:
    ae = AE(ae_title)
    ae.requested_contexts = list(contexts)
    assoc = ae.associate("127.0.0.1", port, ae_title="HUIZHEN")
    if not assoc.is_established:
        return {"rejected": assoc.is_rejected}
    try:
        return fn(assoc)
    finally:
        if assoc.is_established:
            assoc.release()


async def with_association(port: int, contexts: Sequence[Any], fn: Any, *, ae_title: str = WORKSTATION) -> Any:
    """Run ``fn(assoc)`` on a pynetdicom association in a worker thread."""
    return await asyncio.to_thread(_associate_sync, port, ae_title, contexts, fn)
