"""The HIS FHIR servers Huizhen pulls from and pushes to, one per facility, and their channel state.

Configured by ``fhir_his_servers`` (``HUIZHEN_FHIR_HIS_SERVERS``): a TOML file
with one table per facility code. Secrets are never in it, only the files that
hold them (paths relative to the TOML file; keep them mode 0600)::

    [QSWSY]                                   # facility code
    base_url = "https://his.qswsy.example.cn/fhir"
    token_file = "secrets/qswsy.token"        # a static bearer token, or:
    # token_url = "https://his.qswsy.example.cn/auth/token"   SMART Backend Services
    # client_id = "huizhen"
    # private_key_file = "secrets/qswsy-private.pem"          private_key_jwt signing key (PEM)
    # key_id = "huizhen-2026"                 # algorithm = "RS384" (default), scope = "system/*.read …"
    timeout_seconds = 10

Each server is the outbound channel ``fhir-out:<FACILITY>`` in GraphQL
``channels``: ``idle`` until first used, then ``up`` or ``failing`` with the
last error (connection refused, timeout, 5xx or 429 after every retry).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from huizhen.adapters.fhir_client import Auth, BearerToken, FhirClient, Health, Retry, SmartBackend
from huizhen.integration.errors import ConfigurationError, NotFound
from huizhen.integration.model import Consultation
from huizhen.mappings.fhir.render import JSON

CHANNEL_PREFIX: Final = "fhir-out:"


class _ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(pattern=r"^https?://")
    token_file: Path | None = None
    token_url: str | None = Field(default=None, pattern=r"^https?://")
    client_id: str | None = None
    private_key_file: Path | None = None
    key_id: str | None = None
    algorithm: str = "RS384"
    scope: str = "system/*.read system/*.write"
    timeout_seconds: float = Field(default=10.0, gt=0)
    retry_attempts: int = Field(default=4, ge=1, le=10)  # on 429/5xx/no connection, with backoff
    patient_identifier_system: str | None = None  # the HIS's MRN system: how pushed resources name the patient

    @model_validator(mode="after")
    def _one_auth(self) -> _ServerConfig:
        smart = (self.token_url, self.client_id, self.private_key_file)
        if self.token_file is None and not all(smart):
            raise ValueError("needs token_file, or token_url + client_id + private_key_file (SMART backend services)")
        if self.token_file is not None and any(smart):
            raise ValueError("token_file and SMART backend services settings exclude each other")
        return self


@dataclass(frozen=True)
class HisServer:
    facility: str
    base_url: str
    auth: Auth
    timeout_s: float
    retry: Retry
    patient_identifier_system: str | None = None

    @property
    def channel(self) -> str:
        return CHANNEL_PREFIX + self.facility


def load_his_servers(path: Path) -> dict[str, HisServer]:
    """The servers of the TOML file; a :class:`ConfigurationError` naming the facility and key otherwise."""
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"fhir_his_servers {path}: {exc}") from exc
    servers = {}
    for facility, table in tables.items():
        try:
            config = _ServerConfig.model_validate(table)
            auth = _auth(config, path.parent)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigurationError(
                f"fhir_his_servers {path} [{facility}]{' ' + where if where else ''}: {first['msg']}"
            ) from exc
        except OSError as exc:
            raise ConfigurationError(f"fhir_his_servers {path} [{facility}]: {exc}") from exc
        servers[facility] = HisServer(facility, config.base_url, auth, config.timeout_seconds,
                                      Retry(attempts=config.retry_attempts), config.patient_identifier_system)
    return servers


def _auth(config: _ServerConfig, here: Path) -> Auth:
    if config.token_file is not None:
        return BearerToken((here / config.token_file).read_text(encoding="utf-8").strip())
    if config.token_url is None or config.client_id is None or config.private_key_file is None:
        raise ConfigurationError("SMART backend services needs token_url, client_id and private_key_file")
    return SmartBackend(
        config.token_url, config.client_id, (here / config.private_key_file).read_text(encoding="utf-8"),
        algorithm=config.algorithm, scope=config.scope, key_id=config.key_id,
    )


class HisClients:
    """One :class:`FhirClient` per configured facility; reports each one's health to ``on_health``."""

    def __init__(self, servers: dict[str, HisServer], on_health: Callable[[str, Health], None]) -> None:
        self.servers, self.on_health = servers, on_health
        self._clients: dict[str, FhirClient] = {}

    def client(self, facility: str) -> FhirClient:
        server = self.servers.get(facility)
        if server is None:
            raise NotFound("HIS FHIR server of facility", facility)
        found = self._clients.get(facility)
        if found is None:
            found = FhirClient(server.base_url, server.auth, timeout=server.timeout_s, retry=server.retry,
                               on_health=lambda health: self.on_health(server.channel, health))
            self._clients[facility] = found
        return found

    async def push_consultation(self, facility: str, c: Consultation, subject: str | None = None) -> list[JSON | None]:
        """A completed consultation's Encounter and DiagnosticReport, to the requesting facility's HIS."""
        return await self.client(facility).push_consultation(c, subject)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
