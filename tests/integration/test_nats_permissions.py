"""NATS authentication and permissions on a real nats-server running claiim's configuration: nothing
anonymous, agents and admins admitted by their tokens with only their own permissions, services
under their own users, and a suspended agent disconnected at once."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import nats
import pytest
from claiim import AsyncAdmin, AsyncGate, UnauthorizedError
from claiim_auth.nkeys import KeyPair
from claiim_core.tokens import INBOX_ROOT, inbox_prefix
from claiim_runtime.natsconf import password_variable
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import start_services
from claiim_server.servers import NatsCredentials, ensure_database, free_port, nats_server_binary
from claiim_server.stack import demo_bundle
from nats.aio.client import Client

from tests.conftest import Stack, connect_agent, connect_as, needs_nats_auth, new_settings

pytestmark = [pytest.mark.integration, needs_nats_auth]
ROOT = Path(__file__).resolve().parents[2]


class Attempts:
    """A connection that records the server's permission violations (nats-py reports them lower-cased)."""

    def __init__(self) -> None:
        self.errors: list[Exception] = []
        self.closed = asyncio.Event()

    async def on_error(self, e: Exception) -> None:
        self.errors.append(e)

    async def on_closed(self) -> None:
        self.closed.set()

    def denied(self, what: str) -> bool:
        return any("permissions violation" in str(e).lower() and what.lower() in str(e).lower() for e in self.errors)


async def login(settings: Settings, attempts: Attempts, *, user: str | None, password: str | None,
                inbox: str = "_INBOX") -> Client:
    return await nats.connect(settings.url, user=user, password=password, inbox_prefix=inbox,
                              error_cb=attempts.on_error, closed_cb=attempts.on_closed, max_reconnect_attempts=0,
                              allow_reconnect=False)


async def try_all(nc: Client, publish: list[str] = [], subscribe: list[str] = []) -> None:  # noqa: B006
    for subject in publish:
        await nc.publish(subject, b'{"forged": true}')
    for subject in subscribe:
        await nc.subscribe(subject)
    await nc.flush()
    await asyncio.sleep(0.3)


@pytest.fixture
async def agent(stack: Stack) -> AsyncIterator[tuple[Client, Attempts]]:
    attempts = Attempts()
    token = stack.tokens["deploy-bot"]
    nc = await login(stack.settings, attempts, user="deploy-bot", password=token, inbox=inbox_prefix(token))
    try:
        yield nc, attempts
    finally:
        await nc.close()


def log_of(stack: Stack) -> str:
    """The nats-server's log: every violation is there, with the user who tried."""
    assert stack.nats_log is not None
    return stack.nats_log.read_text()


async def test_nothing_connects_anonymously_or_with_a_wrong_password(stack: Stack) -> None:
    """No credentials, a wrong service password or a made-up token: the server refuses the connection."""
    for user, password in ((None, None), ("gate", "pwrong"), ("deploy-bot", "clm_demo.made-up"),
                           ("admin", "cla_demo.made-up"), ("admin", "adm_guess")):
        with pytest.raises(Exception, match=r"(?i)authorization violation"):
            await login(stack.settings, Attempts(), user=user, password=password)


async def test_an_agent_asks_the_gate_and_may_do_nothing_else(stack: Stack,
                                                             agent: tuple[Client, Attempts]) -> None:
    """Admitted by its token, an agent gets decisions, and may not publish events, call the admin or Chron
    API, read another's replies or requests, or touch JetStream."""
    nc, attempts = agent
    other_inbox = inbox_prefix(stack.tokens["review-bot"])
    names = stack.names
    request = {"agent_id": "deploy-bot", "token": stack.tokens["deploy-bot"], "action": "deploy:staging"}
    reply = await nc.request(names.gate_check, json.dumps(request).encode(), timeout=5)
    assert json.loads(reply.data)["outcome"] == "ALLOW"
    forbidden_pub = [names.decision_subject("demo", "deploy-bot", "allow"), names.control_subject("demo", "agent", "x"),
                     names.admin_apply, names.chron_query, f"$JS.API.STREAM.PURGE.{names.decisions_stream}",
                     f"{other_inbox}.x.y"]
    forbidden_sub = [f"{other_inbox}.>", f"{INBOX_ROOT}.>", "_INBOX.>", names.gate_check, ">"]
    await try_all(nc, forbidden_pub, forbidden_sub)
    for subject in forbidden_pub + forbidden_sub:
        assert attempts.denied(subject), (subject, attempts.errors)
    assert "Publish Violation" in log_of(stack) and "Subscription Violation" in log_of(stack)


