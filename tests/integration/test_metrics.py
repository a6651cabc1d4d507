"""Each process's /metrics, /healthz and /readyz: one check moves the gate's decision counter by exactly one, and
readiness tells the truth when NATS goes away and comes back."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import yaml
from claiim import AsyncGate, CheckResult
from claiim_chron import service as chron_service
from claiim_core.names import Names
from claiim_runtime.natsconf import MAINTENANCE_USER
from claiim_runtime.settings import Settings
from claiim_runtime.streams import ensure_streams
from claiim_server.bootstrap import RunningServices, start_services
from claiim_server.servers import NatsCredentials, NatsProcess, ensure_database, free_port, new_password, start_nats
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import backend, connect_as, load_demo, needs_nats_auth, new_settings
from tests.pgproc import OwnPostgres

pytestmark = [pytest.mark.integration, needs_nats_auth]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def check(settings: Settings, tokens: dict[str, str], action: str) -> CheckResult:
    async with AsyncGate("deploy-bot", tokens["deploy-bot"], settings.url, namespace=settings.namespace) as gate:
        return await gate.check(action, "api-v2")


def post(url: str, form: dict[str, str]) -> tuple[int, str]:
    data = urllib.parse.urlencode(form).encode()
    try:
        with urllib.request.urlopen(url, data=data, timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with ``labels`` (0 when there is none)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


class Stack:
    def __init__(self, settings: Settings, running: RunningServices, server: NatsProcess, store: Path,
                 credentials: NatsCredentials, port: int, pg: OwnPostgres) -> None:
        self.settings, self.running, self.server = settings, running, server
        self.store, self.credentials, self.port, self.pg = store, credentials, port, pg

    @property
    def url(self) -> str:
        assert self.running.http is not None
        return self.running.http.url

    def restart_nats(self) -> None:
        self.server = start_nats(self.port, self.store, credentials=self.credentials,
                                 names=Names(self.settings.namespace))


@pytest.fixture
async def observed(own_pg: OwnPostgres, tmp_path: Path) -> AsyncIterator[Stack]:
    namespace = f"m{secrets.token_hex(4)}"
    generated = NatsCredentials.generate()
    credentials = NatsCredentials({**generated.passwords, MAINTENANCE_USER: new_password()}, generated.issuer_seed)
    port = free_port()
    server = start_nats(port, tmp_path / "nats", credentials=credentials, names=Names(namespace))
    stack: Stack | None = None
    try:  # the nats-server stops however the start goes
        db = await ensure_database(own_pg.url, "claiim")
        settings = new_settings(server.url, db, namespace, credentials)
        verifier = str(settings.require_checkpoint_signer().verifier)
        settings = settings.model_copy(update={"http_port": 0, "ui_port": 0, "checkpoint_verifier": verifier})
        running = await start_services(settings, (*backend(settings), "admin"))
        stack = Stack(settings, running, server, tmp_path / "nats", credentials, port, own_pg)
        try:
            yield stack
        finally:
            await running.stop()
    finally:
        (stack.server if stack is not None else server).stop()


async def test_one_check_moves_the_decision_counter_by_one(observed: Stack) -> None:
    settings = observed.settings
    tokens = await load_demo(settings)
    assert await asyncio.to_thread(get, observed.url + "/healthz") == (200, "ok\n")
    labels = {"org": "demo", "outcome": "DENY", "category": "policy"}
    _, before = await asyncio.to_thread(get, observed.url + "/metrics")
    assert (await check(settings, tokens, "deploy:production")).outcome == "DENY"
    _, after = await asyncio.to_thread(get, observed.url + "/metrics")
    assert sample(after, "claiim_gate_decisions_total", **labels) == sample(before, "claiim_gate_decisions_total",
                                                                           **labels) + 1
    count = "claiim_gate_decision_seconds_count"
    assert sample(after, count) == sample(before, count) + 1
    assert sample(after, "claiim_gate_in_flight") == 0
    assert sample(after, "claiim_gate_registry_control_seq") > 0
    assert sample(after, "claiim_gate_registry_control_lag") == 0
    assert sample(after, "claiim_control_commands_total", kind="apply", result="ok") == 1
    assert sample(after, "claiim_control_proposals_pending") == 0
    _, text = await until(observed.url + "/metrics", lambda s, t: sample(t, "claiim_ocsf_published_total") >= 1)
    assert sample(text, "claiim_ocsf_published_total") == 1 and sample(text, "claiim_ocsf_pending") == 0
    assert observed.running.admin is not None
    await asyncio.to_thread(get, observed.running.admin.url + "/login")
    _, text = await asyncio.to_thread(get, observed.url + "/metrics")
    assert sample(text, "claiim_ui_responses_total", status="2xx") >= 1 and sample(text, "claiim_ui_feed_lag") == 0
    for secret in (*tokens.values(), settings.require_admin_token()):
        assert secret.split(".", 1)[-1] not in text, "a token is in the metrics"


async def test_readiness_fails_while_nats_is_gone_and_recovers(observed: Stack) -> None:
    assert await asyncio.to_thread(get, observed.url + "/readyz") == (200, "ready\n")
    observed.server.stop()
    for _ in range(100):
        status, text = await asyncio.to_thread(get, observed.url + "/readyz")
        if status == 503:
            break
        await asyncio.sleep(0.1)
    assert status == 503 and "NATS: the gate connection is not connected" in text, text
    assert (await asyncio.to_thread(get, observed.url + "/healthz"))[0] == 200  # alive all the while
    assert observed.running.admin is not None  # the UI's login tells an outage from a refused token
    status, text = await asyncio.to_thread(post, observed.running.admin.url + "/login",
                                           {"token": observed.settings.require_admin_token(), "org": "demo"})
    assert status == 503 and "the service is unavailable" in text and "login refused" not in text
    observed.restart_nats()
    for _ in range(300):
        status, text = await asyncio.to_thread(get, observed.url + "/readyz")
        if status == 200:
            break
        await asyncio.sleep(0.1)
    assert (status, text) == (200, "ready\n")


async def until(url: str, ok: object, seconds: float = 30.0) -> tuple[int, str]:
    """GET ``url`` until ``ok(status, text)`` holds or ``seconds`` pass; the last answer."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        status, text = await asyncio.to_thread(get, url)
        if ok(status, text) or asyncio.get_running_loop().time() > deadline:  # type: ignore[operator]
            return status, text
        await asyncio.sleep(0.1)


