"""Settings: ``config/huizhen.toml`` defaults, ``--config FILE``, ``HUIZHEN_*`` environment.

Precedence, lowest first: built-in defaults, the config file, the environment.
A bad value stops start-up with one line naming the setting and what it allows
(:class:`ConfigurationError`); nothing is validated with ``assert``.
"""

from __future__ import annotations

import codecs
import ipaddress
import os
import tomllib
import zoneinfo
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from huizhen.integration.errors import ConfigurationError
from huizhen.integration.model import Urgency
from huizhen.integration.sla import SlaTargets

ENV_PREFIX = "HUIZHEN_"
POSTGRES_MLLP_WORKERS = 2  # the default of mllp_workers on PostgreSQL (with more than one core)
_PROJECT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "huizhen.toml"


def default_config_file() -> Path | None:
    """``./config/huizhen.toml`` if present, else the one beside the package."""
    for candidate in (Path.cwd() / "config" / "huizhen.toml", _PROJECT_CONFIG):
        if candidate.exists():
            return candidate
    return None


def parse_addresses(value: str | None, *, max_key: int = 64) -> dict[str, tuple[str, int]]:
    """``KEY=host:port,KEY2=[::1]:port`` as key -> (host, port); ValueError names the bad item."""
    out: dict[str, tuple[str, int]] = {}
    for item in filter(None, (value or "").split(",")):
        key, sep, address = item.partition("=")
        host, colon, port = address.strip().rpartition(":")
        key, host = key.strip(), host.strip("[]")
        if not (sep and colon and 0 < len(key) <= max_key and host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"bad item {item.strip()!r}")
        out[key] = (host, int(port))
    return out


def parse_pairs(value: str | None) -> dict[str, str]:
    """``NAME=VALUE,NAME2=VALUE2`` as a dict; ValueError names the bad item."""
    out: dict[str, str] = {}
    for item in filter(None, (value or "").split(",")):
        name, sep, val = item.partition("=")
        if not sep or not name.strip() or not val.strip():
            raise ValueError(f"bad item {item.strip()!r}")
        out[name.strip()] = val.strip()
    return out


