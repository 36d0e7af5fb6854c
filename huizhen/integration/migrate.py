"""Alembic migrations, run programmatically (first start and ``huizhen db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from huizhen.integration.errors import ConfigurationError

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str) -> Config:
    if not (MIGRATIONS / "env.py").exists():
        raise ConfigurationError(f"Alembic migrations not found at {MIGRATIONS}; install Huizhen from its source tree")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking: call from a thread (``asyncio.to_thread``) inside the server."""
    command.upgrade(alembic_config(database_url), revision)


def current_head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()
