"""The DICOM object store: received instances as files in the data folder.

Layout: ``<root>/<aa>/<bb>/<SOP Instance UID>/<sha256>.dcm`` where ``aabb``
are the first hex digits of SHA-256(SOP Instance UID), spreading instances
over 65,536 directories. The key handed out is that path relative to root.

Why a directory per SOP Instance UID holding content-addressed files:

* "never overwrite silently" holds by construction: different bytes always
  get a different file name, identical bytes the same one, so a repeated
  C-STORE is idempotent without comparing contents;
* the store itself sees a conflict (the same UID with other bytes) by listing
  one small directory, before any database is involved;
* the SHA-256 in the name lets a reader check the bytes it gets back.

Writes are atomic: a temporary file in the target directory, ``fsync``,
``os.replace`` (which can only ever swap identical bytes, the name being
their hash), then ``fsync`` of the directory. Calls are synchronous (the SCP
calls them from pynetdicom's association threads) and thread-safe: a striped
lock serialises work on one SOP Instance UID. Across processes sharing the
folder the later writer of a conflicting version still sees the earlier one.

Errors, all :class:`ObjectStoreError` (a :class:`HuizhenError`)::

    ObjectStoreError
    ├── ObjectWriteError     the disk refused a write (full, read-only, I/O error);
    │                        the SCP answers 0xA700 "Refused: Out of Resources"
    ├── ObjectNotFound       no object under that key (also a NotFound)
    └── InvalidObjectKey     a key or UID that cannot name an object (also a BadInput)
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from huizhen.integration.errors import BadInput, HuizhenError, NotFound

_UID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")
_KEY = re.compile(r"([0-9a-f]{2})/([0-9a-f]{2})/([^/]{1,64})/([0-9a-f]{64})\.dcm")
_SUFFIX = ".dcm"
_STRIPES = 64


class ObjectStoreError(HuizhenError):
    code = "OBJECT_STORE"


class ObjectWriteError(ObjectStoreError):
    """The disk refused a write; nothing under the key was changed."""

    def __init__(self, message: str, *, os_errno: int | None = None) -> None:
        super().__init__(message)
        self.os_errno = os_errno

    @property
    def out_of_space(self) -> bool:
        return self.os_errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class ObjectNotFound(ObjectStoreError, NotFound):
    code = NotFound.code

    def __init__(self, key: str) -> None:
        NotFound.__init__(self, "object", key)


class InvalidObjectKey(ObjectStoreError, BadInput):
    code = BadInput.code


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    sop_instance_uid: str
    sha256: str
    size: int
    created: bool  # False: these exact bytes were already stored (idempotent repeat)
    conflicts: tuple[str, ...] = ()  # keys of other contents under the same UID

    @property
    def conflict(self) -> bool:
        return bool(self.conflicts)


class ObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._locks = [threading.Lock() for _ in range(_STRIPES)]

    def address(self, sop_instance_uid: str, data: bytes) -> tuple[str, str]:
        """The key :meth:`put` stores these bytes under, and their SHA-256, without writing."""
        digest = hashlib.sha256(data).hexdigest()
        return self._key(self._directory(sop_instance_uid) / f"{digest}{_SUFFIX}"), digest

    def put(self, sop_instance_uid: str, data: bytes, *, digest: str | None = None) -> StoredObject:
        """Store one instance's encoded bytes; see the module docstring for the guarantees."""
        directory = self._directory(sop_instance_uid)
        digest = digest or hashlib.sha256(data).hexdigest()
        target = directory / f"{digest}{_SUFFIX}"
        with self._lock(sop_instance_uid):
            created = not target.exists()
            new_directory = created and self._write(directory, target, data)
            # a directory made for this instance holds nothing else: no listing (one per C-STORE) needed
            others = () if new_directory else tuple(
                self._key(p) for p in sorted(directory.glob(f"*{_SUFFIX}")) if p.name != target.name
            )
        return StoredObject(
            key=self._key(target),
            sop_instance_uid=sop_instance_uid,
            sha256=digest,
            size=len(data),
            created=created,
            conflicts=others,
        )

    def read(self, key: str, *, verify: bool = False) -> bytes:
        """The stored bytes; ``verify`` checks them against the SHA-256 in the key."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {key}: {exc.strerror or exc}") from exc
        if verify and hashlib.sha256(data).hexdigest() != path.stem:
            raise ObjectStoreError(f"{key} does not hold the bytes it was stored with")
        return data

    def path(self, key: str) -> Path:
        """The file behind a key, for senders that stream from disk (C-GET, WADO)."""
        match = _KEY.fullmatch(key)
        if match is None or not _UID.fullmatch(match[3]) or _bucket(match[3]) != match[1] + match[2]:
            raise InvalidObjectKey(f"not an object key: {key!r}")
        return self.root / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def versions(self, sop_instance_uid: str) -> list[str]:
        """Keys of every content stored under a SOP Instance UID (more than one: a conflict)."""
        directory = self._directory(sop_instance_uid)
        return [self._key(p) for p in sorted(directory.glob(f"*{_SUFFIX}"))]

    def delete(self, key: str) -> None:
        path = self.path(key)
        uid = path.parent.name
        with self._lock(uid):
            try:
                path.unlink()
            except FileNotFoundError as exc:
                raise ObjectNotFound(key) from exc
            except OSError as exc:
                raise ObjectWriteError(f"cannot delete {key}: {exc}", os_errno=exc.errno) from exc
            try:
                path.parent.rmdir()  # only succeeds when no other version is left
            except OSError:
                pass

    def _write(self, directory: Path, target: Path, data: bytes) -> bool:
        """Write ``target`` atomically and durably; whether its directory was created for it."""
        temp = directory / f".tmp-{uuid.uuid4().hex}"
        try:
            new_dirs = _make_dirs(directory)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, target)
            for synced in {directory, *(d.parent for d in new_dirs)}:
                _fsync_dir(synced)
            return directory in new_dirs
        except OSError as exc:
            _discard(temp)
            raise ObjectWriteError(
                f"cannot store {target.name} under {directory}: {exc.strerror or exc}",
                os_errno=exc.errno,
            ) from exc

    def _directory(self, sop_instance_uid: str) -> Path:
        if not _UID.fullmatch(sop_instance_uid):
            raise InvalidObjectKey(f"not a usable SOP Instance UID: {sop_instance_uid!r}")
        bucket = _bucket(sop_instance_uid)
        return self.root / bucket[:2] / bucket[2:] / sop_instance_uid

    def _key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _lock(self, sop_instance_uid: str) -> threading.Lock:
        return self._locks[hash(sop_instance_uid) % _STRIPES]


def _bucket(sop_instance_uid: str) -> str:
    return hashlib.sha256(sop_instance_uid.encode()).hexdigest()[:4]


def _make_dirs(directory: Path) -> list[Path]:
    """Create missing directories; return the ones created (their parents need an fsync)."""
    missing = []
    for d in (directory, *directory.parents):
        if d.is_dir():
            break  # its ancestors exist too
        missing.append(d)
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            pass
    return missing


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