def parse_pacs(value: str | None) -> dict[str, tuple[str, str, int]]:
    """``FACILITY=AE@host:port,…`` as facility code -> (AE title, host, port); ValueError names the bad item."""
    out: dict[str, tuple[str, str, int]] = {}
    for item in filter(None, (value or "").split(",")):
        facility, sep, rest = item.partition("=")
        ae, at, address = rest.partition("@")
        if not (sep and at and 0 < len(ae.strip()) <= 16):
            raise ValueError(f"bad item {item.strip()!r}")
        [(key, (host, port))] = parse_addresses(f"{facility}={address}").items()
        out[key] = (ae.strip(), host, port)
    return out


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseModel):
    """Every key here is also ``HUIZHEN_<KEY>`` in the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: Environment = Environment.DEVELOPMENT
    data_dir: Path = Path("./huizhen-data")
    database_url: str | None = None  # None: SQLite in the data folder
    broker_url: str | None = None  # None: in-process bus
    host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    mllp_port: int = Field(default=2575, ge=0, le=65535)
    dicom_port: int = Field(default=11112, ge=0, le=65535)
    dicom_ae: str = Field(default="HUIZHEN", min_length=1, max_length=16)
    dicom_peers: str | None = None
    timezone: str = "Asia/Shanghai"
    token_ttl_seconds: int = Field(default=3600, gt=0)
    break_glass_ttl_seconds: int = Field(default=3600, gt=0)  # a clinician's emergency access expires by itself
    log_level: str = "INFO"
    graphiql: bool | None = None  # None: on in development, off in production
    max_query_depth: int = Field(default=12, gt=0)
    # TLS for every listener (HTTP, MLLP, DICOM) from one certificate
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None  # set: peers may present a client certificate (mutual TLS)
    # HL7 v2 over MLLP
    mllp_max_frame_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    mllp_idle_timeout_seconds: float = Field(default=600.0, gt=0)
    mllp_stall_timeout_seconds: float = Field(default=30.0, gt=0)  # inside a frame: a sender that stopped mid-message
    mllp_max_connections: int = Field(default=256, ge=1)
    mllp_require_client_cert: bool = False
    # processes serving MLLP on the one port (this one accepts and hands each connection to the least busy):
    # this one plus mllp_workers - 1 children.
    # Unset: 2 on PostgreSQL when the machine has a second core, else 1 (see _default_mllp_workers)
    mllp_workers: int = Field(default=1, ge=1, le=32)
    # processes serving HTTP (GraphQL, FHIR, DICOMweb, signaling) on the one port, the same way
    http_workers: int = Field(default=1, ge=1, le=32)
    hl7_processing_id: str | None = None  # P, D or T: refuse (AR) messages of another MSH-11; none: accept any
    mappings_dir: Path | None = None  # code tables (CSV); default: config/mappings beside the config file
    rbac_dir: Path | None = None  # model.conf and the seed policy.csv; default: config/rbac beside the config file
    hl7_validate_senders: str | None = None  # comma-separated MSH-4 (or MSH-3^MSH-4): validated with hl7apy
    hl7_report_endpoints: str | None = None  # FAC=host:port,…: where the ORU report back goes, per facility
    # keys from the environment instead of the data folder (see huizhen/integration/crypto.py)
    data_key: SecretStr | None = None  # base64 256-bit keys, newest first, comma-separated
    index_key: SecretStr | None = None  # base64 256-bit blind-index key (with data_key)
    pseudonym_key: SecretStr | None = None  # base64 ≥256-bit key for patient pseudonyms
    # OIDC: tokens of an external identity provider, verified by its JWKS (RS256/ES256)
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_roles_claim: str = "roles"  # dotted path into the claims, e.g. realm_access.roles
    oidc_role_map: str | None = None  # IDP_ROLE=huizhen_role,…; roles not listed are ignored
    oidc_facility_claim: str = "facility"
    oidc_jwks_min_refetch_seconds: float = Field(default=30.0, ge=0)  # unknown kid: refetch at most this often
    # MLLP senders by connection: who is which facility (MSH-4 must agree)
    mllp_sender_certs: str | None = None  # CN_OR_DNS_SAN=FACILITY,…  (mutual TLS)
    mllp_sender_addresses: str | None = None  # IP_OR_CIDR=FACILITY,…
    # FHIR R4 at /fhir
    fhir_max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)  # larger requests: 413
    fhir_his_servers: Path | None = None  # TOML, a table per facility: the HIS FHIR servers (adapters/fhir_his.py)
    # consultation services: response-time targets per urgency (minutes), coverage rules
    sla_assign_minutes: str = "CRITICAL=5,URGENT=15,ROUTINE=1440"  # submission → expert assigned
    sla_start_minutes: str = "CRITICAL=15,URGENT=60,ROUTINE=1440"  # assignment → consultation started
    sla_check_interval_seconds: float = Field(default=30.0, gt=0)
    coverage_rules_file: Path | None = None  # default: config/coverage.toml beside the config file

    @model_validator(mode="before")
    @classmethod
    def _default_mllp_workers(cls, data: Any) -> Any:
        """On PostgreSQL a second MLLP process pays off (measured with ``bench/hl7_ingest.py``:
        785 → 866 messages/s with 4 senders on 2 cores): its writes run beside the first's, where
        SQLite's single writer gains little from it. An explicit setting always wins."""
        if isinstance(data, dict) and data.get("mllp_workers") is None:
            url = str(data.get("database_url") or "")
            if url.startswith("postgresql") and (os.cpu_count() or 1) > 1:
                return {**data, "mllp_workers": POSTGRES_MLLP_WORKERS}
        return data

    @field_validator("sla_assign_minutes", "sla_start_minutes")
    @classmethod
    def _sla(cls, v: str) -> str:
        try:
            targets = {Urgency(k): float(m) for k, m in parse_pairs(v).items()}
        except ValueError as exc:
            raise ValueError(f"must be URGENCY=MINUTES,… with urgencies ROUTINE, URGENT, CRITICAL ({exc})") from None
        if any(m <= 0 for m in targets.values()):
            raise ValueError("minutes must be positive")
        return v

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, v: str | None) -> str | None:
        if v and not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return v or None

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, v: str | None) -> str | None:
        if v and not v.startswith(("redis://", "rediss://")):
            raise ValueError("must start with redis:// or rediss://")
        return v or None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("must be an IANA time zone such as Asia/Shanghai") from exc
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        allowed = ("DEBUG", "INFO", "WARNING", "ERROR")
        if v.upper() not in allowed:
            raise ValueError(f"allowed: {', '.join(allowed)}")
        return v.upper()

    @field_validator("dicom_peers")
    @classmethod
    def _peers(cls, v: str | None) -> str | None:
        for item in filter(None, (v or "").split(",")):
            ae, sep, facility = item.partition("=")
            if not sep or not ae.strip() or not facility.strip() or len(ae.strip()) > 16:
                raise ValueError("must be AE=FACILITY[,AE2=FACILITY2] with AE titles of 1-16 characters")
        return v or None

    @field_validator("mllp_sender_certs", "oidc_role_map")
    @classmethod
    def _pairs(cls, v: str | None) -> str | None:
        try:
            parse_pairs(v)
        except ValueError as exc:
            raise ValueError(f"must be NAME=VALUE[,NAME2=VALUE2] ({exc})") from None
        return v or None

    @field_validator("mllp_sender_addresses")
    @classmethod
    def _networks(cls, v: str | None) -> str | None:
        try:
            for network in parse_pairs(v):
                ipaddress.ip_network(network, strict=False)
        except ValueError as exc:
            raise ValueError(f"must be IP_OR_CIDR=FACILITY[,…] ({exc})") from None
        return v or None

    @field_validator("oidc_jwks_url")
    @classmethod
    def _jwks_url(cls, v: str | None) -> str | None:
        if v and not v.startswith(("https://", "http://")):
            raise ValueError("must be an https:// URL")
        return v or None

    @field_validator("hl7_report_endpoints")
    @classmethod
    def _endpoints(cls, v: str | None) -> str | None:
        try:
            parse_addresses(v)
        except ValueError as exc:
            raise ValueError(f"must be FACILITY=host:port[,FACILITY2=host:port] ({exc})") from None
        return v or None

    @field_validator("hl7_processing_id")
    @classmethod
    def _processing_id(cls, v: str | None) -> str | None:
        if v and v not in ("P", "D", "T"):
            raise ValueError("allowed: P, D, T")
        return v or None

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def development(self) -> bool:
        return self.env is Environment.DEVELOPMENT

    @property
    def graphiql_enabled(self) -> bool:
        return self.development if self.graphiql is None else self.graphiql

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'huizhen.db').resolve()}"

    @property
    def sla_targets(self) -> SlaTargets:
        as_minutes = lambda v: {k: float(m) for k, m in parse_pairs(v).items()}  # noqa: E731
        return SlaTargets.minutes(as_minutes(self.sla_assign_minutes), as_minutes(self.sla_start_minutes))

    @property
    def resolved_coverage_rules_file(self) -> Path:
        if self.coverage_rules_file is not None:
            return self.coverage_rules_file
        config = default_config_file()
        return (config.parent if config else _PROJECT_CONFIG.parent) / "coverage.toml"

    @property
    def resolved_mappings_dir(self) -> Path:
        if self.mappings_dir is not None:
            return self.mappings_dir
        config = default_config_file()
        return (config.parent if config else _PROJECT_CONFIG.parent) / "mappings"

    @property
    def resolved_rbac_dir(self) -> Path:
        if self.rbac_dir is not None:
            return self.rbac_dir
        config = default_config_file()
        return (config.parent if config else _PROJECT_CONFIG.parent) / "rbac"

    @property
    def peers(self) -> dict[str, str]:
        pairs = (i.partition("=") for i in (self.dicom_peers or "").split(",") if i)
        return {ae.strip(): facility.strip() for ae, _, facility in pairs}

    # DICOM SCP (huizhen/adapters/dicom.py)
    dicom_move_destinations: str | None = None  # AE=host:port[,AE2=host:port]: where C-MOVE may send
    dicom_store_timeout_seconds: float = Field(default=30.0, gt=0)  # then C-STORE answers 0xA700
    dicom_fallback_charset: str | None = None  # e.g. GB18030, for senders that omit SpecificCharacterSet
    dicom_max_find_results: int = Field(default=1000, ge=1)
    # Operations (huizhen/ops/): metrics, logs, mapping reload
    metrics_token: str | None = None  # set: /metrics wants "Bearer <this>"; none: an integration_admin token
    log_patient_data: bool = False  # patient data (``phi_*`` log fields) in the logs; off by default
    mappings_poll_seconds: float = Field(default=2.0, ge=0)  # re-read config/mappings/*.csv on change; 0: never

    # WebRTC signaling at /signaling (huizhen/adapters/signaling.py)
    signaling_max_message_bytes: int = Field(default=64 * 1024, ge=1024)  # larger: error, socket closed (1009)
    signaling_messages_per_second: float = Field(default=50.0, gt=0)  # per socket, token bucket
    signaling_burst: int = Field(default=100, ge=1)
    signaling_auth_timeout_seconds: float = Field(default=10.0, gt=0)  # for the first-message token
    # with a broker or HTTP workers: how long a join waits for the other processes' peers
    signaling_presence_wait_ms: int = Field(default=150, ge=0)
    ice_stun_urls: str | None = None  # stun:host:port[,…]
    turn_urls: str | None = None  # turn:host:3478?transport=udp[,…]; needs turn_secret
    # the coturn static-auth-secret, from HUIZHEN_TURN_SECRET; never in the repository
    turn_secret: str | None = Field(default=None, validate_default=True)
    turn_ttl_seconds: int = Field(default=43200, gt=0)
    # adaptive bitrate policy (huizhen/adapters/bitrate.py); the ladder best first
    bitrate_ladder: str = "1280x720@30:1500,960x540@30:1000,640x360@25:600,480x270@20:350,320x240@15:180"
    bitrate_start_rung: int = Field(default=2, ge=0)
    bitrate_loss_down_pct: float = Field(default=5.0, gt=0)
    bitrate_loss_severe_pct: float = Field(default=15.0, gt=0)
    bitrate_rtt_down_ms: float = Field(default=400.0, gt=0)
    bitrate_good_loss_pct: float = Field(default=2.0, ge=0)
    bitrate_good_rtt_ms: float = Field(default=250.0, gt=0)
    bitrate_up_after: int = Field(default=5, ge=1)  # consecutive good reports before one step up
    # pre-call network check (huizhen/adapters/netcheck.py)
    netcheck_seconds: float = Field(default=6.0, gt=0)  # how long the echo is measured
    netcheck_timeout_seconds: float = Field(default=30.0, gt=0)  # the whole test, negotiation included
    netcheck_max_concurrent: int = Field(default=4, ge=1)

    @field_validator("bitrate_ladder")
    @classmethod
    def _ladder(cls, v: str) -> str:
        from huizhen.adapters.bitrate import parse_ladder  # the one parser of the ladder

        parse_ladder(v)
        return v

    @field_validator("turn_secret")
    @classmethod
    def _turn_needs_secret(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("turn_urls") and not v:
            raise ValueError("turn_urls is set: the TURN REST shared secret is required")
        return v or None

    # DICOM SCU (huizhen/adapters/dicom_qr.py): each facility's PACS, queried and retrieved from for prior studies
    dicom_pacs: str | None = None  # FACILITY=AE@host:port[,FAC2=AE2@host:port]
    dicom_pacs_timeout_seconds: float = Field(default=300.0, gt=0)  # one prior-studies retrieve, all studies

    @field_validator("dicom_pacs")
    @classmethod
    def _pacs(cls, v: str | None) -> str | None:
        try:
            parse_pacs(v)
        except ValueError:
            raise ValueError(
                "must be FACILITY=AE@host:port[,FAC2=AE2@host:port] with AE titles of 1-16 characters"
            ) from None
        return v or None

    @field_validator("dicom_move_destinations")
    @classmethod
    def _move_destinations(cls, v: str | None) -> str | None:
        try:
            parse_addresses(v, max_key=16)
        except ValueError:
            raise ValueError("must be AE=host:port[,AE2=host:port] with AE titles of 1-16 characters") from None
        return v or None

    @field_validator("dicom_fallback_charset")
    @classmethod
    def _codec(cls, v: str | None) -> str | None:
        if v:
            try:
                codecs.lookup(v)
            except LookupError as exc:
                raise ValueError("must be a character set Python knows, such as GB18030") from exc
        return v or None

    # GraphQL at /graphql (huizhen/graphql/)
    graphql_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)  # larger requests: 413, never parsed
    persisted_queries_file: Path | None = None  # JSON {sha256: document} or one sha256 a line
    persisted_queries_only: bool = False  # production: run only documents on the allow-list
    cors_origins: str | None = None  # comma-separated origins allowed to call /graphql from a browser; none

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: str | None) -> str | None:
        for origin in filter(None, (o.strip() for o in (v or "").split(","))):
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError("must be comma-separated origins such as https://app.example.org")
        return v or None

    @property
    def origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in (self.cors_origins or "").split(",") if o.strip()]


