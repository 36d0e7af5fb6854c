"""Which children ``huizhen serve`` starts, and the settings they are handed."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from huizhen.integration.errors import ConfigurationError
from huizhen.settings import Settings, load_settings
from huizhen.workers import Role, roles, settings_document


def test_one_pool_of_children_for_both_ports() -> None:
    assert roles(Settings()) == []
    assert roles(Settings(http_workers=3, mllp_workers=2)) == [Role(1, True, True), Role(2, False, True)]
    assert roles(Settings(mllp_workers=2)) == [Role(1, True, False)]
    assert roles(Settings(http_workers=2, http_port=0)) == []  # HTTP disabled: nothing to serve


def test_http_workers_from_the_environment(tmp_path: Path) -> None:
    assert load_settings(None, environ={"HUIZHEN_HTTP_WORKERS": "2"}).http_workers == 2
    with pytest.raises(ConfigurationError):
        load_settings(None, environ={"HUIZHEN_HTTP_WORKERS": "0"})


def test_a_child_gets_the_secrets_pydantic_would_mask() -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    settings = Settings(data_key=SecretStr(key), http_workers=2)
    child = Settings.model_validate(settings_document(settings))
    assert child.data_key is not None and child.data_key.get_secret_value() == key
    assert child == settings
