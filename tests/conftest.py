"""Shared fixtures: real nats-servers and one real PostgreSQL per test run.

Every test that needs the stack gets its own nats-server with claiim's configuration (each
service its own NATS user, agents and admins admitted by the auth service, nothing anonymous), its
own namespace and its own database, so tests never see each other's data and run with NATS
authentication as production does. One unauthenticated nats-server per run serves the few
tests of bare NATS behaviour.

``CLAIIM_TEST_NATS_URL`` and ``CLAIIM_TEST_DATABASE_URL`` point the suite at existing servers
instead; with an existing nats-server, services connect without NATS credentials and the tests
of NATS authentication are skipped. Where a Docker engine exists, ``CLAIIM_TEST_DOCKER=1`` starts
both with testcontainers (``pip install -e '.[docker]'``); that path is not exercised here, where
no engine runs.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import psutil
import pytest
from claiim import AsyncAdmin, AsyncGate
from claiim.transport import NatsTransport
from claiim_core.checkpoint import Signer
from claiim_core.eventauth import GateKey, seal_decision
from claiim_core.names import Names, service_inbox
from claiim_core.schemas import DecisionEvent
from claiim_core.tokens import inbox_prefix
from claiim_core.urls import nats_servers
from claiim_runtime.natsconf import MAINTENANCE_USER
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import BACKEND, RunningServices, start_services
from claiim_server.servers import NatsCredentials, ensure_database, free_port, new_password, start_nats, start_postgres
from claiim_server.stack import demo_bundle
from nats.aio.client import Client

from tests.pgproc import OwnPostgres


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
        stop_at_once(workdir / "pg")
        server.cleanup()


def stop_at_once(pg_dir: Path) -> None:
    """PostgreSQL's immediate shutdown (SIGQUIT) of the suite's own server: its data is thrown away, so it
    skips the shutdown checkpoint, which took 16 s after a whole run's databases."""
    try:
        postmaster = psutil.Process(int((pg_dir / "postmaster.pid").read_text().split("\n", 1)[0]))
        postmaster.send_signal(signal.SIGQUIT)
        postmaster.wait(10)
    except (OSError, ValueError, psutil.Error):
        pass  # gone already, or never started: pgserver's cleanup deals with it


@dataclass
class Stack:
    """A running gate, control handler and Chron in their own namespace and database."""

    settings: Settings
    running: RunningServices
    admin: AsyncAdmin
    """The operator, acting in the demo org."""
    tokens: dict[str, str]
    nats_log: Path | None = None
    """The stack's own nats-server's log (None with CLAIIM_TEST_NATS_URL)."""

    @property
    def names(self) -> Any:
        return self.settings.names


def new_settings(nats_url: str, db_url: str, namespace: str | None = None,
                 credentials: NatsCredentials | None = None) -> Settings:
    control = Signer.from_seed("claiim-control", secrets.token_bytes(32))
    gate = GateKey("test-gate", secrets.token_bytes(32))
    nats = {} if credentials is None else {"nats_passwords": credentials.passwords_setting,
                                           "nats_issuer_seed": credentials.issuer_seed}
    return Settings(url=nats_url, database_url=db_url, namespace=namespace or f"t{secrets.token_hex(5)}",
                    token_secret=secrets.token_urlsafe(32), admin_token="adm_" + secrets.token_hex(8),
                    checkpoint_key=str(Signer.from_seed("claiim-test", secrets.token_bytes(32))),
                    control_key=str(control), control_verifiers=str(control.verifier), gate_key=str(gate),
                    gate_keys=str(gate), **nats)


CONNECT_WAIT_S = 10.0
"""The longest a test's own NATS connection may take (nats-py may retry a refused login for ever)."""
AUTH_ON = not os.environ.get("CLAIIM_TEST_NATS_URL")
"""Whether the suite runs its own nats-servers, with NATS authentication."""
needs_nats_auth = pytest.mark.skipif(not AUTH_ON, reason="needs the suite's own nats-server (CLAIIM_TEST_NATS_URL)")