async def test_an_admin_calls_the_apis_and_publishes_no_event(stack: Stack) -> None:
    """An org admin's connection reaches the admin and Chron APIs only: no event, no gate request, no
    other inbox."""
    token = await stack.admin.enrol_admin("alice")
    attempts = Attempts()
    nc = await login(stack.settings, attempts, user="admin", password=token, inbox=inbox_prefix(token))
    names = stack.names
    try:
        forbidden = [names.decision_subject("demo", "deploy-bot", "allow"), names.control_subject("demo", "agent", "x"),
                     names.gate_check, f"$JS.API.STREAM.INFO.{names.decisions_stream}"]
        await try_all(nc, forbidden, [f"{inbox_prefix(stack.tokens['deploy-bot'])}.>"])
    finally:
        await nc.close()
    assert all(attempts.denied(s) for s in forbidden), attempts.errors
    alice = AsyncAdmin(stack.settings.url, token, namespace=stack.settings.namespace)
    try:
        assert [a.agent_id for a in await alice.agents()] == ["deploy-bot", "review-bot"]
    finally:
        await alice.close()


async def test_the_operator_reads_the_streams_and_cannot_write_or_destroy_them(stack: Stack) -> None:
    """The break-glass operator may read claiim's streams and publish elsewhere, never claiim's events,
    never delete or purge a stream, never touch Chron's consumers."""
    token = stack.settings.require_admin_token()
    attempts = Attempts()
    nc = await login(stack.settings, attempts, user="admin", password=token, inbox=inbox_prefix(token))
    names = stack.names
    try:
        info = await nc.jetstream().stream_info(names.control_stream)
        assert info.state.messages >= 9
        forbidden = [names.decision_subject("demo", "deploy-bot", "allow"), names.control_subject("demo", "agent", "x"),
                     f"$JS.API.STREAM.DELETE.{names.decisions_stream}", f"$JS.API.STREAM.PURGE.{names.control_stream}",
                     f"$JS.API.CONSUMER.DELETE.{names.decisions_stream}.chron", "_INBOX_gate.x"]
        await try_all(nc, forbidden)
    finally:
        await nc.close()
    assert all(attempts.denied(s) for s in forbidden), attempts.errors


@pytest.mark.parametrize(("user", "forbidden"), [
    ("ui", ["{ns}.control.demo.agent.deploy-bot", "{ns}.decision.demo.deploy-bot.allow",
            "$JS.API.CONSUMER.DELETE.{NS}_DECISIONS.chron"]),
    ("siem", ["{ns}.decision.demo.deploy-bot.allow", "{ns}.admin.apply", "$JS.API.CONSUMER.DELETE.{NS}_DECISIONS.chron",
              "$JS.API.STREAM.PURGE.{NS}_OCSF"]),
    ("gate", ["{ns}.control.demo.agent.deploy-bot", "{ns}.ocsf.demo.deploy-bot.allow"]),
    ("control", ["{ns}.decision.demo.deploy-bot.allow", "{ns}.chron.checkpoint"]),
    ("ocsf", ["{ns}.decision.demo.deploy-bot.allow", "{ns}.control.demo.agent.deploy-bot"]),
])
async def test_each_service_user_writes_only_where_its_service_writes(stack: Stack, user: str,
                                                                     forbidden: list[str]) -> None:
    """The UI's user cannot append control events or decisions; no service writes another's subjects."""
    ns = stack.settings.namespace
    subjects = [s.format(ns=ns, NS=ns.upper()) for s in forbidden]
    attempts = Attempts()
    nc = await login(stack.settings, attempts, user=user, password=stack.settings.nats_password(user),
                     inbox=f"_INBOX_{user}")
    try:
        await try_all(nc, subjects)
    finally:
        await nc.close()
    assert all(attempts.denied(s) for s in subjects), attempts.errors


