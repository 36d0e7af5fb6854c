"""Backup and restore of the embedded default: the SQLite database, the DICOM objects, the keys.

Consistent while the server runs: the database is copied with SQLite's online
backup API (a snapshot of committed transactions, WAL included), then the
object store and the key files. A DICOM object is written before its index
row, so every object the snapshot names is already on disk; objects stored
after the snapshot are only extra files. ``manifest.json`` lists every file
with its SHA-256, and restore checks them before it writes anything.

PostgreSQL deployments back up with the database's own tools (``pg_dump``,
base backups): this module refuses them rather than copy half the state.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from huizhen import __version__
from huizhen.integration.errors import BadInput, ConfigurationError
from huizhen.settings import Settings

DATABASE = "huizhen.db"
MANIFEST = "manifest.json"
OBJECTS = "dicom"
_PAGES_PER_STEP = 1024

Progress = Callable[[int, int], None]  # (done, total) in units of the current step


@dataclass
class Summary:
    files: int
    bytes: int
    database_bytes: int


def _database_path(settings: Settings) -> Path:
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        raise ConfigurationError(
            "backup/restore handle the embedded default (SQLite); back PostgreSQL up with pg_dump or base backups"
        )
    return Path(url.database)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _data_files(data: Path, database: Path) -> list[Path]:
    """Keys and other top-level files, then the object store; never the live database files."""
    skip = {database.name, database.name + "-wal", database.name + "-shm", database.name + "-journal"}
    top = sorted(p for p in data.iterdir() if p.is_file() and p.name not in skip)
    objects = sorted(p for p in (data / OBJECTS).rglob("*") if p.is_file()) if (data / OBJECTS).is_dir() else []
    return top + objects


def backup(settings: Settings, target: Path, progress: Progress = lambda d, t: None) -> Summary:
    database = _database_path(settings)
    data = settings.data_dir
    if not database.exists():
        raise BadInput(f"no database at {database}: nothing to back up")
    if target.exists() and any(target.iterdir()):
        raise BadInput(f"{target} is not empty; back up into a new folder")
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(target, 0o700)
    # 1. the database: an online snapshot, page by page, other connections keep writing
    src = sqlite3.connect(database, timeout=30)
    dst = sqlite3.connect(target / DATABASE)
    try:
        src.backup(dst, pages=_PAGES_PER_STEP, progress=lambda _s, remaining, total: progress(total - remaining, total))
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        dst.close()
        src.close()
    os.chmod(target / DATABASE, 0o600)
    # 2. keys and objects (objects of the snapshot exist already; later ones are harmless extras)
    files = _data_files(data, database)
    entries = {DATABASE: {"sha256": _sha256(target / DATABASE), "size": (target / DATABASE).stat().st_size}}
    total = 0
    for i, path in enumerate(files, 1):
        rel = path.relative_to(data)
        out = target / "data" / rel
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy2(path, out)
        entries[f"data/{rel.as_posix()}"] = {"sha256": _sha256(out), "size": out.stat().st_size}
        total += out.stat().st_size
        progress(i, len(files))
    manifest = {"format": 1, "created_at": datetime.now(UTC).isoformat(), "huizhen": __version__, "files": entries}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    db_size = entries[DATABASE]["size"]
    return Summary(files=len(files) + 1, bytes=total + int(str(db_size)), database_bytes=int(str(db_size)))


def verify(source: Path) -> dict[str, dict[str, object]]:
    """The manifest's entries, after checking every file against its SHA-256."""
    try:
        manifest = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{source} is not a Huizhen backup (no readable {MANIFEST})") from exc
    entries: dict[str, dict[str, object]] = manifest["files"]
    for name, entry in entries.items():
        path = source / name
        if not path.is_file() or _sha256(path) != entry["sha256"]:
            raise BadInput(f"backup file {name} is missing or damaged (SHA-256 mismatch)")
    return entries


def restore(
    settings: Settings, source: Path, *, force: bool = False, progress: Progress = lambda d, t: None
) -> Summary:
    """Restore into the configured data folder; the server must be stopped."""
    database = _database_path(settings)
    entries = verify(source)
    data = settings.data_dir
    if database.exists() or (data.exists() and any(data.iterdir())):
        if not force:
            raise BadInput(f"{data} already holds data; stop the server and use --force to move it aside")
        aside = data.with_name(f"{data.name}.before-restore-{datetime.now(UTC):%Y%m%dT%H%M%S}")
        data.rename(aside)
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data, 0o700)
    database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    src = sqlite3.connect(f"file:{source / DATABASE}?mode=ro", uri=True)
    dst = sqlite3.connect(database)
    try:
        src.backup(dst, pages=_PAGES_PER_STEP, progress=lambda _s, remaining, total: progress(total - remaining, total))
        dst.execute("PRAGMA journal_mode=WAL")
    finally:
        dst.close()
        src.close()
    os.chmod(database, 0o600)
    names = [n for n in entries if n.startswith("data/")]
    size = 0
    for i, name in enumerate(names, 1):
        out = data / name.removeprefix("data/")
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy2(source / name, out)
        size += out.stat().st_size
        progress(i, len(names))
    db_size = database.stat().st_size
    return Summary(files=len(names) + 1, bytes=size + db_size, database_bytes=db_size)
