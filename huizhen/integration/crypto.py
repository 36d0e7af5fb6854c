"""Patient data at rest: AES-256-GCM under a key ring, and a keyed blind index.

Ciphertext layout: ``b"\\x01" | len(kid) | kid | nonce(12) | ciphertext+tag``.
The key id travels with every value, so a new active key can be introduced
and old values re-encrypted in the background while both stay readable.

Exact-match search over encrypted values (identifiers, names) goes through a
blind index: HMAC-SHA256 of the normalised value under a separate index key,
never through plaintext.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from huizhen.integration.errors import ConfigurationError, HuizhenError

_VERSION = 1
KEYS_FILE = "keys.json"


class DecryptionError(HuizhenError):
    """A value that does not decrypt: unknown key id or tampered bytes."""


@dataclass(frozen=True)
class KeyRing:
    keys: dict[str, bytes]  # kid -> 32-byte AES key
    active: str
    index_key: bytes
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
        return self.encrypt(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8"))

    def decrypt_json(self, blob: bytes) -> Any:
        return json.loads(self.decrypt(blob))

    def blind_index(self, *parts: str) -> str:
        """Keyed, deterministic token for exact-match search (case/width-folded)."""
        norm = "\x1f".join(unicodedata.normalize("NFKC", p).strip().casefold() for p in parts)
        return hmac.digest(self.index_key, norm.encode("utf-8"), hashlib.sha256).hex()

    def key_id_of(self, blob: bytes) -> str:
        return blob[2 : 2 + blob[1]].decode()


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 atomically; never overwrite an existing secret."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process created it first
    finally:
        tmp.unlink()


def read_secret_file(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigurationError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    return path.read_bytes()


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
    try:
        doc = json.loads(read_secret_file(path))
        keys = {kid: base64.b64decode(v) for kid, v in doc["keys"].items()}
        ring = KeyRing(keys=keys, active=doc["active"], index_key=base64.b64decode(doc["index_key"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"{path} is not a valid Huizhen key file") from exc
    if ring.active not in ring.keys or any(len(k) != 32 for k in keys.values()):
        raise ConfigurationError(f"{path}: active key missing or not 256-bit")
    return ring


def _new_kid() -> str:
    return "k" + secrets.token_hex(4)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
