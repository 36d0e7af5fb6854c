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

A write is durable when :meth:`put` returns: the file, its directory entry
and the entries of any directory made for it are fsynced. How, by case:

* the first content of a SOP Instance UID (nearly every C-STORE) goes
  straight to its final name in a directory this call has just made; the
  file's fsync and the fsyncs of the directories run at the same time (a
  small thread pool), so the disk does one journal commit where a rename
  would need three in a row (measured: ~1 flush instead of ~3). Readers find
  objects through the index, whose row is committed only after :meth:`put`
  returned;
* any other content (a repeat, a conflicting version, a directory made by
  another process) is written atomically: a temporary file, ``fsync``,
  ``os.replace`` (which can only ever swap identical bytes, the name being
  their hash), then ``fsync`` of the directory.

So a crash can leave a partial file under its final name only from the first
case, unindexed; a later :meth:`put` of those bytes finds it, sees that it
does not hold them (size and SHA-256 are checked before an existing file is
trusted) and writes them again atomically.

Calls are synchronous (the SCP calls them from pynetdicom's association
threads) and thread-safe: a striped lock serialises work on one SOP Instance
UID. Across processes sharing the folder the later writer of a conflicting
version still sees the earlier one.

Encrypted at rest: a DICOM header carries the patient's name, identifiers and
birth date, so each file holds ``MAGIC`` and the instance's bytes sealed with
the data key ring (AES-256-GCM, :mod:`huizhen.integration.crypto`), the key
as associated data (a file moved under another name does not open). Names stay
the SHA-256 of the instance's own bytes, so the guarantees above are
unchanged; readers get the bytes back through :meth:`ObjectStore.read`.
Files written before encryption (no ``MAGIC``) are still read as they are,
and :meth:`ObjectStore.reseal` (run by ``huizhen keys rotate``) seals them,
and re-seals files under an older key with the active one.

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
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from huizhen.integration.crypto import DecryptionError, KeyRing
from huizhen.integration.errors import BadInput, HuizhenError, NotFound