async def test_chron_reports_what_it_stores_and_is_not_ready_without_postgresql(observed: Stack) -> None:
    settings, names = observed.settings, Names(observed.settings.namespace)
    tokens = await load_demo(settings)
    await check(settings, tokens, "deploy:staging")
    _, text = await until(observed.url + "/metrics", lambda s, t: sample(
        t, "claiim_chron_leaves_total", stream=names.decisions_stream) >= 1 and sample(
        t, "claiim_chron_checkpoint_age_seconds") >= 0, seconds=15)
    assert sample(text, "claiim_chron_leaves_total", stream=names.decisions_stream) == 1
    assert sample(text, "claiim_chron_tree_size") == 1 + sample(text, "claiim_chron_leaves_total",
                                                                stream=names.control_stream)
    assert sample(text, "claiim_chron_pending", stream=names.decisions_stream) == 0
    assert 0 <= sample(text, "claiim_chron_checkpoint_age_seconds") < 10
    assert await asyncio.to_thread(get, observed.url + "/readyz") == (200, "ready\n")
    observed.pg.stop()
    status, text = await until(observed.url + "/readyz", lambda s, t: s == 503)
    assert status == 503 and "PostgreSQL" in text, text
    observed.pg.start()
    assert await until(observed.url + "/readyz", lambda s, t: s == 200) == (200, "ready\n")


async def test_readiness_fails_while_a_stream_is_missing_and_recovers(observed: Stack) -> None:
    """The OCSF stream deleted behind the services' backs: not ready, naming the stream; made again: ready."""
    names = Names(observed.settings.namespace)
    nc = await connect_as(observed.settings)
    try:
        await nc.jetstream().delete_stream(names.ocsf_stream)
        status, text = await until(observed.url + "/readyz", lambda s, t: s == 503)
        assert status == 503 and f"stream {names.ocsf_stream} not available" in text, text
        await ensure_streams(nc.jetstream(), names)
        assert await until(observed.url + "/readyz", lambda s, t: s == 200) == (200, "ready\n")
    finally:
        await nc.close()


async def test_chron_is_not_ready_while_messages_wait_and_nothing_is_stored(
        observed: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL answers but Chron's writes wait on a lock another session holds: once nothing has been stored
    for the stall time while a decision waits, Chron is not ready; the lock released, it stores and is ready."""
    monkeypatch.setattr(chron_service, "STALL_S", 1.0)
    settings = observed.settings
    tokens = await load_demo(settings)
    assert await until(observed.url + "/readyz", lambda s, t: s == 200) == (200, "ready\n")
    blocker = await asyncpg.connect(settings.database_url)
    try:
        locked = blocker.transaction()
        await locked.start()
        await blocker.execute("LOCK TABLE chron_tree IN ACCESS EXCLUSIVE MODE")
        await check(settings, tokens, "deploy:staging")
        status, text = await until(observed.url + "/readyz", lambda s, t: "stalled" in t)
        assert status == 503 and re.search(r"stalled: \d+ messages wait and nothing was stored", text), text
        await locked.rollback()
        assert await until(observed.url + "/readyz", lambda s, t: s == 200) == (200, "ready\n")
    finally:
        await blocker.close()


DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def queried_metrics() -> set[str]:
    """Every claiim metric name the Grafana dashboard and the Prometheus alert rules query."""
    dashboard = json.loads((DEPLOY / "grafana" / "claiim.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return {name for expr in exprs for name in re.findall(r"\bclaiim_[a-z_]+", expr)}


async def test_the_dashboard_and_the_alerts_query_metrics_that_exist(observed: Stack) -> None:
    names = queried_metrics()
    assert {"claiim_gate_decisions_total", "claiim_chron_pending", "claiim_chron_checkpoint_age_seconds",
            "claiim_gate_puback_failures_total", "claiim_ready"} <= names
    settings = observed.settings
    tokens = await load_demo(settings)
    await check(settings, tokens, "deploy:staging")
    _, text = await asyncio.to_thread(get, observed.url + "/metrics")
    exposed = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    assert not names - exposed, f"queried but not exposed: {sorted(names - exposed)}"
    assert sample(text, "claiim_ready") == 1
