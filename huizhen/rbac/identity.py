"""Identity: HS256 JWTs signed with a key generated into the data folder.

Claims: ``sub`` (the user's Huizhen id), ``roles`` (list), ``facility`` (the
facility code a role applies in), ``iat``/``exp``, ``iss``/``aud``. A token
that is missing, malformed, badly signed, expired or for another audience is
an :class:`AuthenticationError`; nothing about the token is trusted before
its signature and expiry are checked.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import jwt

from huizhen.integration.crypto import read_secret_file, write_secret_file
from huizhen.integration.errors import HuizhenError
from huizhen.integration.model import Actor

SIGNING_KEY_FILE = "jwt-signing.key"
ISSUER = "huizhen"
AUDIENCE = "huizhen"
_LEEWAY_S = 30


class AuthenticationError(HuizhenError):
    code = "UNAUTHENTICATED"


@dataclass(frozen=True)
class Principal:
    sub: str
    roles: tuple[str, ...]
    facility: str | None

    def actor(self, source: str | None = None) -> Actor:
        return Actor(id=self.sub, roles=self.roles, facility=self.facility, source=source)


class ExternalVerifier(Protocol):
    """Tokens not signed by us (huizhen.rbac.oidc.OidcVerifier)."""

    def verify(self, token: str) -> Principal: ...


class TokenService:
    def __init__(self, key: bytes, default_ttl_s: int = 3600, external: ExternalVerifier | None = None) -> None:
        if len(key) < 32:
            raise ValueError("HS256 signing key must be at least 256 bits")
        self._key = key
        self.default_ttl_s = default_ttl_s
        self.external = external  # an OIDC provider's tokens (RS256/ES256), beside our own HS256

    def issue(
        self, sub: str, roles: list[str] | tuple[str, ...], facility: str | None = None,
        ttl_s: int | None = None,
    ) -> str:
        now = int(time.time())
        claims = {
            "sub": sub, "roles": list(roles), "iat": now, "exp": now + (ttl_s or self.default_ttl_s),
            "iss": ISSUER, "aud": AUDIENCE,
        }
        if facility:
            claims["facility"] = facility
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str) -> Principal:
        if self.external is not None and _algorithm(token) != "HS256":
            return self.external.verify(token)
        try:
            claims = jwt.decode(
                token, self._key, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER,
                leeway=_LEEWAY_S, options={"require": ["sub", "exp", "iat"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationError("token expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError(f"invalid token: {exc}") from exc
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthenticationError("invalid token: roles must be a list of strings")
        facility = claims.get("facility")
        return Principal(sub=str(claims["sub"]), roles=tuple(roles), facility=facility if facility else None)

    def verify_header(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthenticationError("missing Authorization: Bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("Authorization header must be 'Bearer <token>'")
        return self.verify(token.strip())


def _algorithm(token: str) -> object:
    try:
        return jwt.get_unverified_header(token).get("alg")
    except jwt.InvalidTokenError as exc:
        raise AuthenticationError(f"invalid token: {exc}") from exc


def load_or_create_signing_key(data_dir: Path) -> bytes:
    path = data_dir / SIGNING_KEY_FILE
    if not path.exists():
        try:
            write_secret_file(path, base64.b64encode(secrets.token_bytes(64)))
        except FileExistsError:
            pass
    return base64.b64decode(read_secret_file(path))
