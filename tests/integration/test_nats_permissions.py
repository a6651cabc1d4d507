"""deploy/nats/nats-auth.conf on a real nats-server: services work under their users, agents and the
SIEM user can do only what they must."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import nats
import pytest
from claiim import AdminError, AsyncAdmin, AsyncGate, GateUnavailableError
from claiim._embedded import demo_bundle
from claiim._servers import ensure_database, free_port, nats_server_binary
from claiim._services import start_services
from claiim_runtime.settings import Settings
from nats.aio.client import Client

from tests.conftest import new_settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
USERS = {"gate": "GATE", "control": "CONTROL", "chron": "CHRON", "ocsf": "OCSF", "admin": "ADMIN_CLIENT",
         "siem": "SIEM", "ui": "UI", "agent-deploy-bot": "AGENT_DEPLOY_BOT", "agent-review-bot": "AGENT_REVIEW_BOT"}
"""NATS user to the name of its password variable (``<NAME>_PASSWORD``) in the configuration."""


@dataclass
class SecuredNats:
    port: int
    passwords: dict[str, str]

    def url(self, user: str) -> str:
        return f"nats://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredNats]:
    d = tmp_path_factory.mktemp("nats-auth")
    port = free_port()
    text = (ROOT / "deploy/nats/nats-auth.conf").read_text()
    text = text.replace("port: 4222", f"port: {port}").replace("http_port: 8222", f"http_port: {free_port()}")
    text = text.replace("store_dir: /data", f"store_dir: {d / 'js'}")
    (d / "nats.conf").write_text(text)
    # As docs/control-plane.md says: nats-server parses a variable's value, so "9-Bk..." would be a date.
    passwords = {user: "p" + secrets.token_hex(12) for user in USERS}
    env = {**os.environ, **{f"{USERS[user]}_PASSWORD": p for user, p in passwords.items()}}
    log = d / "nats.log"
    with log.open("wb") as out:
        process = subprocess.Popen([nats_server_binary(), "-c", str(d / "nats.conf")], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                pytest.fail(f"nats-server exited with {process.returncode}: {log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"nats-server did not listen on {port} within 10 s: {log.read_text()}")
                time.sleep(0.05)
        yield SecuredNats(port, passwords)
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class Running:
    secured: SecuredNats
    settings: Settings
    tokens: dict[str, str]


@pytest.fixture(scope="module")
async def running(secured: SecuredNats, pg_url: str) -> AsyncIterator[Running]:
    """Gate, control, Chron and the OCSF feed, each connected as its own user (namespace claiim)."""
    base = new_settings("", await ensure_database(pg_url, f"t_{secrets.token_hex(6)}"))
    services = []
    for user, which in (("control", "control"), ("gate", "gate"), ("chron", "chron"), ("ocsf", "ocsf")):
        settings = Settings(**{**base.model_dump(), "url": secured.url(user), "namespace": "claiim"})
        services.append(await start_services(settings, which=(which,), instance=user))
    settings = Settings(**{**base.model_dump(), "namespace": "claiim"})
    os.environ["CLAIIM_INBOX_PREFIX"] = "_INBOX_admin"
    admin = AsyncAdmin(secured.url("admin"), settings.require_admin_token(), org="demo")
    try:
        tokens = (await admin.apply(demo_bundle())).tokens
    finally:
        await admin.close()
        del os.environ["CLAIIM_INBOX_PREFIX"]
    try:
        yield Running(secured, settings, tokens)
    finally:
        for s in reversed(services):
            await s.stop()


async def connect(url: str, errors: list[Exception], inbox: str = "_INBOX") -> Client:
    async def on_error(e: Exception) -> None:
        errors.append(e)

    return await nats.connect(url, error_cb=on_error, inbox_prefix=inbox, max_reconnect_attempts=0)


def denied(errors: list[Exception], what: str) -> bool:
    """The server refused ``what`` (nats-py reports it lower-cased)."""
    return any("permissions violation" in str(e).lower() and what.lower() in str(e).lower() for e in errors)


async def stream_messages(r: Running, stream: str) -> int:
    nc = await nats.connect(r.secured.url("chron"))
    try:
        return (await nc.jetstream().stream_info(stream)).state.messages
    finally:
        await nc.close()


async def test_an_agent_gets_decisions_under_its_own_user(running: Running) -> None:
    os.environ["CLAIIM_INBOX_PREFIX"] = "_INBOX_deploy-bot"
    try:
        async with AsyncGate("deploy-bot", running.tokens["deploy-bot"], running.secured.url("agent-deploy-bot")) as g:
            assert (await g.check(action="deploy:staging", target="api-v2")).outcome == "ALLOW"
    finally:
        del os.environ["CLAIIM_INBOX_PREFIX"]


async def test_agent_credentials_cannot_write_the_streams(running: Running) -> None:
    decisions, control = (await stream_messages(running, "CLAIIM_DECISIONS"),
                          await stream_messages(running, "CLAIIM_CONTROL"))
    errors: list[Exception] = []
    nc = await connect(running.secured.url("agent-deploy-bot"), errors, "_INBOX_deploy-bot")
    try:
        await nc.publish("claiim.decision.demo.deploy-bot.allow", b'{"forged": true}')
        await nc.publish("claiim.control.demo.agent.deploy-bot", b'{"forged": true}')
        await nc.publish("$JS.API.STREAM.PURGE.CLAIIM_DECISIONS", b"")
        await nc.flush()
        await asyncio.sleep(0.2)
    finally:
        await nc.close()
    assert denied(errors, "claiim.decision.demo.deploy-bot.allow"), errors
    assert denied(errors, "claiim.control.demo.agent.deploy-bot"), errors
    assert denied(errors, "$JS.API.STREAM.PURGE.CLAIIM_DECISIONS"), errors
    assert (await stream_messages(running, "CLAIIM_DECISIONS"), await stream_messages(running, "CLAIIM_CONTROL")) == (
        decisions, control)


@pytest.mark.parametrize("subject", ["_INBOX.>", "_INBOX_review-bot.>", "claiim.gate.check", ">"])
async def test_an_agent_cannot_read_other_replies_or_requests(running: Running, subject: str) -> None:
    errors: list[Exception] = []
    nc = await connect(running.secured.url("agent-deploy-bot"), errors, "_INBOX_deploy-bot")
    try:
        await nc.subscribe(subject)
        await nc.flush()
        await asyncio.sleep(0.2)
    finally:
        await nc.close()
    assert denied(errors, subject), errors


async def test_an_agent_cannot_call_the_admin_or_chron_api(running: Running) -> None:
    os.environ["CLAIIM_INBOX_PREFIX"] = "_INBOX_deploy-bot"
    admin = AsyncAdmin(running.secured.url("agent-deploy-bot"), running.settings.require_admin_token(), org="demo",
                       timeout=1.0)
    try:
        for call in (admin.agents, lambda: admin.suspend("review-bot"), lambda: admin.chron_list()):
            with pytest.raises((AdminError, GateUnavailableError)):
                await call()
    finally:
        await admin.close()
        del os.environ["CLAIIM_INBOX_PREFIX"]


async def test_the_siem_user_reads_decisions_and_writes_nothing(running: Running) -> None:
    errors: list[Exception] = []
    nc = await connect(running.secured.url("siem"), errors, "_INBOX_siem")
    try:
        sub = await nc.jetstream().subscribe("claiim.decision.>", stream="CLAIIM_DECISIONS", ordered_consumer=True)
        assert (await sub.next_msg(timeout=5)).subject.startswith("claiim.decision.demo.")
        await nc.publish("claiim.decision.demo.deploy-bot.allow", b"{}")
        await nc.publish("claiim.admin.apply", b"{}")
        await nc.flush()
        await asyncio.sleep(0.2)
    finally:
        await nc.close()
    assert denied(errors, "claiim.decision.demo.deploy-bot.allow") and denied(errors, "claiim.admin.apply"), errors


async def test_the_web_ui_works_under_its_own_user(running: Running) -> None:
    """The admin UI, connected as `ui` with its own inbox prefix, logs an admin in, reads the registry
    and counts decisions from the decision stream."""
    key = running.settings.require_checkpoint_signer()
    settings = Settings(**{**running.settings.model_dump(), "url": running.secured.url("ui"),
                           "inbox_prefix": "_INBOX_ui", "checkpoint_verifier": str(key.verifier), "ui_port": 0})
    ui = await start_services(settings, which=("admin",), instance="ui")
    try:
        assert ui.admin is not None
        os.environ["CLAIIM_INBOX_PREFIX"] = "_INBOX_deploy-bot"
        try:
            async with AsyncGate("deploy-bot", running.tokens["deploy-bot"],
                                 running.secured.url("agent-deploy-bot")) as g:
                await g.check(action="deploy:staging", target="api-v2")
        finally:
            del os.environ["CLAIIM_INBOX_PREFIX"]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            login = await http.post(ui.admin.url + "/login",
                                    data={"token": settings.require_admin_token(), "org": "demo", "next": "/"})
            assert login.status == 200 and "Overview" in await login.text()
            agents = await http.get(ui.admin.url + "/agents")
            assert "review-bot" in await agents.text()
            for _ in range(100):
                overview = await (await http.get(ui.admin.url + "/api/overview")).json()
                if overview["allow"] >= 1:
                    break
                await asyncio.sleep(0.05)
            assert overview["allow"] >= 1
    finally:
        await ui.stop()
