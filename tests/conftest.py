"""Shared fixtures: one real nats-server and one real PostgreSQL per test run.

``CLAIIM_TEST_NATS_URL`` and ``CLAIIM_TEST_DATABASE_URL`` point the suite at existing servers
instead. Where a Docker engine exists, ``CLAIIM_TEST_DOCKER=1`` starts both with testcontainers
(``pip install -e '.[docker]'``); that path is not exercised here, where no engine runs.
Every test that needs the stack gets its own namespace (subjects and streams) and its
own database, so tests never see each other's data.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from claiim import AsyncAdmin
from claiim._embedded import demo_bundle
from claiim._servers import ensure_database, free_port, start_nats, start_postgres
from claiim._services import RunningServices, start_services
from claiim_core.checkpoint import Signer
from claiim_runtime.settings import Settings


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="claiim-test-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def nats_url(workdir: Path) -> Iterator[str]:
    if url := os.environ.get("CLAIIM_TEST_NATS_URL"):
        yield url
        return
    if os.environ.get("CLAIIM_TEST_DOCKER") == "1":
        from testcontainers.community.nats import NatsContainer

        with NatsContainer("nats:2.10", jetstream=True) as container:
            yield container.nats_uri()
        return
    server = start_nats(free_port(), workdir / "nats")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url(workdir: Path) -> Iterator[str]:
    if url := os.environ.get("CLAIIM_TEST_DATABASE_URL"):
        yield url
        return
    if os.environ.get("CLAIIM_TEST_DOCKER") == "1":
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            yield container.get_connection_url()
        return
    server: Any
    server, url = start_postgres(workdir / "pg")
    try:
        yield url
    finally:
        server.cleanup()


@dataclass
class Stack:
    """A running gate, control handler and Chron in their own namespace and database."""

    settings: Settings
    running: RunningServices
    admin: AsyncAdmin
    """The operator, acting in the demo org."""
    tokens: dict[str, str]

    @property
    def names(self) -> Any:
        return self.settings.names


def new_settings(nats_url: str, db_url: str) -> Settings:
    return Settings(url=nats_url, database_url=db_url, namespace=f"t{secrets.token_hex(5)}",
                    token_secret=secrets.token_urlsafe(32), admin_token="adm_" + secrets.token_hex(8),
                    checkpoint_key=str(Signer.from_seed("claiim-test", secrets.token_bytes(32))))


@pytest.fixture
async def stack_settings(nats_url: str, pg_url: str) -> Settings:
    db_url = await ensure_database(pg_url, f"t_{secrets.token_hex(6)}")
    return new_settings(nats_url, db_url)


@pytest.fixture
async def stack(stack_settings: Settings) -> AsyncIterator[Stack]:
    running = await start_services(stack_settings, instance="test-gate")
    admin = AsyncAdmin(stack_settings.url, stack_settings.require_admin_token(), org="demo",
                       namespace=stack_settings.namespace)
    reply = await admin.apply(demo_bundle())
    try:
        yield Stack(stack_settings, running, admin, dict(reply.tokens))
    finally:
        await admin.close()
        await running.stop()


