"""Tokens of an external OpenID Connect identity provider, verified against its JWKS.

Settings: ``oidc_issuer``, ``oidc_audience``, ``oidc_jwks_url``, and how
claims become Huizhen roles (``oidc_roles_claim``, a dotted path such as
``realm_access.roles``; ``oidc_role_map``, ``IDP_ROLE=huizhen_role,…``; roles
the map does not name are ignored, so the provider cannot grant a role by
inventing its name) and the facility (``oidc_facility_claim``).

Only RS256 and ES256 are accepted, each only with a key of its own type from
the provider's JWKS: a token can never pick HS256 with the public key as the
secret. Keys are cached; a token naming an unknown ``kid`` (the provider
rotated its keys) refetches the JWKS, at most once per
``oidc_jwks_min_refetch_seconds``, so a flood of forged key ids cannot turn
the server into a load generator against the provider.

The fetch never runs on an event loop's thread: a slow or unreachable
provider would stall every request of the process for up to the fetch's
timeout (and a stream of made-up key ids could repeat that every interval).
On a loop, a token with an unknown ``kid`` starts the refetch on a thread of
its own and is refused at once ("retry"); the next token finds the new keys.
So that a rotation seldom gets that far, keys older than
``REFRESH_AFTER_S`` are refetched in the background, as providers publish a
new key before they sign with it. Off a loop (the CLI, tests, start-up) the
fetch is synchronous, with a short timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.request
from typing import Any

import jwt
from jwt import PyJWK, PyJWKSet

from huizhen.integration.errors import ConfigurationError
from huizhen.rbac.identity import AuthenticationError, Principal
from huizhen.settings import Settings, parse_pairs

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "ES256")
_LEEWAY_S = 30
_FETCH_TIMEOUT_S = 5.0
_MAX_JWKS_BYTES = 1024 * 1024
REFRESH_AFTER_S = 600.0  # keys this old are refetched in the background while tokens keep being verified


class OidcVerifier:
    def __init__(
        self, issuer: str, audience: str, jwks_url: str, *, role_map: dict[str, str],
        roles_claim: str = "roles", facility_claim: str = "facility", min_refetch_s: float = 30.0,
    ) -> None:
        self.issuer, self.audience, self.jwks_url = issuer, audience, jwks_url
        self.role_map, self.roles_claim, self.facility_claim = role_map, roles_claim, facility_claim
        self.min_refetch_s = min_refetch_s
        self.fetches = 0
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = float("-inf")
        # Two locks, so that a loop's thread never waits for the network: ``_fetch_lock`` is held
        # for a whole synchronous fetch (off a loop only); ``_lock`` only for a moment, to start
        # a background fetch once.
        self._fetch_lock = threading.Lock()
        self._lock = threading.Lock()
        self._fetcher: threading.Thread | None = None  # a background fetch in progress

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcVerifier | None:
        if not settings.oidc_jwks_url:
            return None
        if not settings.oidc_issuer or not settings.oidc_audience:
            raise ConfigurationError("oidc_jwks_url needs oidc_issuer and oidc_audience")
        return cls(
            settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks_url,
            role_map=parse_pairs(settings.oidc_role_map), roles_claim=settings.oidc_roles_claim,
            facility_claim=settings.oidc_facility_claim, min_refetch_s=settings.oidc_jwks_min_refetch_seconds,
        )

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError(f"invalid token: {exc}") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise AuthenticationError(f"invalid token: algorithm {alg!r} not accepted from the identity provider")
        if not isinstance(kid, str):
            raise AuthenticationError("invalid token: no key id (kid)")
        key = self._key(kid)
        if key.algorithm_name != alg:
            raise AuthenticationError(f"invalid token: key {kid!r} is not a {alg} key")
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer, leeway=_LEEWAY_S,
                options={"require": ["sub", "exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationError("token expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError(f"invalid token: {exc}") from exc
        facility = claims.get(self.facility_claim)
        return Principal(
            sub=str(claims["sub"]), roles=self._roles(claims),
            facility=facility if isinstance(facility, str) and facility else None,
        )

    def refresh(self) -> None:
        """Fetch the JWKS now (start-up, off a loop); failures are logged, the next unknown kid retries."""
        with self._fetch_lock:
            self._fetch()

    def _key(self, kid: str) -> PyJWK:
        key = self._keys.get(kid)
        if key is not None:
            if time.monotonic() - self._fetched_at >= REFRESH_AFTER_S:
                self._fetch_in_background()
            return key
        if _on_event_loop():
            if self._fetch_in_background():
                raise AuthenticationError(
                    f"invalid token: unknown signing key {kid!r} (the provider's keys are being fetched again; "
                    "retry shortly)"
                )
        else:
            with self._fetch_lock:
                if kid not in self._keys and time.monotonic() - self._fetched_at >= self.min_refetch_s:
                    self._fetch()
        key = self._keys.get(kid)
        if key is None:
            raise AuthenticationError(f"invalid token: unknown signing key {kid!r}")
        return key

    def _fetch_in_background(self) -> bool:
        """Start a fetch on a thread of its own unless one runs or the last began less than
        ``min_refetch_s`` ago; whether a fetch is now in progress."""
        with self._lock:
            if self._fetcher is not None and self._fetcher.is_alive():
                return True
            if time.monotonic() - self._fetched_at < self.min_refetch_s:
                return False
            self._fetched_at = time.monotonic()  # the rate limit counts from the start, as ``_fetch`` does
            # not ``refresh``: a synchronous fetch holding ``_fetch_lock`` must not make it wait
            self._fetcher = threading.Thread(target=self._fetch, name="oidc-jwks", daemon=True)
            self._fetcher.start()
            return True

    def wait_for_fetch(self, timeout: float | None = None) -> None:
        """Wait for a background fetch, if one runs (tests, shutdown)."""
        fetcher = self._fetcher
        if fetcher is not None:
            fetcher.join(timeout)

    def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        self.fetches += 1
        try:
            request = urllib.request.Request(self.jwks_url, headers={"Accept": "application/json"})
            with urllib.request.urlopen(request, timeout=_FETCH_TIMEOUT_S) as response:
                document = json.loads(response.read(_MAX_JWKS_BYTES))
            keys = PyJWKSet.from_dict(document).keys
        except (OSError, ValueError, jwt.PyJWKError, jwt.PyJWKSetError) as exc:
            log.warning("cannot fetch the OIDC JWKS: %s", exc, extra={"url": self.jwks_url})
            return
        self._keys = {k.key_id: k for k in keys if k.key_id and k.algorithm_name in ALGORITHMS}
        log.info("OIDC JWKS fetched", extra={"keys": len(self._keys)})

    def _roles(self, claims: dict[str, Any]) -> tuple[str, ...]:
        value: Any = claims
        for part in self.roles_claim.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        names = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
        return tuple(sorted({self.role_map[n] for n in names if isinstance(n, str) and n in self.role_map}))


def _on_event_loop() -> bool:
    """Whether this thread runs an asyncio event loop (a blocking call here would stall it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
