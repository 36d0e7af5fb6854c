"""Patient data at rest: AES-256-GCM under a key ring, and a keyed blind index.

Ciphertext layout: ``b"\\x01" | len(kid) | kid | nonce(12) | ciphertext+tag``.
The key id travels with every value, so a new active key can be introduced
and old values re-encrypted in the background while both stay readable.

Exact-match search over encrypted values (identifiers, names) goes through a
blind index: HMAC-SHA256 of the normalised value under a separate index key,
never through plaintext.

Where the keys come from: ``HUIZHEN_DATA_KEY`` (comma-separated base64 keys,
newest first; the first encrypts, all decrypt) or else ``keys.json`` in the
data folder (0600, created on first start). A ring loaded from the file
re-reads it when it changes (checked at most once a second when encrypting,
and at once when a value names an unknown key id), so ``huizhen keys rotate``
can introduce a key while servers keep running: they decrypt both key ids and
switch to the new one within a second.

The blind-index key does NOT rotate with the data keys (deliberately): it is
an HMAC key, not an encryption key, so losing it reveals no plaintext by
itself, and every index would have to be recomputed from the decrypted values
at the same instant that every reader switched. With ``HUIZHEN_DATA_KEY`` it
is ``HUIZHEN_INDEX_KEY`` when set, else derived (HKDF-SHA256) from the *last*
(oldest) listed data key, so prepending a new data key keeps the index.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from huizhen.integration import jsonio
from huizhen.integration.errors import ConfigurationError, HuizhenError

_VERSION = 1
KEYS_FILE = "keys.json"
# json.dumps with options builds an encoder per call: one encoder, for what orjson refuses (jsonio.dumps_utf8)
_JSON = json.JSONEncoder(ensure_ascii=False, default=str)


class DecryptionError(HuizhenError):
    """A value that does not decrypt: unknown key id or tampered bytes."""


@dataclass(eq=False)
class KeyRing:
    keys: dict[str, bytes]  # kid -> 32-byte AES key
    active: str
    index_key: bytes
    source: Path | None = None  # the key file to follow (None: keys from the environment)
    refresh_s: float = 1.0  # how stale the active key may be after a rotation
    _checked: float = field(default=0.0, repr=False)
    _stamp: tuple[int, int] = field(default=(0, 0), repr=False)
    # one cipher object per key: building it checks the key each time, a fifth of an encryption's cost
    _ciphers: dict[str, AESGCM] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _cipher(self, kid: str) -> AESGCM | None:
        cipher = self._ciphers.get(kid)
        if cipher is None:
            key = self.keys.get(kid)
            if key is None:
                return None
            cipher = self._ciphers[kid] = AESGCM(key)
        return cipher

    def encrypt(self, plaintext: bytes, *, aad: bytes = b"") -> bytes:
        if self.source is not None and time.monotonic() - self._checked >= self.refresh_s:
            self.refresh()
        kid = self.active.encode()
        nonce = os.urandom(12)
        cipher = self._cipher(self.active)
        if cipher is None:
            raise ConfigurationError(f"the active data key {self.active!r} is not in the key ring")
        ct = cipher.encrypt(nonce, plaintext, aad or None)
        return bytes([_VERSION, len(kid)]) + kid + nonce + ct

    def decrypt(self, blob: bytes, *, aad: bytes = b"") -> bytes:
        if len(blob) < 2 or blob[0] != _VERSION:
            raise DecryptionError("not a Huizhen ciphertext")
        n = blob[1]
        kid = blob[2 : 2 + n].decode()
        cipher = self._cipher(kid)
        if cipher is None and self.source is not None and self.refresh():
            cipher = self._cipher(kid)  # written under a key added since we loaded the file
        if cipher is None:
            raise DecryptionError(f"unknown data key id {kid!r}")
        nonce, ct = blob[2 + n : 14 + n], blob[14 + n :]
        try:
            return cipher.decrypt(nonce, ct, aad or None)
        except InvalidTag as exc:
            raise DecryptionError("ciphertext failed authentication") from exc

    def encrypt_text(self, text: str | None) -> bytes | None:
        return None if text is None else self.encrypt(text.encode("utf-8"))

    def decrypt_text(self, blob: bytes | None) -> str | None:
        return None if blob is None else self.decrypt(blob).decode("utf-8")

    def encrypt_json(self, value: Any) -> bytes:
        return self.encrypt(jsonio.dumps_utf8(value, _JSON.encode))

    def decrypt_json(self, blob: bytes) -> Any:
        return jsonio.loads(self.decrypt(blob))

    def blind_index(self, *parts: str) -> str:
        """Keyed, deterministic token for exact-match search (case/width-folded)."""
        norm = "\x1f".join(unicodedata.normalize("NFKC", p).strip().casefold() for p in parts)
        return hmac.digest(self.index_key, norm.encode("utf-8"), hashlib.sha256).hex()

    def key_id_of(self, blob: bytes) -> str:
        return blob[2 : 2 + blob[1]].decode()

    def refresh(self) -> bool:
        """Re-read the key file if it changed; True if it did. The index key never changes here."""
        if self.source is None:
            return False
        self._checked = time.monotonic()
        try:
            st = self.source.stat()
        except OSError:
            return False  # keep serving with the keys we have; the next check retries
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp == self._stamp:
            return False
        fresh = _read_key_file(self.source)
        if fresh.index_key != self.index_key:
            raise ConfigurationError(f"{self.source}: the blind-index key changed under a running server")
        self.keys = {**self.keys, **fresh.keys}  # never forget a key while values may still use it
        self.active = fresh.active
        self._stamp = stamp
        return True


def _temp_secret(path: Path, data: bytes) -> Path:
    """``data`` written and synced to a fresh 0600 file beside ``path``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 atomically; never overwrite an existing secret."""
    tmp = _temp_secret(path, data)
    try:
        os.link(tmp, path)  # fails if another process created it first
    finally:
        tmp.unlink()


def read_secret_file(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigurationError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    return path.read_bytes()


def replace_secret_file(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (mode 0600): readers see the old or the new file."""
    os.replace(_temp_secret(path, data), path)


