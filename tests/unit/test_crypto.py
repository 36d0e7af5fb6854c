import json
import os
import stat
from pathlib import Path

import pytest

from huizhen.integration.crypto import DecryptionError, KeyRing, load_or_create_keyring, write_secret_file
from huizhen.integration.errors import ConfigurationError


def test_key_file_created_once_with_mode_0600(tmp_path: Path) -> None:
    ring = load_or_create_keyring(tmp_path)
    path = tmp_path / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_keyring(tmp_path)
    assert again.keys == ring.keys and again.index_key == ring.index_key


def test_encrypt_round_trip_and_randomised(tmp_path: Path) -> None:
    ring = load_or_create_keyring(tmp_path)
    a, b = ring.encrypt_text("张三"), ring.encrypt_text("张三")
    assert a != b and "张三".encode() not in (a or b"")
    assert ring.decrypt_text(a) == "张三"
    assert ring.decrypt_json(ring.encrypt_json({"n": "李四"})) == {"n": "李四"}


def test_tampering_and_unknown_key_are_detected(tmp_path: Path) -> None:
    ring = load_or_create_keyring(tmp_path)
    blob = bytearray(ring.encrypt(b"secret"))
    blob[-1] ^= 1
    with pytest.raises(DecryptionError, match="authentication"):
        ring.decrypt(bytes(blob))
    other = KeyRing(keys={"kother": os.urandom(32)}, active="kother", index_key=b"x" * 32)
    with pytest.raises(DecryptionError, match="unknown data key"):
        ring.decrypt(other.encrypt(b"x"))
    with pytest.raises(DecryptionError):
        ring.decrypt(b"plaintext")


def test_old_key_still_decrypts_after_new_active_key(tmp_path: Path) -> None:
    ring = load_or_create_keyring(tmp_path)
    old = ring.encrypt(b"v")
    rotated = KeyRing(keys={**ring.keys, "knew": os.urandom(32)}, active="knew", index_key=ring.index_key)
    assert rotated.decrypt(old) == b"v"
    assert rotated.key_id_of(rotated.encrypt(b"v")) == "knew"


def test_blind_index_is_keyed_and_normalised(tmp_path: Path) -> None:
    ring = load_or_create_keyring(tmp_path)
    assert ring.blind_index("MRN", "ab12") == ring.blind_index(" mrn", "AB12 ")
    assert ring.blind_index("ＡＢ１２") == ring.blind_index("ab12")  # full-width digits from Chinese IMEs
    assert ring.blind_index("MRN", "ab12") != ring.blind_index("MRNab", "12")
    (tmp_path / "other").mkdir()
    other = load_or_create_keyring(tmp_path / "other")
    assert other.blind_index("ab12") != ring.blind_index("ab12")


def test_secret_file_never_overwritten(tmp_path: Path) -> None:
    p = tmp_path / "s.key"
    write_secret_file(p, b"first")
    with pytest.raises(FileExistsError):
        write_secret_file(p, b"second")
    assert p.read_bytes() == b"first"


def test_world_readable_key_file_refused(tmp_path: Path) -> None:
    load_or_create_keyring(tmp_path)
    os.chmod(tmp_path / "keys.json", 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_or_create_keyring(tmp_path)


def test_corrupt_key_file_refused(tmp_path: Path) -> None:
    p = tmp_path / "keys.json"
    write_secret_file(p, json.dumps({"active": "k1", "keys": {}}).encode())
    with pytest.raises(ConfigurationError):
        load_or_create_keyring(tmp_path)


def test_environment_keys_newest_first_and_stable_index() -> None:
    import base64

    from huizhen.integration.crypto import keyring_from_environment, load_keyring

    old, new = os.urandom(32), os.urandom(32)
    b64 = [base64.b64encode(k).decode() for k in (old, new)]
    before = keyring_from_environment(b64[0])
    after = keyring_from_environment(f"{b64[1]}, {b64[0]}")
    assert after.active != before.active and before.active in after.keys
    assert after.decrypt(before.encrypt(b"v")) == b"v"
    assert after.index_key == before.index_key  # derived from the oldest key
    assert after.index_key not in (old, new)  # derived, not the data key itself
    explicit = keyring_from_environment(b64[0], base64.b64encode(b"i" * 32).decode())
    assert explicit.index_key == b"i" * 32
    for bad in ("", "not base64", base64.b64encode(b"short").decode()):
        with pytest.raises(ConfigurationError, match="HUIZHEN_DATA_KEY"):
            keyring_from_environment(bad or " , ")
    with pytest.raises(ConfigurationError, match="HUIZHEN_INDEX_KEY"):
        load_keyring(Path("/nonexistent"), None, b64[0])


def test_ring_follows_its_key_file(tmp_path: Path) -> None:
    from huizhen.integration.crypto import retire_old_keys, rotate_key_file

    ring = load_or_create_keyring(tmp_path)
    ring.refresh_s = 0.0
    old_kid = ring.active
    old_blob = ring.encrypt(b"v")
    other = load_or_create_keyring(tmp_path)
    new = rotate_key_file(tmp_path)
    assert other.key_id_of(other.encrypt(b"x")) == old_kid  # not yet checked (1 s interval)
    assert other.decrypt(ring.encrypt(b"x")) == b"x"
    assert ring.key_id_of(ring.encrypt(b"x")) == new  # checked at once (interval 0)
    assert retire_old_keys(tmp_path) == [old_kid]
    assert ring.decrypt(old_blob) == b"v"  # a running ring never forgets a key it had
