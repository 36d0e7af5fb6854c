"""OIDC tokens verified against a real JWKS served over HTTP: RS256/ES256, rotation, forgeries."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from huizhen.rbac.identity import AuthenticationError, TokenService
from huizhen.rbac.oidc import REFRESH_AFTER_S, OidcVerifier
from tests.helpers import GraphQLClient, running_server

ISSUER, AUDIENCE = "https://idp.example/realms/huizhen", "huizhen-api"
ROLE_MAP = {"doctor": "primary_doctor", "consultant": "expert"}


@dataclass
class Provider:
    """An identity provider's JWKS endpoint, with the private keys it signs with."""

    url: str = ""
    private: dict[str, Any] = field(default_factory=dict)  # kid -> private key
    published: list[str] = field(default_factory=list)  # kids in the JWKS
    requests: int = 0
    hold: threading.Event | None = None  # set: the JWKS is answered only once the event is set
    held: threading.Event = field(default_factory=threading.Event)  # a request is being held

    def add_key(self, kid: str, kind: str = "RSA", publish: bool = True) -> None:
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "RSA" else (
            ec.generate_private_key(ec.SECP256R1())
        )
        self.private[kid] = key
        if publish:
            self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            key = self.private[kid]
            if isinstance(key, rsa.RSAPrivateKey):
                jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
                jwk["alg"] = "RS256"
            else:
                jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
                jwk["alg"] = "ES256"
            keys.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": keys}

    def token(self, kid: str, *, sign_with: str | None = None, ttl: int = 300, **claims: Any) -> str:
        key = self.private[sign_with or kid]
        alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-1", "iat": now, "exp": now + ttl, **claims}
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            p.requests += 1
            if p.hold is not None:
                p.held.set()
                p.hold.wait(10)
            body = json.dumps(p.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    p.url = f"http://127.0.0.1:{server.server_address[1]}/certs"
    p.add_key("rsa-1")
    p.add_key("ec-1", "EC")
    yield p
    server.shutdown()
    server.server_close()


def verifier(provider: Provider, min_refetch_s: float = 0.0) -> OidcVerifier:
    return OidcVerifier(ISSUER, AUDIENCE, provider.url, role_map=ROLE_MAP, roles_claim="realm_access.roles",
                        min_refetch_s=min_refetch_s)


def test_rs256_and_es256_tokens_with_mapped_roles(provider: Provider) -> None:
    v = verifier(provider)
    p = v.verify(provider.token("rsa-1", realm_access={"roles": ["doctor", "admin", "offline"]}, facility="QSWSY"))
    assert (p.sub, p.roles, p.facility) == ("u-1", ("primary_doctor",), "QSWSY")  # unmapped roles ignored
    assert v.verify(provider.token("ec-1", realm_access={"roles": ["consultant"]})).roles == ("expert",)
    assert provider.requests == 1  # keys cached


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "another-api"}, "(?i)audience"),
        ({"iss": "https://evil.example"}, "(?i)issuer"),
        ({"ttl": -120}, "expired"),
    ],
)
def test_wrong_audience_issuer_and_expiry_refused(provider: Provider, claims: dict[str, Any], reason: str) -> None:
    ttl = claims.pop("ttl", 300)
    with pytest.raises(AuthenticationError, match=reason):
        verifier(provider).verify(provider.token("rsa-1", ttl=ttl, **claims))


def test_forged_tokens_signed_with_another_key_are_refused(provider: Provider) -> None:
    v = verifier(provider, min_refetch_s=60)
    provider.add_key("attacker", publish=False)
    forged_role = provider.token("rsa-1", sign_with="attacker", realm_access={"roles": ["consultant"]})
    with pytest.raises(AuthenticationError, match="Signature verification failed"):
        v.verify(forged_role)  # a real kid, another key's valid signature
    with pytest.raises(AuthenticationError, match="unknown signing key"):
        v.verify(provider.token("attacker", realm_access={"roles": ["consultant"]}))
    # an RS256 kid presented as ES256, and HS256 with the public key as the secret
    with pytest.raises(AuthenticationError):
        v.verify(provider.token("ec-1", sign_with="rsa-1"))
    public_pem = provider.jwks()["keys"][0]["n"]
    hs = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60}, public_pem * 2,
                    algorithm="HS256", headers={"kid": "rsa-1"})
    with pytest.raises(AuthenticationError, match="algorithm"):
        v.verify(hs)


