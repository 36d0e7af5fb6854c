"""ICE servers for a peer: STUN URLs as configured, TURN with time-limited REST credentials.

The TURN REST API scheme (coturn ``use-auth-secret``): username
``<expiry unix time>:<peer id>``, password ``base64(HMAC-SHA1(secret, username))``.
The TURN server recomputes the password from the shared secret, so no static
password is ever handed out, and a credential stops working at its expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class IceConfig:
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl_s: int = 43200


def turn_credential(secret: str, peer_id: str, expiry: int) -> tuple[str, str]:
    username = f"{expiry}:{peer_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(config: IceConfig, peer_id: str, now: float) -> list[dict[str, Any]]:
    """The ``iceServers`` of an ``RTCConfiguration`` for this peer; no TURN entry without a secret."""
    servers: list[dict[str, Any]] = []
    if config.stun_urls:
        servers.append({"urls": list(config.stun_urls)})
    if config.turn_urls and config.turn_secret:
        username, password = turn_credential(config.turn_secret, peer_id, int(now) + config.turn_ttl_s)
        servers.append({"urls": list(config.turn_urls), "username": username, "credential": password})
    return servers


def split_urls(value: str | None) -> tuple[str, ...]:
    return tuple(u.strip() for u in (value or "").split(",") if u.strip())