def load_keyring(data_dir: Path, env_keys: str | None = None, env_index_key: str | None = None) -> KeyRing:
    """The ring from ``HUIZHEN_DATA_KEY`` (and ``HUIZHEN_INDEX_KEY``) if given, else from ``keys.json``."""
    if env_keys:
        return keyring_from_environment(env_keys, env_index_key)
    if env_index_key:
        raise ConfigurationError("HUIZHEN_INDEX_KEY is only used together with HUIZHEN_DATA_KEY")
    return load_or_create_keyring(data_dir)


def keyring_from_environment(env_keys: str, env_index_key: str | None = None) -> KeyRing:
    """``key[,older_key…]``: base64 256-bit keys, newest first; each key's id is derived from it."""
    raw = [_b64_key(item.strip(), "HUIZHEN_DATA_KEY") for item in env_keys.split(",") if item.strip()]
    if not raw:
        raise ConfigurationError("HUIZHEN_DATA_KEY is empty")
    keys = {"e" + hashlib.sha256(k).hexdigest()[:8]: k for k in raw}
    index_key = (
        _b64_key(env_index_key, "HUIZHEN_INDEX_KEY") if env_index_key
        else HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"huizhen blind index").derive(raw[-1])
    )
    return KeyRing(keys=keys, active=next(iter(keys)), index_key=index_key)


def rotate_key_file(data_dir: Path) -> str:
    """Add a new key to ``keys.json`` and make it active (older keys stay readable); its id."""
    path = data_dir / KEYS_FILE
    ring = _read_key_file(path)
    kid = _new_kid()
    doc = _key_doc({**ring.keys, kid: AESGCM.generate_key(bit_length=256)}, kid, ring.index_key)
    replace_secret_file(path, doc)
    return kid


def retire_old_keys(data_dir: Path) -> list[str]:
    """Drop every key but the active one from ``keys.json`` (after re-encryption); the dropped ids."""
    path = data_dir / KEYS_FILE
    ring = _read_key_file(path)
    old = sorted(k for k in ring.keys if k != ring.active)
    replace_secret_file(path, _key_doc({ring.active: ring.keys[ring.active]}, ring.active, ring.index_key))
    return old


def load_or_create_keyring(data_dir: Path) -> KeyRing:
    path = data_dir / KEYS_FILE
    if not path.exists():
        kid = _new_kid()
        doc = {
            "active": kid,
            "keys": {kid: _b64(AESGCM.generate_key(bit_length=256))},
            "index_key": _b64(secrets.token_bytes(32)),
        }
        try:
            write_secret_file(path, json.dumps(doc, indent=2).encode())
        except FileExistsError:
            pass  # another process won the race; read theirs
    ring = _read_key_file(path)
    ring.source = path
    st = path.stat()
    ring._stamp, ring._checked = (st.st_mtime_ns, st.st_ino), time.monotonic()
    return ring


def _read_key_file(path: Path) -> KeyRing:
    try:
        doc = json.loads(read_secret_file(path))
        keys = {kid: base64.b64decode(v) for kid, v in doc["keys"].items()}
        ring = KeyRing(keys=keys, active=doc["active"], index_key=base64.b64decode(doc["index_key"]))
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigurationError(f"{path} is not a valid Huizhen key file") from exc
    if ring.active not in ring.keys or any(len(k) != 32 for k in keys.values()):
        raise ConfigurationError(f"{path}: active key missing or not 256-bit")
    return ring


def _key_doc(keys: dict[str, bytes], active: str, index_key: bytes) -> bytes:
    doc = {"active": active, "keys": {k: _b64(v) for k, v in keys.items()}, "index_key": _b64(index_key)}
    return json.dumps(doc, indent=2).encode()


def _b64_key(value: str, name: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"{name} must be base64 of a 256-bit key") from exc
    if len(key) != 32:
        raise ConfigurationError(f"{name} must be base64 of a 256-bit key (got {len(key)} bytes)")
    return key


def _new_kid() -> str:
    return "k" + secrets.token_hex(4)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
