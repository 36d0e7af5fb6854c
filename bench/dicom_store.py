"""C-STORE throughput from dcmtk's storescu into Huizhen, and into dcmtk's storescp (the C++ ceiling).

``--count`` copies of the corpus CT_small.dcm (39 KB CT, one series) are
written with distinct SOP Instance UIDs to a temporary folder, then sent by
``storescu`` (TCP_NODELAY=1) over ``--associations`` parallel associations:

* into Huizhen's DicomListener, run in this process with a real store
  (SQLite in WAL mode with synchronous=FULL by default, or ``--database-url``):
  a Success there means the bytes are fsynced in the object store and the
  instance is indexed and journaled in a committed transaction;
* into ``storescp`` writing to a folder (no fsync, no index).

Prints JSON (instances/s and MB/s for both, the ratio, and Huizhen's CPU
milliseconds per instance: on a shared machine a steadier figure than the
wall clock); checks that every instance was indexed. Run from the project root:

    .venv/bin/python bench/dicom_store.py [--count 500] [--associations 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from huizhen.adapters.dicom import DicomListener  # noqa: E402
from huizhen.integration import migrate  # noqa: E402
from huizhen.integration.crypto import load_or_create_keyring  # noqa: E402
from huizhen.integration.events import InProcessBus  # noqa: E402
from huizhen.integration.repo.imaging import StudyFilter  # noqa: E402
from huizhen.integration.store import Store  # noqa: E402
from huizhen.settings import Settings  # noqa: E402

CT = ROOT.parent / "shared" / "corpus" / "dicom" / "CT_small.dcm"


def write_copies(count: int, associations: int, folder: Path) -> tuple[list[Path], str]:
    """``count`` copies in ``associations`` sub-folders (one per storescu); returns them and the study UID."""
    ds = dcmread(CT)
    # a study and series of this run alone: a reused database (--database-url) holds earlier runs
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    dirs = [folder / f"a{n}" for n in range(associations)]
    for d in dirs:
        d.mkdir(parents=True)
    for n in range(count):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = n + 1
        ds.save_as(dirs[n % associations] / f"ct{n:05d}.dcm")
    return dirs, str(ds.StudyInstanceUID)


async def send(dirs: list[Path], port: int, ae_title: str) -> float:
    """storescu per folder, all at once; seconds until the last one exits."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    started = time.perf_counter()
    procs = [
        await asyncio.create_subprocess_exec(
            "storescu", "-aet", ae_title, "-aec", "HUIZHEN", "127.0.0.1", str(port), "+sd", str(d),
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        for d in dirs
    ]
    results = [await p.communicate() for p in procs]
    elapsed = time.perf_counter() - started
    for proc, (_, err) in zip(procs, results, strict=True):
        if proc.returncode:
            raise RuntimeError(f"storescu failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
    return elapsed


def cpu_seconds() -> float:
    """CPU time of this process (every thread) so far: Huizhen's cost, without storescu's."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def into_huizhen(
    dirs: list[Path], study_uid: str, count: int, work: Path, url: str | None
) -> tuple[float, float]:
    """Seconds until the last storescu exits, and this process's CPU seconds meanwhile."""
    data = work / "huizhen"
    (data / "keys").mkdir(parents=True)
    url = url or f"sqlite+aiosqlite:///{data / 'huizhen.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    store = Store(url, load_or_create_keyring(data / "keys"))
    listener = DicomListener(Settings(data_dir=data, dicom_peers="BENCH=FAC001"), store, InProcessBus(), port=0)
    await listener.start()
    try:
        cpu = cpu_seconds()
        elapsed = await send(dirs, listener.port, "BENCH")
        cpu = cpu_seconds() - cpu
    finally:
        await listener.stop()
    async with store.read() as repo:
        ids = await repo.imaging.find_study_ids(StudyFilter(study_uids=[study_uid]), limit=1)
        [study] = await repo.clinical.studies_by_ids(ids)
    await store.close()
    if study.instance_count != count:
        raise RuntimeError(f"indexed {study.instance_count} of {count} instances")
    return elapsed, cpu


async def into_storescp(dirs: list[Path], work: Path) -> float:
    out = work / "storescp"
    out.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TCP_NODELAY": "1"}
    proc = await asyncio.create_subprocess_exec(
        "storescp", "-od", str(out), str(port), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                await asyncio.sleep(0.02)
        return await send(dirs, port, "BENCH")
    finally:
        proc.kill()
        await proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--associations", type=int, default=1, help="parallel storescu processes")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    args = parser.parse_args()
    for program in ("storescu", "storescp"):
        if shutil.which(program) is None:
            raise SystemExit(f"{program} not found: apt-get install dcmtk")
    with tempfile.TemporaryDirectory(prefix="hz-dicom-bench-") as tmp:
        work = Path(tmp)
        dirs, study_uid = write_copies(args.count, args.associations, work / "files")
        megabytes = sum(p.stat().st_size for d in dirs for p in d.iterdir()) / 1e6
        huizhen, huizhen_cpu = await into_huizhen(dirs, study_uid, args.count, work, args.database_url)
        dcmtk = await into_storescp(dirs, work)

    def figures(seconds: float) -> dict[str, float]:
        return {"seconds": round(seconds, 3), "instances_per_s": round(args.count / seconds, 1),
                "mb_per_s": round(megabytes / seconds, 2)}

    print(json.dumps({
        "instances": args.count, "instance_bytes": CT.stat().st_size, "associations": args.associations,
        "database": (args.database_url or "sqlite").split(":")[0], "python": platform.python_version(),
        "huizhen": figures(huizhen) | {"cpu_ms_per_instance": round(huizhen_cpu * 1000 / args.count, 3)},
        "storescp": figures(dcmtk), "ratio_huizhen_to_storescp": round(dcmtk / huizhen, 3),
    }, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