async def test_a_suspended_agent_is_disconnected_and_refused(stack: Stack) -> None:
    """Suspending an agent closes its open connection at once and refuses it from then on; reactivated,
    it connects again."""
    attempts = Attempts()
    token = stack.tokens["deploy-bot"]
    nc = await login(stack.settings, attempts, user="deploy-bot", password=token, inbox=inbox_prefix(token))
    assert stack.running.auth is not None
    before = stack.running.auth.disconnected
    await stack.admin.suspend("deploy-bot")
    await asyncio.wait_for(attempts.closed.wait(), timeout=5)
    for _ in range(100):  # the server closes the connection before the KICK request is answered
        if stack.running.auth.disconnected > before:
            break
        await asyncio.sleep(0.02)
    assert nc.is_closed and stack.running.auth.disconnected == before + 1
    with pytest.raises(UnauthorizedError):
        async with AsyncGate("deploy-bot", token, stack.settings.url, namespace=stack.settings.namespace) as gate:
            await gate.check(action="deploy:staging")
    review = await connect_agent(stack.settings, "review-bot", stack.tokens["review-bot"])
    assert review.is_connected, "another agent's connection is left alone"
    await review.close()
    await stack.admin.reactivate("deploy-bot")
    async with AsyncGate("deploy-bot", token, stack.settings.url, namespace=stack.settings.namespace) as gate:
        assert (await gate.check(action="deploy:staging")).outcome == "ALLOW"


async def test_an_auth_service_started_later_disconnects_what_outlived_a_change(stack: Stack) -> None:
    """A token rotated while no auth service ran leaves its connection open until an auth service starts:
    then it is disconnected."""
    assert stack.running.auth is not None
    attempts = Attempts()
    token = stack.tokens["deploy-bot"]
    nc = await login(stack.settings, attempts, user="deploy-bot", password=token, inbox=inbox_prefix(token))
    await stack.running.auth.stop()
    await stack.admin.rotate_token("deploy-bot")  # nobody to disconnect it now
    await asyncio.sleep(0.5)
    assert nc.is_connected
    later = await start_services(stack.settings, which=("auth",), instance="auth-later")
    try:
        await asyncio.wait_for(attempts.closed.wait(), timeout=5)
        assert later.auth is not None
        for _ in range(100):  # the server closes the connection before the KICK request is answered
            if later.auth.disconnected:
                break
            await asyncio.sleep(0.02)
        assert later.auth.disconnected == 1
    finally:
        await later.stop()


async def test_the_web_ui_works_under_its_own_user(stack: Stack) -> None:
    """The admin UI, connected as `ui` with its own inbox, logs an admin in, reads the registry and counts
    decisions from the decision stream."""
    key = stack.settings.require_checkpoint_signer()
    settings = Settings(**{**stack.settings.model_dump(), "checkpoint_verifier": str(key.verifier), "ui_port": 0})
    ui = await start_services(settings, which=("admin",), instance="ui")
    try:
        assert ui.admin is not None and set(ui.connections) == {"ui"}
        async with AsyncGate("deploy-bot", stack.tokens["deploy-bot"], settings.url,
                             namespace=settings.namespace) as gate:
            await gate.check(action="deploy:staging", target="api-v2")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            login_page = await http.post(ui.admin.url + "/login",
                                         data={"token": settings.require_admin_token(), "org": "demo", "next": "/"})
            assert login_page.status == 200 and "Overview" in await login_page.text()
            assert "review-bot" in await (await http.get(ui.admin.url + "/agents")).text()
            for _ in range(100):
                overview = await (await http.get(ui.admin.url + "/api/overview")).json()
                if overview["allow"] >= 1:
                    break
                await asyncio.sleep(0.05)
            assert overview["allow"] >= 1
    finally:
        await ui.stop()