_SECRETS = frozenset({"data_key", "index_key", "pseudonym_key"})
_MAX_PRODUCTION_TTL_S = 24 * 3600


def production_problems(settings: Settings) -> list[str]:
    """Development settings that ``HUIZHEN_ENV=production`` refuses, each as one short phrase."""
    if settings.development:
        return []
    problems = []
    if settings.graphiql_enabled:
        problems.append("GraphiQL is on (unset HUIZHEN_GRAPHIQL)")
    if settings.token_ttl_seconds > _MAX_PRODUCTION_TTL_S:
        problems.append(f"token_ttl_seconds {settings.token_ttl_seconds} exceeds a day ({_MAX_PRODUCTION_TTL_S})")
    tls = settings.tls_cert_file is not None and settings.tls_key_file is not None
    if not tls and not _loopback(settings.host):
        problems.append(f"no TLS (tls_cert_file, tls_key_file) on non-loopback host {settings.host}")
    if settings.dicom_port and not settings.peers:
        problems.append("no DICOM peers (dicom_peers AE=FACILITY,…) or dicom_port = 0")
    return problems


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name (or 0.0.0.0's friends) may resolve anywhere


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the config file (the default one if it exists) and the environment."""
    environ = os.environ if environ is None else environ
    path = config_file or (Path(environ["HUIZHEN_CONFIG"]) if "HUIZHEN_CONFIG" in environ else None)
    values: dict[str, Any] = {}
    path = path or default_config_file()
    if path is not None:
        values.update(_read_toml(path))
    for name in Settings.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in environ:
            values[name] = environ[key]
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigurationError(_one_line(exc, values)) from exc


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from exc
    section = data.get("huizhen", data)
    unknown = sorted(set(section) - set(Settings.model_fields))
    if unknown:
        raise ConfigurationError(
            f"config file {path}: unknown setting {unknown[0]!r}; "
            f"known: {', '.join(Settings.model_fields)}"
        )
    return dict(section)


def _one_line(exc: ValidationError, values: Mapping[str, Any]) -> str:
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else "?"
    field = Settings.model_fields.get(name)
    allowed = ""
    if field is not None and isinstance(field.annotation, type) and issubclass(field.annotation, StrEnum):
        allowed = f" (allowed: {', '.join(m.value for m in field.annotation)})"
    msg = str(err["msg"]).removeprefix("Value error, ")
    shown = "<secret>" if name in _SECRETS else repr(values.get(name))
    return (
        f"invalid setting {name} (env {ENV_PREFIX}{name.upper()}) = {shown}: "
        f"{msg}{allowed}"
    )