@contextmanager
def secured_nats(directory: Path, names: Names) -> Iterator[tuple[str, NatsCredentials | None]]:
    """A nats-server of its own with claiim's users for ``names`` and fresh credentials; with
    CLAIIM_TEST_NATS_URL, that server and no credentials."""
    if not AUTH_ON:
        yield os.environ["CLAIIM_TEST_NATS_URL"], None
        return
    generated = NatsCredentials.generate()
    credentials = NatsCredentials({**generated.passwords, MAINTENANCE_USER: new_password()}, generated.issuer_seed)
    server = start_nats(free_port(), directory, credentials=credentials, names=names)
    try:
        yield server.url, credentials
    finally:
        server.stop()


def backend(settings: Settings) -> tuple[str, ...]:
    """The backend services these settings can run: without NATS authentication, no auth service."""
    return with_auth(settings, *BACKEND)


def with_auth(settings: Settings, *which: str) -> tuple[str, ...]:
    """``which`` with the auth service that admits agents and admins, where NATS authentication is on."""
    if not settings.nats_issuer_seed:
        return tuple(s for s in which if s != "auth")
    return which if "auth" in which else (*which, "auth")


async def connect_as(settings: Settings, user: str = MAINTENANCE_USER) -> Client:
    """A raw NATS connection as the NATS user ``user``: a service's (a test acting with its
    credentials), or by default the maintenance user, who may do anything (fault injection)."""
    return await asyncio.wait_for(nats.connect(
        nats_servers(settings.url), user=user, password=settings.nats_password(user), inbox_prefix=service_inbox(user),
        max_reconnect_attempts=0), CONNECT_WAIT_S)


def gate_via(stack: Stack, agent: str, token: str, carrier: str = "review-bot") -> AsyncGate:
    """A gate client for ``agent`` presenting ``token``, whose requests travel over ``carrier``'s
    admitted connection: a wrong, retired or suspended agent's token cannot even connect to NATS, so
    the gate's own checks (the second line) are reached through another agent."""
    transport = NatsTransport(stack.settings.url, user=carrier, token=stack.tokens[carrier])
    return AsyncGate(agent, token, stack.settings.url, namespace=stack.settings.namespace, transport=transport)


async def connect_agent(settings: Settings, agent_id: str, token: str) -> Client:
    """A raw NATS connection admitted as agent ``agent_id`` by its token, as the SDK connects."""
    return await asyncio.wait_for(nats.connect(
        nats_servers(settings.url), user=agent_id, password=token, inbox_prefix=inbox_prefix(token),
        max_reconnect_attempts=0), CONNECT_WAIT_S)


def sealed(settings: Settings, event: DecisionEvent) -> bytes:
    """``event`` as the stack's gate publishes it: canonical bytes with the gate key's MAC."""
    return seal_decision(event, settings.require_gate_key())


@pytest.fixture
async def stack_settings(pg_url: str, tmp_path: Path) -> AsyncIterator[Settings]:
    db_url = await ensure_database(pg_url, f"t_{secrets.token_hex(6)}")
    namespace = f"t{secrets.token_hex(5)}"
    with secured_nats(tmp_path / "nats", Names(namespace)) as (url, credentials):
        yield new_settings(url, db_url, namespace, credentials)


@pytest.fixture
async def stack(stack_settings: Settings, tmp_path: Path) -> AsyncIterator[Stack]:
    running = await start_services(stack_settings, backend(stack_settings), instance="test-gate")
    admin = AsyncAdmin(stack_settings.url, stack_settings.require_admin_token(), org="demo",
                       namespace=stack_settings.namespace)
    reply = await admin.apply(demo_bundle())
    try:
        yield Stack(stack_settings, running, admin, dict(reply.tokens),
                    tmp_path / "nats" / "nats-server.log" if AUTH_ON else None)
    finally:
        await admin.close()
        await running.stop()


@pytest.fixture
def own_pg(tmp_path: Path) -> Iterator[OwnPostgres]:
    """A PostgreSQL of this test's own, which the test may stop, kill and start."""
    pg = OwnPostgres(tmp_path / "pg")
    yield pg
    pg.close()


async def load_demo(settings: Settings) -> dict[str, str]:
    """Apply the demo bundle as the operator; the new agents' tokens."""
    admin = AsyncAdmin(settings.url, settings.require_admin_token(), org="demo", namespace=settings.namespace)
    try:
        return dict((await admin.apply(demo_bundle())).tokens)
    finally:
        await admin.close()