async def test_services_connections_have_their_own_users(stack: Stack) -> None:
    """Each service of the stack is connected as its own NATS user, the auth service also as `sys`."""
    assert set(stack.running.connections) == {"gate", "control", "chron", "ocsf", "auth", "sys"}
    siem = await connect_as(stack.settings, "siem")  # and the SIEM reader's password works
    await siem.close()


@pytest.fixture
def deployed_nats(tmp_path: Path) -> Iterator[tuple[str, NatsCredentials]]:
    """nats-server with deploy/nats/nats-auth.conf itself, as compose runs it: passwords and the issuer's
    public key from the environment (only the port and the store dir changed)."""
    text = (ROOT / "deploy/nats/nats-auth.conf").read_text()
    port = free_port()
    text = text.replace("port: 4222", f"port: {port}").replace("http_port: 8222", f"http_port: {free_port()}")
    text = text.replace('store_dir: "/data"', f'store_dir: "{tmp_path / "js"}"')
    (tmp_path / "nats.conf").write_text(text)
    credentials = NatsCredentials.generate()
    env = {**os.environ, "NATS_ISSUER": KeyPair.from_seed(credentials.issuer_seed).public_key,
           **{password_variable(u): p for u, p in credentials.passwords.items()}}
    log = tmp_path / "nats.log"
    with log.open("wb") as out:
        process = subprocess.Popen([nats_server_binary(), "-c", str(tmp_path / "nats.conf")], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                pytest.fail(f"nats-server exited with {process.returncode}: {log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"nats-server did not listen on {port} within 10 s: {log.read_text()}")
                time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}", credentials
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_the_deployed_configuration_runs_claiim_and_refuses_the_forgeries(
        pg_url: str, deployed_nats: tuple[str, NatsCredentials]) -> None:
    """deploy/nats/nats-auth.conf as compose runs it: every service works under its user, an agent gets
    decisions, and neither the agent, nor an admin, nor the UI's user can publish the forged policy,
    binding or decision."""
    url, credentials = deployed_nats
    base = new_settings(url, await ensure_database(pg_url, f"t_{secrets.token_hex(6)}"), "claiim", credentials)
    running = await start_services(base, instance="deployed")
    try:
        admin = AsyncAdmin(base.url, base.require_admin_token(), org="demo", namespace="claiim")
        tokens = (await admin.apply(demo_bundle())).tokens
        alice = await admin.enrol_admin("alice")
        await admin.close()
        async with AsyncGate("deploy-bot", tokens["deploy-bot"], base.url) as gate:
            assert (await gate.check(action="deploy:production")).outcome == "DENY"
        forgeries = ["claiim.control.demo.policy.open", "claiim.control.demo.agent.deploy-bot",
                     "claiim.decision.demo.deploy-bot.allow"]
        for user, password, inbox in (("deploy-bot", tokens["deploy-bot"], inbox_prefix(tokens["deploy-bot"])),
                                      ("admin", alice, inbox_prefix(alice)),
                                      ("ui", credentials.passwords["ui"], "_INBOX_ui")):
            attempts = Attempts()
            nc = await login(base, attempts, user=user, password=password, inbox=inbox)
            try:
                await try_all(nc, forgeries)
            finally:
                await nc.close()
            assert all(attempts.denied(s) for s in forgeries), (user, attempts.errors)
        assert running.chron is not None and running.chron.parked == 0
    finally:
        await running.stop()
