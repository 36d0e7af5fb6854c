"""Shared fixtures: real databases (SQLite file, PostgreSQL), real Redis, a real server.

A test that needs PostgreSQL or Redis skips with a reason when the service is
not configured (HUIZHEN_TEST_POSTGRES_URL / HUIZHEN_TEST_REDIS_URL) — except
under CI (CI=true), where a missing service fails the test instead.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from huizhen.integration import migrate
from huizhen.integration.crypto import KeyRing, load_or_create_keyring
from huizhen.integration.store import Store

IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = ["sqlite", "postgresql"]


def need_service(env_var: str, what: str) -> str:
    url = os.environ.get(env_var)
    if url:
        return url
    message = f"{what} not configured: set {env_var} (.ci/run does)"
    if IN_CI:
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


def free_port() -> int:
    """A port no one listens on, for a server a test starts (which binds it a moment later).

    Not one the kernel hands out (binding port 0): that range is also where outgoing
    connections (to PostgreSQL, Redis, the servers under test) take their local ports, and
    one of them took such a port between this check and the server's bind (EADDRINUSE in CI).
    So a random port below the machine's ephemeral range, checked free."""
    low, high = _ephemeral_range()
    candidates = range(20000, low) if low > 21000 else range(high + 1, 65536)
    for _ in range(200):
        port = random.choice(candidates)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found outside the ephemeral range")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535  # IANA's dynamic range


class PostgresDatabases:
    """Creates throw-away databases from a migrated template (fast ``CREATE DATABASE … TEMPLATE``)."""

    def __init__(self, base_url: str) -> None:
        self.base = make_url(base_url)
        self.prefix = f"hz_test_{secrets.token_hex(3)}"
        self.template = f"{self.prefix}_tpl"
        self.created: list[str] = []
        self._run(f'CREATE DATABASE "{self.template}"')
        self.created.append(self.template)
        migrate.upgrade(self.url(self.template))

    def url(self, name: str) -> str:
        return self.base.set(database=name).render_as_string(hide_password=False)

    def new(self) -> str:
        name = f"{self.prefix}_{secrets.token_hex(4)}"
        self._run(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created.append(name)
        return self.url(name)

    def drop_all(self) -> None:
        for name in reversed(self.created):
            self._run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _run(self, sql: str) -> None:
        import asyncio

        import asyncpg

        async def go() -> None:
            conn = await asyncpg.connect(
                host=self.base.host, port=self.base.port or 5432, user=self.base.username,
                password=self.base.password, database=self.base.database or "postgres",
            )
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(go())


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    url = need_service("HUIZHEN_TEST_POSTGRES_URL", "PostgreSQL")
    dbs = PostgresDatabases(url)
    yield dbs
    dbs.drop_all()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database on each back end."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'huizhen.db'}"
        migrate.upgrade(url)
        return url
    dbs: PostgresDatabases = request.getfixturevalue("postgres_databases")
    return dbs.new()


@pytest.fixture
def keyring(tmp_path: Path) -> KeyRing:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    return load_or_create_keyring(keys)


@pytest.fixture
async def store(db_url: str, keyring: KeyRing) -> AsyncIterator[Store]:
    s = Store(db_url, keyring)
    yield s
    await s.close()


@pytest.fixture
def redis_url() -> str:
    return need_service("HUIZHEN_TEST_REDIS_URL", "Redis")

