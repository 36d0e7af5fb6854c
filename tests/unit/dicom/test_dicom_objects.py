"""The object store on a real directory: idempotency, conflicts, disk failures, threads."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from huizhen.adapters.objects import (
    MAGIC,
    PLAINTEXT,
    InvalidObjectKey,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    ObjectWriteError,
    StoredObject,
)
from huizhen.integration.crypto import KeyRing, load_or_create_keyring, rotate_key_file
from huizhen.integration.errors import BadInput, NotFound
from huizhen.mappings.dicom_read import read_instance

from .conftest import MANIFEST, corpus_bytes

CT = corpus_bytes("CT_small.dcm")
CT_UID = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"


@pytest.fixture
def keyring(tmp_path: Path) -> KeyRing:
    (tmp_path / "keys").mkdir()
    return load_or_create_keyring(tmp_path / "keys")


@pytest.fixture
def store(tmp_path: Path, keyring: KeyRing) -> ObjectStore:
    return ObjectStore(tmp_path / "objects", keyring)


def leftovers(root: Path) -> list[Path]:
    return list(root.rglob(".tmp-*")) if root.exists() else []


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda e: e["path"].rsplit("/", 1)[-1])
def test_every_corpus_file_round_trips(store: ObjectStore, entry: dict[str, str]) -> None:
    data = corpus_bytes(entry["path"].rsplit("/", 1)[-1])
    stored = store.put(entry["SOPInstanceUID"], data)
    assert stored.created and not stored.conflict
    assert stored.size == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.key.endswith(f"/{entry['SOPInstanceUID']}/{stored.sha256}.dcm")
    assert store.read(stored.key) == data
    sealed = store.path(stored.key).read_bytes()
    assert sealed.startswith(MAGIC) and data not in sealed  # encrypted at rest


def test_same_bytes_again_is_idempotent(store: ObjectStore) -> None:
    first = store.put(CT_UID, CT)
    again = store.put(CT_UID, CT)
    assert again == StoredObject(first.key, CT_UID, first.sha256, len(CT), created=False)
    assert store.versions(CT_UID) == [first.key]


def test_same_uid_with_other_bytes_keeps_both_and_flags_a_conflict(store: ObjectStore) -> None:
    first = store.put(CT_UID, CT)
    changed = CT[:-2] + b"\x01\x02"
    second = store.put(CT_UID, changed)
    assert second.created and second.conflict and second.conflicts == (first.key,)
    assert store.read(first.key) == CT and store.read(second.key) == changed
    assert sorted(store.versions(CT_UID)) == sorted([first.key, second.key])
    # repeating either version is idempotent and still reports the other one
    repeat = store.put(CT_UID, CT)
    assert not repeat.created and repeat.conflicts == (second.key,)


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"\0" * len(b)], ids=["cut", "zeroed"])
def test_a_file_a_crash_left_partial_under_its_name_is_written_again(
    store: ObjectStore, damage: Callable[[bytes], bytes]
) -> None:
    # a first content goes straight to its final name: a crash before its fsync can leave it
    # partial there (never indexed); the sender's resend must not be taken for a repeat
    first = store.put(CT_UID, CT)
    store.path(first.key).write_bytes(damage(CT))
    again = store.put(CT_UID, CT)
    assert again.created and again.key == first.key and not again.conflict
    assert store.read(again.key, verify=True) == CT and leftovers(store.root) == []


def test_verified_read_detects_damaged_files(store: ObjectStore) -> None:
    stored = store.put(CT_UID, CT)
    assert store.read(stored.key, verify=True) == CT
    store.path(stored.key).write_bytes(CT[:-1] + b"\xff")
    with pytest.raises(ObjectStoreError, match="does not hold"):
        store.read(stored.key, verify=True)


def test_delete(store: ObjectStore) -> None:
    stored = store.put(CT_UID, CT)
    store.delete(stored.key)
    assert not store.exists(stored.key) and store.versions(CT_UID) == []
    with pytest.raises(ObjectNotFound):
        store.read(stored.key)
    with pytest.raises(NotFound):
        store.delete(stored.key)


def test_delete_keeps_the_other_version(store: ObjectStore) -> None:
    first = store.put(CT_UID, CT)
    second = store.put(CT_UID, CT + b"\0\0")
    store.delete(first.key)
    assert store.versions(CT_UID) == [second.key]


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "ab/cd/1.2.3/" + "0" * 64 + ".dcm",  # bucket does not belong to the UID
        "/abs/path.dcm",
        "",
    ],
)
def test_keys_that_do_not_name_an_object_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidObjectKey):
        store.read(key)


@pytest.mark.parametrize("uid", ["", "../1.2", "1.2/3", ".", "1" * 65, "1.2 3"])
def test_uids_that_cannot_name_a_directory_are_refused(store: ObjectStore, uid: str) -> None:
    with pytest.raises(BadInput):
        store.put(uid, b"x")


def test_missing_key_is_not_found(store: ObjectStore) -> None:
    stored = ObjectStore(store.root.parent / "elsewhere", store.keyring).put(CT_UID, CT)
    with pytest.raises(ObjectNotFound):
        store.read(stored.key)


def test_a_root_that_cannot_be_created_is_a_write_error(tmp_path: Path, keyring: KeyRing) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a directory")
    store = ObjectStore(blocker / "objects", keyring)
    with pytest.raises(ObjectWriteError) as raised:
        store.put(CT_UID, CT)
    assert raised.value.os_errno is not None and not raised.value.out_of_space


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_is_a_write_error(store: ObjectStore) -> None:
    store.put("1.2.3", b"existing")
    store.root.chmod(0o500)
    try:
        with pytest.raises(ObjectWriteError):
            store.put(CT_UID, CT)
    finally:
        store.root.chmod(0o700)


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """A real EFBIG on write: RLIMIT_FSIZE, with SIGXFSZ ignored so write() fails instead."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_disk_write_failure_loses_nothing_already_stored(store: ObjectStore) -> None:
    small = store.put("1.2.3", b"small instance")
    with file_size_limit(4096):
        with pytest.raises(ObjectWriteError) as raised:
            store.put(CT_UID, CT)
    assert raised.value.out_of_space  # EFBIG, like ENOSPC: answer 0xA700
    assert store.read(small.key) == b"small instance"
    assert store.versions(CT_UID) == [] and leftovers(store.root) == []
    # once the disk accepts writes again the same instance stores normally
    assert store.put(CT_UID, CT).created


