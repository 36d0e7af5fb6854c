import os
import time

import jwt
import pytest

from huizhen.rbac.identity import AuthenticationError, TokenService


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(os.urandom(64))


def test_issue_and_verify(tokens: TokenService) -> None:
    p = tokens.verify_header("Bearer " + tokens.issue("u1", ["expert", "coordinator"], "HOSP001"))
    assert (p.sub, p.roles, p.facility) == ("u1", ("expert", "coordinator"), "HOSP001")
    assert p.actor("1.2.3.4:5").source == "1.2.3.4:5"


@pytest.mark.parametrize("header", [None, "", "Basic dTpw", "Bearer ", "Bearer not.a.token"])
def test_missing_or_malformed_header(tokens: TokenService, header: str | None) -> None:
    with pytest.raises(AuthenticationError):
        tokens.verify_header(header)


def test_other_key_is_rejected(tokens: TokenService) -> None:
    forged = TokenService(os.urandom(64)).issue("u1", ["security_officer"])
    with pytest.raises(AuthenticationError, match="invalid token"):
        tokens.verify(forged)


def test_expired_token_is_rejected(tokens: TokenService) -> None:
    with pytest.raises(AuthenticationError, match="expired"):
        tokens.verify(tokens.issue("u1", ["expert"], ttl_s=-120))


def test_alg_none_and_wrong_audience_rejected(tokens: TokenService) -> None:
    now = int(time.time())
    unsigned = jwt.encode({"sub": "u1", "iat": now, "exp": now + 60, "aud": "huizhen", "iss": "huizhen"}, None,
                          algorithm="none")
    with pytest.raises(AuthenticationError):
        tokens.verify(unsigned)
    key = tokens._key
    wrong_aud = jwt.encode({"sub": "u1", "iat": now, "exp": now + 60, "aud": "x", "iss": "huizhen"}, key,
                           algorithm="HS256")
    with pytest.raises(AuthenticationError):
        tokens.verify(wrong_aud)


def test_roles_must_be_strings(tokens: TokenService) -> None:
    now = int(time.time())
    bad = jwt.encode({"sub": "u", "iat": now, "exp": now + 60, "aud": "huizhen", "iss": "huizhen", "roles": "admin"},
                     tokens._key, algorithm="HS256")
    with pytest.raises(AuthenticationError, match="roles"):
        tokens.verify(bad)


def test_short_key_refused() -> None:
    with pytest.raises(ValueError):
        TokenService(b"short")