_UID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")
_KEY = re.compile(r"([0-9a-f]{2})/([0-9a-f]{2})/([^/]{1,64})/([0-9a-f]{64})\.dcm")
_SUFFIX = ".dcm"
_STRIPES = 64
_SYNCERS = 8  # threads fsyncing directories while the caller fsyncs the file (shared by every association)
MAGIC = b"HZOBJ\x00"  # a sealed object; a DICOM file starts with its 128-byte preamble or a data element
PLAINTEXT = "plaintext"  # :meth:`ObjectStore.key_ids`' name for files written before encryption


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
    def __init__(self, root: Path, keyring: KeyRing) -> None:
        self.root = Path(root)
        self.keyring = keyring
        self._locks = [threading.Lock() for _ in range(_STRIPES)]
        self._syncers: ThreadPoolExecutor | None = None  # made on the first write: readers need none
        self._syncers_lock = threading.Lock()

    def address(self, sop_instance_uid: str, data: bytes) -> tuple[str, str]:
        """The key :meth:`put` stores these bytes under, and their SHA-256, without writing."""
        digest = hashlib.sha256(data).hexdigest()
        return self._key(self._directory(sop_instance_uid) / f"{digest}{_SUFFIX}"), digest

    def put(self, sop_instance_uid: str, data: bytes, *, digest: str | None = None) -> StoredObject:
        """Store one instance's encoded bytes; see the module docstring for the guarantees."""
        directory = self._directory(sop_instance_uid)
        digest = digest or hashlib.sha256(data).hexdigest()
        target = directory / f"{digest}{_SUFFIX}"
        key = self._key(target)
        with self._lock(sop_instance_uid):
            created = not self._holds(target, key, digest, len(data))
            new_directory = created and self._write(directory, target, self._seal(key, data))
            # a directory made for this instance holds nothing else: no listing (one per C-STORE) needed
            others = () if new_directory else tuple(
                self._key(p) for p in sorted(directory.glob(f"*{_SUFFIX}")) if p.name != target.name
            )
        return StoredObject(
            key=key,
            sop_instance_uid=sop_instance_uid,
            sha256=digest,
            size=len(data),
            created=created,
            conflicts=others,
        )

    def read(self, key: str, *, verify: bool = False) -> bytes:
        """The stored bytes, decrypted; ``verify`` checks them against the SHA-256 in the key."""
        path = self.path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {key}: {exc.strerror or exc}") from exc
        data = self._open(key, raw)
        if verify and hashlib.sha256(data).hexdigest() != path.stem:
            raise ObjectStoreError(f"{key} does not hold the bytes it was stored with")
        return data

    def key_ids(self) -> dict[str, int]:
        """How many objects each data key id seals (``PLAINTEXT``: files written before encryption)."""
        counts: dict[str, int] = {}
        for path in self._files():
            kid = self._key_id(path)
            if kid is not None:
                counts[kid] = counts.get(kid, 0) + 1
        return counts

    def reseal(self) -> int:
        """Seal every object not sealed under the active key (older key, or plaintext) with it,
        atomically (temporary file, fsync, rename, directory fsync); how many were sealed. Safe
        while servers write: each file is re-sealed under its instance's lock, and a file another
        process replaces meanwhile holds the same bytes (its name is their hash)."""
        done = 0
        for path in self._files():
            if self._key_id(path) in (None, self.keyring.active):
                continue
            key = self._key(path)
            with self._lock(path.parent.name):
                try:
                    data = self._open(key, path.read_bytes())
                    if hashlib.sha256(data).hexdigest() != path.stem:
                        raise ObjectStoreError(f"{key} does not hold the bytes it was stored with")
                    self._write_atomic(path.parent, path, self._seal(key, data), {path.parent})
                except FileNotFoundError:
                    continue  # deleted meanwhile
                except OSError as exc:
                    raise ObjectWriteError(f"cannot re-seal {key}: {exc.strerror or exc}", os_errno=exc.errno) from exc
            done += 1
        return done

    def path(self, key: str) -> Path:
        """The file behind a key (sealed: read the bytes with :meth:`read`)."""
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
        """Write ``target`` durably; whether its directory was made by this call (see the module docstring)."""
        try:
            missing, made = _make_dirs(directory)
            # every directory found missing gets its entry fsynced, even one another writer made meanwhile
            entries = {directory, *(d.parent for d in missing)}
            if directory in made:
                self._write_fresh(target, data, entries, made)
            else:
                self._write_atomic(directory, target, data, entries)
            return directory in made
        except OSError as exc:
            raise ObjectWriteError(
                f"cannot store {target.name} under {directory}: {exc.strerror or exc}",
                os_errno=exc.errno,
            ) from exc

    def _write_fresh(self, target: Path, data: bytes, entries: set[Path], made: list[Path]) -> None:
        """Straight to the final name, in a directory nobody else knows yet; one fsync round for all."""
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                _write_all(fd, data)
                self._fsync(fd, entries)
            finally:
                os.close(fd)
        except OSError:
            _discard(target)
            for d in made:  # deepest first; one still holding something stays
                try:
                    d.rmdir()
                except OSError:
                    break
            raise

    def _write_atomic(self, directory: Path, target: Path, data: bytes, entries: set[Path]) -> None:
        temp = directory / f".tmp-{uuid.uuid4().hex}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, target)
            self._fsync(None, entries)
        except OSError:
            _discard(temp)
            raise

    def _fsync(self, fd: int | None, directories: Collection[Path]) -> None:
        """fsync ``fd`` (else one of the directories) on this thread and the directories on the
        pool, all at once: the disk serves them with one journal commit. The first error is raised."""
        pooled = list(directories)
        own = pooled.pop() if fd is None else None
        pending = [self._syncer().submit(_fsync_dir, d) for d in pooled]
        error: OSError | None = None
        try:
            if fd is not None:
                os.fsync(fd)
            elif own is not None:
                _fsync_dir(own)
        except OSError as exc:
            error = exc
        for future in pending:
            failed = future.exception()
            if failed is not None and not isinstance(failed, OSError):
                raise failed
            error = error or failed
        if error is not None:
            raise error

    def _syncer(self) -> ThreadPoolExecutor:
        if self._syncers is None:
            with self._syncers_lock:
                if self._syncers is None:
                    self._syncers = ThreadPoolExecutor(_SYNCERS, thread_name_prefix="objects-fsync")
        return self._syncers

    def _directory(self, sop_instance_uid: str) -> Path:
        if not _UID.fullmatch(sop_instance_uid):
            raise InvalidObjectKey(f"not a usable SOP Instance UID: {sop_instance_uid!r}")
        bucket = _bucket(sop_instance_uid)
        return self.root / bucket[:2] / bucket[2:] / sop_instance_uid

    def _key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _seal(self, key: str, data: bytes) -> bytes:
        return MAGIC + self.keyring.encrypt(data, aad=key.encode())

    def _open(self, key: str, raw: bytes) -> bytes:
        """The instance's bytes from a file's bytes: unsealed, or as they are when written before encryption."""
        if not raw.startswith(MAGIC):
            return raw
        try:
            return self.keyring.decrypt(raw[len(MAGIC):], aad=key.encode())
        except DecryptionError as exc:
            raise ObjectStoreError(f"{key} does not open: {exc}") from exc

    def _key_id(self, path: Path) -> str | None:
        """The data key id sealing a file, ``PLAINTEXT`` for one written before encryption, None when unreadable."""
        try:
            with path.open("rb") as f:
                head = f.read(len(MAGIC) + 2 + 255)
        except OSError:
            return None
        if not head.startswith(MAGIC):
            return PLAINTEXT
        try:
            return self.keyring.key_id_of(head[len(MAGIC):])
        except (IndexError, UnicodeDecodeError):
            return None

    def _files(self) -> list[Path]:
        return sorted(self.root.glob(f"??/??/*/*{_SUFFIX}")) if self.root.is_dir() else []

    def _holds(self, path: Path, key: str, digest: str, size: int) -> bool:
        """Whether ``path`` exists and opens to exactly the bytes of this size and SHA-256 (a crash
        may have cut short a file written straight to its final name)."""
        try:
            data = self._open(key, path.read_bytes())
        except (OSError, ObjectStoreError):  # missing, unreadable or cut short: not to be trusted
            return False
        return len(data) == size and hashlib.sha256(data).hexdigest() == digest

    def _lock(self, sop_instance_uid: str) -> threading.Lock:
        return self._locks[hash(sop_instance_uid) % _STRIPES]


def _bucket(sop_instance_uid: str) -> str:
    return hashlib.sha256(sop_instance_uid.encode()).hexdigest()[:4]


def _make_dirs(directory: Path) -> tuple[list[Path], list[Path]]:
    """Create missing directories, deepest last; return the ones found missing and, deepest
    first, the ones this call made (another thread or process may make one meanwhile)."""
    missing = []
    for d in (directory, *directory.parents):
        if d.is_dir():
            break  # its ancestors exist too
        missing.append(d)
    made = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        made.append(d)
    return missing, made[::-1]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
