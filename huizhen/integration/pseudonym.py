"""Stable keyed pseudonyms for patients: exports and the teaching-case library.

A pseudonym is HMAC-SHA256 of the patient's Huizhen id under a dedicated key
(``pseudonym.key`` in the data folder, 0600, or ``HUIZHEN_PSEUDONYM_KEY``),
never a bare hash: ``sha256(patient_id)`` can be reversed by hashing every
candidate id, while without the key every candidate is equally likely. The
key is separate from the data and blind-index keys, so a published teaching
case reveals nothing that helps against either of them, and it never rotates
(a rotated key would break the link between a patient's earlier and later
exports, which is the point of a *stable* pseudonym).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from pathlib import Path

from huizhen.integration.crypto import read_secret_file, write_secret_file
from huizhen.integration.errors import ConfigurationError

PSEUDONYM_KEY_FILE = "pseudonym.key"
_PREFIX = "HZP-"
_LENGTH = 20  # base32 characters: 100 bits, collision-free at any realistic patient count


class Pseudonymizer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ConfigurationError("the pseudonym key must be at least 256 bits")
        self._key = key

    def of(self, patient_id: str) -> str:
        """``HZP-`` and 20 base32 characters; the same id gives the same pseudonym under one key."""
        digest = hmac.new(self._key, b"patient\x1f" + patient_id.encode("utf-8"), hashlib.sha256).digest()
        return _PREFIX + base64.b32encode(digest).decode("ascii")[:_LENGTH]


def load_pseudonymizer(data_dir: Path, env_key: str | None = None) -> Pseudonymizer:
    """From ``env_key`` (base64, ``HUIZHEN_PSEUDONYM_KEY``) or the data folder's key file (created once)."""
    if env_key:
        try:
            return Pseudonymizer(base64.b64decode(env_key, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise ConfigurationError("HUIZHEN_PSEUDONYM_KEY must be base64 of at least 32 bytes") from exc
    path = data_dir / PSEUDONYM_KEY_FILE
    if not path.exists():
        try:
            write_secret_file(path, base64.b64encode(secrets.token_bytes(32)))
        except FileExistsError:
            pass  # another process created it first
    return Pseudonymizer(base64.b64decode(read_secret_file(path)))