def test_provider_key_rotation_refetches_at_a_limited_rate(provider: Provider) -> None:
    v = verifier(provider, min_refetch_s=60)
    v.verify(provider.token("rsa-1"))
    assert provider.requests == 1
    for _ in range(5):  # unknown kids: at most one refetch per interval, however many tokens
        with pytest.raises(AuthenticationError, match="unknown signing key"):
            v.verify(provider.token("rsa-9", sign_with="rsa-1"))
    assert provider.requests == 1  # fetched less than a minute ago: no refetch
    provider.add_key("rsa-2")
    provider.published.remove("rsa-1")
    v.min_refetch_s = 0  # the interval has passed
    assert v.verify(provider.token("rsa-2")).sub == "u-1"
    assert provider.requests == 2
    v.verify(provider.token("rsa-2"))
    assert provider.requests == 2
    with pytest.raises(AuthenticationError, match="unknown signing key"):
        v.verify(provider.token("rsa-1"))  # the retired key is gone after the refetch


async def test_on_an_event_loop_an_unknown_key_is_fetched_without_waiting(provider: Provider) -> None:
    """A provider that is slow to answer must not stall the loop: the token with the new key is
    refused at once ("retry"), the keys are fetched on a thread, and the next token is accepted."""
    v = verifier(provider)  # no interval: a refetch may start at once
    v.refresh()
    provider.add_key("rsa-2")
    provider.hold = threading.Event()
    try:
        with pytest.raises(AuthenticationError, match="being fetched again; retry"):
            v.verify(provider.token("rsa-2"))
        assert await asyncio.to_thread(provider.held.wait, 10)  # the fetch now waits for the provider
        for _ in range(2):  # neither waits for that fetch, nor starts another
            with pytest.raises(AuthenticationError, match="being fetched again; retry"):
                v.verify(provider.token("rsa-2"))
        assert provider.requests == 2
    finally:
        provider.hold.set()  # the provider answers only now: verify did not wait for it
    v.wait_for_fetch(10)
    assert provider.requests == 2
    assert v.verify(provider.token("rsa-2")).sub == "u-1"
    v.min_refetch_s = 60
    with pytest.raises(AuthenticationError, match=r"unknown signing key 'rsa-9'$"):
        v.verify(provider.token("rsa-9", sign_with="rsa-1"))  # refetched less than a minute ago: refused as is
    assert provider.requests == 2


def test_old_keys_are_refetched_in_the_background(provider: Provider) -> None:
    """Providers publish a key before signing with it: keys kept longer than REFRESH_AFTER_S are
    fetched again while tokens keep being verified, so a rotation finds the new key known."""
    v = verifier(provider, min_refetch_s=60)
    assert v.verify(provider.token("rsa-1")).sub == "u-1"
    provider.add_key("rsa-2")
    v._fetched_at -= REFRESH_AFTER_S  # as if the keys were fetched ten minutes ago
    assert v.verify(provider.token("rsa-1")).sub == "u-1"  # answered from the cache; the refetch runs beside
    v.wait_for_fetch(10)
    assert provider.requests == 2
    assert v.verify(provider.token("rsa-2")).sub == "u-1"
    assert provider.requests == 2


def test_hs256_still_works_beside_oidc(provider: Provider) -> None:
    tokens = TokenService(b"k" * 32, external=verifier(provider))
    assert tokens.verify(tokens.issue("admin-1", ["security_officer"])).roles == ("security_officer",)
    assert tokens.verify(provider.token("rsa-1", realm_access={"roles": ["doctor"]})).roles == ("primary_doctor",)
    with pytest.raises(AuthenticationError):
        tokens.verify("not.a.token")


async def test_graphql_accepts_provider_tokens(provider: Provider, tmp_path: Path, db_url: str) -> None:
    settings = {
        "oidc_issuer": ISSUER, "oidc_audience": AUDIENCE, "oidc_jwks_url": provider.url,
        "oidc_roles_claim": "realm_access.roles", "oidc_role_map": "doctor=primary_doctor,consultant=expert",
    }
    async with running_server(tmp_path / "d", db_url, **settings) as server:
        oidc = GraphQLClient(server.base_url, provider.token("rsa-1", realm_access={"roles": ["doctor"]},
                                                            facility="QSWSY"))
        own = GraphQLClient(server.base_url, server.services.tokens.issue("sec-1", ["security_officer"]))
        provider.add_key("attacker", publish=False)
        forged = GraphQLClient(server.base_url, provider.token("rsa-1", sign_with="attacker",
                                                              realm_access={"roles": ["consultant"]}))
        try:
            me = (await oidc.execute("{ me { id roles facility } }"))["me"]
            assert me == {"id": "u-1", "roles": ["primary_doctor"], "facility": "QSWSY"}
            assert (await own.execute("{ me { roles } }"))["me"]["roles"] == ["security_officer"]
            assert (await forged.raw("{ me { id } }")).status_code == 401
        finally:
            for c in (oidc, own, forged):
                await c.http.aclose()