def run_threads(n: int, work: Callable[[int], StoredObject]) -> list[StoredObject]:
    results: list[StoredObject] = []
    errors: list[BaseException] = []
    start = threading.Barrier(n)
    lock = threading.Lock()

    def body(i: int) -> None:
        try:
            start.wait()
            result = work(i)
            with lock:
                results.append(result)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


def test_concurrent_identical_writes_store_once(store: ObjectStore) -> None:
    results = run_threads(16, lambda i: store.put(CT_UID, CT))
    assert sum(r.created for r in results) == 1
    assert {r.key for r in results} == {results[0].key} and not any(r.conflict for r in results)
    assert store.versions(CT_UID) == [results[0].key] and leftovers(store.root) == []


def test_concurrent_different_writes_keep_every_version(store: ObjectStore) -> None:
    results = run_threads(16, lambda i: store.put(CT_UID, CT + bytes([i, 0])))
    assert all(r.created for r in results)
    assert len(store.versions(CT_UID)) == 16
    assert sum(r.conflict for r in results) >= 15  # every writer but the first sees the others
    for r in results:
        assert hashlib.sha256(store.read(r.key)).hexdigest() == r.sha256


def test_concurrent_writes_of_many_instances(store: ObjectStore) -> None:
    results = run_threads(32, lambda i: store.put(f"1.2.826.0.1.{i}", CT))
    assert len({r.key for r in results}) == 32 and not any(r.conflict for r in results)
    assert read_instance(store.read(results[0].key)).SOPInstanceUID == CT_UID


def test_no_patient_data_in_the_files(store: ObjectStore) -> None:
    """A DICOM header carries the patient's name and id: the file holds neither."""
    ds = read_instance(CT)
    stored = store.put(CT_UID, CT)
    sealed = store.path(stored.key).read_bytes()
    for value in (str(ds.PatientName), str(ds.PatientID)):
        assert value and value.encode() not in sealed
    assert store.read(stored.key, verify=True) == CT


def test_a_sealed_file_moved_under_another_name_does_not_open(store: ObjectStore) -> None:
    first, second = store.put("1.2.3", b"first"), store.put("1.2.4", b"second")
    store.path(second.key).write_bytes(store.path(first.key).read_bytes())
    with pytest.raises(ObjectStoreError, match="does not open"):
        store.read(second.key)
    again = store.put("1.2.4", b"second")  # the damaged file is not trusted: written again
    assert again.created and store.read(second.key) == b"second"


def test_files_from_before_encryption_are_read_and_resealed(store: ObjectStore) -> None:
    key, _ = store.address(CT_UID, CT)
    path = store.path(key)
    path.parent.mkdir(parents=True)
    path.write_bytes(CT)  # as the store wrote objects before they were encrypted
    assert store.read(key, verify=True) == CT
    assert not store.put(CT_UID, CT).created  # the plaintext file holds these bytes
    assert store.key_ids() == {PLAINTEXT: 1}
    assert store.reseal() == 1
    assert store.key_ids() == {store.keyring.active: 1}
    assert path.read_bytes().startswith(MAGIC) and store.read(key, verify=True) == CT
    assert store.reseal() == 0


def test_reseal_moves_objects_to_a_new_active_key(tmp_path: Path, store: ObjectStore) -> None:
    old = store.keyring.active
    stored = store.put(CT_UID, CT)
    rotate_key_file(tmp_path / "keys")
    ring = load_or_create_keyring(tmp_path / "keys")
    rotated = ObjectStore(store.root, ring)
    assert ring.active != old and rotated.key_ids() == {old: 1}
    assert rotated.reseal() == 1
    assert rotated.key_ids() == {ring.active: 1}
    assert rotated.read(stored.key, verify=True) == CT


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors through /proc")
def test_a_directory_fsync_failing_is_a_write_error_and_leaves_no_descriptor_open(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk refusing a directory's fsync (EIO, as a failing device reports it) on a syncer
    thread: the caller gets the error, the fresh file is gone, every directory opened is closed."""
    store.put("1.2.3", b"warm the syncers")  # their threads (and descriptors) exist before counting
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if Path(f"/proc/self/fd/{fd}").resolve().is_dir():
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    before = _open_descriptors()
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(ObjectWriteError) as raised:
        store.put(CT_UID, CT)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert raised.value.os_errno == 5
    assert store.versions(CT_UID) == []
    assert _open_descriptors() == before
