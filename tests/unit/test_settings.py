import os
from pathlib import Path

import pytest

from huizhen.integration.errors import ConfigurationError
from huizhen.settings import POSTGRES_MLLP_WORKERS, Environment, load_settings


def write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "huizhen.toml"
    p.write_text(body, encoding="utf-8")
    return p


def test_defaults_from_design(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "[huizhen]\n"), environ={})
    assert (s.http_port, s.mllp_port, s.dicom_port, s.dicom_ae, s.host) == (8000, 2575, 11112, "HUIZHEN", "127.0.0.1")
    assert s.env is Environment.DEVELOPMENT and s.broker_url is None
    assert s.resolved_database_url.startswith("sqlite+aiosqlite:///") and s.resolved_database_url.endswith("huizhen.db")


def test_environment_overrides_file(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[huizhen]\nhttp_port = 9000\ndicom_ae = "FROMFILE"\n')
    s = load_settings(cfg, environ={"HUIZHEN_HTTP_PORT": "9100"})
    assert s.http_port == 9100 and s.dicom_ae == "FROMFILE"


def test_config_from_environment_variable(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[huizhen]\nmllp_port = 0\n")
    assert load_settings(None, environ={"HUIZHEN_CONFIG": str(cfg)}).mllp_port == 0


def test_dicom_peers_parsed(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, ""), environ={"HUIZHEN_DICOM_PEERS": "CT1=TWN001, PACS=HOSP001"})
    assert s.peers == {"CT1": "TWN001", "PACS": "HOSP001"}


@pytest.mark.parametrize(("env", "must_mention"), [
    ({"HUIZHEN_ENV": "staging"}, ["env", "HUIZHEN_ENV", "development", "production"]),
    ({"HUIZHEN_HTTP_PORT": "http"}, ["http_port", "HUIZHEN_HTTP_PORT", "integer"]),
    ({"HUIZHEN_HTTP_PORT": "70000"}, ["http_port", "65535"]),
    ({"HUIZHEN_DATABASE_URL": "mysql://x"}, ["database_url", "sqlite+aiosqlite://", "postgresql+asyncpg://"]),
    ({"HUIZHEN_BROKER_URL": "amqp://x"}, ["broker_url", "redis://"]),
    ({"HUIZHEN_TIMEZONE": "Mars/Base"}, ["timezone", "Asia/Shanghai"]),
    ({"HUIZHEN_DICOM_PEERS": "JUSTANAE"}, ["dicom_peers", "AE=FACILITY"]),
    ({"HUIZHEN_LOG_LEVEL": "LOUD"}, ["log_level", "DEBUG"]),
])
def test_bad_setting_is_one_clear_line(tmp_path: Path, env: dict[str, str], must_mention: list[str]) -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings(write(tmp_path, ""), environ=env)
    message = str(err.value)
    assert "\n" not in message
    for word in must_mention:
        assert word in message


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown setting 'htp_port'"):
        load_settings(write(tmp_path, "[huizhen]\nhtp_port = 1\n"), environ={})


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_settings(write(tmp_path, "[huizhen\n"), environ={})
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_graphiql_follows_environment(tmp_path: Path) -> None:
    cfg = write(tmp_path, "")
    assert load_settings(cfg, environ={}).graphiql_enabled
    assert not load_settings(cfg, environ={"HUIZHEN_ENV": "production"}).graphiql_enabled


def test_production_problems_name_each_development_setting() -> None:
    from huizhen.settings import Settings, production_problems

    assert production_problems(Settings(graphiql=True, token_ttl_seconds=10**6, host="0.0.0.0")) == []  # dev
    bad = Settings(env="production", graphiql=True, token_ttl_seconds=172800, host="10.0.0.5")
    found = production_problems(bad)
    assert len(found) == 4 and "GraphiQL" in found[0] and "exceeds a day" in found[1]
    assert "10.0.0.5" in found[2] and "DICOM peers" in found[3]
    good = Settings(env="production", host="::1", dicom_peers="CT=F1")
    assert production_problems(good) == []
    tls = Settings(env="production", host="0.0.0.0", dicom_port=0, tls_cert_file="c.pem", tls_key_file="k.pem")
    assert production_problems(tls) == []


def test_secret_settings_are_never_echoed() -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings(None, {"HUIZHEN_DATA_KEY": "s3cret", "HUIZHEN_HTTP_PORT": "x"})
    assert "s3cret" not in str(err.value)
    settings = load_settings(None, {"HUIZHEN_DATA_KEY": "s3cret"})
    assert "s3cret" not in repr(settings) and settings.data_key is not None


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"HUIZHEN_MLLP_SENDER_ADDRESSES": "not-an-ip=F1"}, "mllp_sender_addresses"),
        ({"HUIZHEN_MLLP_SENDER_CERTS": "his.example"}, "mllp_sender_certs"),
        ({"HUIZHEN_OIDC_ROLE_MAP": "doctor="}, "oidc_role_map"),
        ({"HUIZHEN_OIDC_JWKS_URL": "ftp://idp/certs"}, "oidc_jwks_url"),
    ],
)
def test_peer_and_oidc_settings_validated(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load_settings(None, env)


def test_mllp_workers_default_follows_the_back_end(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[huizhen]\n")
    pg = {"HUIZHEN_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/test"}
    assert load_settings(cfg, environ={}).mllp_workers == 1  # SQLite: one writer, one process
    expected = POSTGRES_MLLP_WORKERS if (os.cpu_count() or 1) > 1 else 1  # a second process needs a second core
    assert load_settings(cfg, environ=pg).mllp_workers == expected
    assert load_settings(cfg, environ={**pg, "HUIZHEN_MLLP_WORKERS": "1"}).mllp_workers == 1  # said: kept
