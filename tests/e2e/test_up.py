"""``claiim up`` as a newcomer runs it: the seed example, the CLI, the rehearsal, restarts."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from claiim import AsyncGate
from claiim_core.names import Names
from claiim_runtime.settings import Settings
from claiim_server.servers import free_port
from nats.js.api import DeliverPolicy
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import connect_as
from tests.e2e.upstack import CLAIIM, SEED, Up, clean_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("up") / "stack"


@pytest.fixture(scope="module")
def up(data_dir: Path) -> Iterator[Up]:
    stack = Up(data_dir, free_port())
    yield stack
    if stack.process.poll() is None:
        stack.stop()


def test_up_writes_env_and_private_tokens(up: Up) -> None:
    """The stack writes DIR/env with the URL and admin settings, and the demo tokens with mode 600."""
    env = (up.data_dir / "env").read_text()
    assert f"CLAIIM_URL=nats://127.0.0.1:{up.port}\n" in env and "CLAIIM_ADMIN_TOKEN=adm_" in env
    mode = stat.S_IMODE((up.data_dir / "demo-tokens.json").stat().st_mode)
    assert mode == 0o600
    assert set(up.tokens) == {"deploy-bot", "review-bot"}


def test_the_admin_ui_logs_a_demo_admin_in(up: Up) -> None:
    """`claiim up` serves the admin UI at CLAIIM_UI_URL with its own assets, and alice's demo token logs in."""
    env = dict(line.split("=", 1) for line in (up.data_dir / "env").read_text().splitlines())
    url = env["CLAIIM_UI_URL"]
    with urllib.request.urlopen(url + "/static/app.css", timeout=10) as css:
        assert css.headers["Content-Type"].startswith("text/css")
    alice = json.loads((up.data_dir / "demo-admins.json").read_text())["alice"]
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    form = urllib.parse.urlencode({"token": alice, "org": "", "next": "/agents"}).encode()
    with opener.open(url + "/login", data=form, timeout=10) as page:
        text = page.read().decode()
    assert page.url.endswith("/agents") and "deploy-bot" in text and 'id="who-name">alice<' in text


def test_seed_example_runs_verbatim_and_lands_in_chron(up: Up) -> None:
    """The seed example (with the real token) answers ALLOW then DENY, and both are in Chron."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(SEED).format(token=up.tokens["deploy-bot"])],
                         capture_output=True, text=True, timeout=60,
                         env={**clean_env(), "CLAIIM_URL": f"nats://127.0.0.1:{up.port}"})
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    allow_outcome, allow_id = first.split()
    deny_outcome, deny_id, deny_reason = second.split(" ", 2)
    assert (allow_outcome, deny_outcome) == ("ALLOW", "DENY")
    assert deny_reason == "policy:no-prod-v1 -- action explicitly denied"
    for chron_id, outcome in ((allow_id, "ALLOW"), (deny_id, "DENY")):
        for _ in range(50):
            shown = up.cli("chron", "show", chron_id, "--json")
            if shown.returncode == 0:
                break
            time.sleep(0.1)
        record = json.loads(shown.stdout)
        assert (record["outcome"], record["agent_id"], record["anchor"], record["policy"], record["skill"]) == (
            outcome, "deploy-bot", "s.emp1", "no-prod-v1", "deploy-v2")
    listed = up.cli("chron", "list", "--agent", "deploy-bot", "--outcome", "deny")
    assert listed.returncode == 0 and deny_id in listed.stdout and allow_id not in listed.stdout
    header = listed.stdout.splitlines()[0].split()
    assert header == ["CHRON_ID", "OCCURRED_AT", "OUTCOME", "AGENT_ID", "ANCHOR", "ACTION", "TARGET", "POLICY",
                      "SKILL", "REASON"]


def test_the_ocsf_feed_process_publishes_each_decision(up: Up) -> None:
    """`claiim up` runs the OCSF feed as a process of its own: a decision reaches the OCSF stream, read as the
    SIEM's NATS user."""
    env = up.env
    settings = Settings(url=env["CLAIIM_URL"], namespace=env["CLAIIM_NAMESPACE"],
                        nats_passwords=",".join(f"{user}={password}" for user, password in json.loads(
                            (up.data_dir / "secrets.json").read_text())["nats_passwords"].items()))

    async def ocsf_uid() -> tuple[str, str]:
        async with AsyncGate("deploy-bot", up.tokens["deploy-bot"], settings.url) as gate:
            chron_id = (await gate.check("deploy:production", "api-v2")).chron_id
        nc = await connect_as(settings, "siem")
        try:
            sub = await nc.jetstream().subscribe(f"{settings.namespace}.ocsf.demo.deploy-bot.deny",
                                                 stream=Names(settings.namespace).ocsf_stream, ordered_consumer=True,
                                                 deliver_policy=DeliverPolicy.LAST_PER_SUBJECT)
            while True:
                event = json.loads((await sub.next_msg(timeout=10)).data)
                if event["metadata"]["uid"] == chron_id:
                    return chron_id, str(event["disposition"])
        finally:
            await nc.close()

    chron_id, disposition = asyncio.run(ocsf_uid())
    assert chron_id.startswith("chr_") and disposition == "Blocked"


def test_every_process_serves_metrics_and_health_and_one_check_counts_once(up: Up) -> None:
    """DIR/env names each process's metrics and health; every /readyz is 200; one Gate.check moves the gates'
    decision counter (summed over the workers) by exactly one."""
    env = up.env
    gates = env["CLAIIM_HTTP_GATE"].split(",")
    bases = {*gates, env["CLAIIM_HTTP_OCSF"], env["CLAIIM_HTTP_CONTROL"], env["CLAIIM_HTTP_CHRON"],
             env["CLAIIM_HTTP_ADMIN"]}
    for base in bases:
        with urllib.request.urlopen(base + "/readyz", timeout=10) as ready:
            assert (ready.status, ready.read()) == (200, b"ready\n"), base

    def decisions() -> float:
        total = 0.0
        for base in gates:
            with urllib.request.urlopen(base + "/metrics", timeout=10) as page:
                for family in text_string_to_metric_families(page.read().decode()):
                    total += sum(s.value for s in family.samples if s.name == "claiim_gate_decisions_total"
                                 and s.labels == {"org": "demo", "outcome": "ALLOW", "category": "policy"})
        return total

    before = decisions()
    script = ("from claiim import Gate\n"
              f"print(Gate(agent_id='deploy-bot', token={up.tokens['deploy-bot']!r}).check("
              "action='deploy:staging', target='api-v2').outcome)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**clean_env(), "CLAIIM_URL": env["CLAIIM_URL"]})
    assert out.stdout.strip() == "ALLOW", out.stderr
    assert decisions() == before + 1


def test_rehearsal_passes(up: Up) -> None:
    """``claiim rehearsal`` refuses to write into a stack without ``--yes``, saying what it would write;
    with it, it passes at least 13 checks and fails none."""
    refused = up.cli("rehearsal")
    assert refused.returncode == 2 and "--yes" in refused.stderr and "rehearsal-<hex>" in refused.stderr, (
        refused.stdout + refused.stderr)
    assert "PASS" not in refused.stdout
    out = up.cli("rehearsal", "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    last = out.stdout.strip().splitlines()[-1]
    passed, failed = (int(part.split(":")[1]) for part in last.split(" / "))
    assert passed >= 13 and failed == 0


ATTACK = """
import asyncio, json, sys
import nats

URL, AGENT_TOKEN, ADMIN_TOKEN, INBOX_AGENT, INBOX_ADMIN = sys.argv[1:6]
POLICY = {"type": "policy.published", "schema": "claiim.control/1", "event_id": "chr_01forgedpolicy00000000000",
          "at": "2026-11-27T10:00:00.000000Z", "actor": "alice", "org": "demo", "name": "open", "version": 1,
          "description": "", "document": {"skill": "deploy-v2", "allow": ["deploy:*"], "deny": []},
          "content_hash": "sha256:" + "0" * 64}
BIND = {"type": "agent.updated", "schema": "claiim.control/1", "event_id": "chr_01forgedbinding0000000000",
        "at": "2026-11-27T10:00:00.000000Z", "actor": "alice", "org": "demo", "agent_id": "deploy-bot",
        "anchor": "s.emp1", "description": "", "skills": ["deploy-v2"], "policy": "open-v1"}
DECISION = {"schema": "claiim.decision/1", "chron_id": "chr_01forgeddecision0000000000",
            "decided_at": "2026-11-27T10:00:00.000000Z", "outcome": "ALLOW",
            "reason": "policy:no-prod-v1 -- action allowed", "rule": "allow[0]", "org": "demo",
            "agent_id": "deploy-bot", "anchor": "s.emp1", "action": "deploy:production", "target": "prod-db",
            "context": {}, "request_id": None, "policy": "no-prod-v1", "skill": "deploy-v2", "gate": "g",
            "control_seq": 1}
FORGERIES = [("claiim.control.demo.policy.open", POLICY), ("claiim.control.demo.agent.deploy-bot", BIND),
             ("claiim.decision.demo.deploy-bot.allow", DECISION)]


async def main() -> None:
    try:
        await nats.connect(URL, max_reconnect_attempts=0, allow_reconnect=False)
        print("anonymous: connected")
    except Exception as e:
        print("anonymous:", type(e).__name__, e)
    for who, user, token, inbox in (("agent", "deploy-bot", AGENT_TOKEN, INBOX_AGENT),
                                    ("admin", "admin", ADMIN_TOKEN, INBOX_ADMIN)):
        errors = []

        async def on_error(e: Exception) -> None:
            errors.append(str(e))

        nc = await nats.connect(URL, user=user, password=token, inbox_prefix=inbox, error_cb=on_error,
                                max_reconnect_attempts=0, allow_reconnect=False, connect_timeout=5)
        for subject, event in FORGERIES:
            await nc.publish(subject, json.dumps(event).encode(), headers={"Nats-Msg-Id": event.get("event_id", "x")})
        await nc.flush()
        await asyncio.sleep(0.3)
        await nc.close()
        print(who, "refused:", sum("permissions violation" in e for e in errors), "of", len(FORGERIES))

asyncio.run(main())
"""


def test_the_two_forgeries_fail_on_claiim_up(up: Up) -> None:
    """Without credentials nothing connects; as an agent or an admin (alice herself), publishing the forged
    policy, the forged binding and a forged ALLOW is refused by NATS; deploy:production stays DENY and
    Chron holds none of them."""
    from claiim_core.tokens import inbox_prefix

    env = dict(line.split("=", 1) for line in (up.data_dir / "env").read_text().splitlines())
    alice = json.loads((up.data_dir / "demo-admins.json").read_text())["alice"]
    agent = up.tokens["deploy-bot"]
    out = subprocess.run([sys.executable, "-c", ATTACK, env["CLAIIM_URL"], agent, alice, inbox_prefix(agent),
                          inbox_prefix(alice)], capture_output=True, text=True, timeout=60, env=clean_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["anonymous: Error nats: 'Authorization Violation'", "agent refused: 3 of 3",
                                       "admin refused: 3 of 3"], out.stdout
    explained = up.cli("explain", "--agent", "deploy-bot", "--action", "deploy:production", "--target", "prod-db")
    assert "=> DENY policy:no-prod-v1 -- action explicitly denied" in explained.stdout, explained.stdout
    for chron_id in ("chr_01forgedpolicy00000000000", "chr_01forgedbinding0000000000",
                     "chr_01forgeddecision0000000000"):
        assert up.cli("chron", "show", chron_id).returncode != 0
    status = up.cli("chron", "status")
    assert status.returncode == 0 and status.stdout.splitlines()[-1].split() == ["ready:", "yes"]


def test_apply_from_a_file_is_idempotent(up: Up, tmp_path: Path) -> None:
    """``claiim apply -f`` publishes once; the same file again says nothing changed."""
    bundle = tmp_path / "bundle.yaml"
    bundle.write_text(textwrap.dedent("""
        org: e2e
        skills: [{name: notes, actions: ["notes:read", "notes:write"]}]
        policies: [{name: read-only, skill: notes-v1, allow: ["notes:read"]}]
        agents: [{id: notes-bot, anchor: a.person, skills: [notes-v1], policy: read-only-v1}]
    """))
    first = up.cli("apply", "-f", str(bundle))
    assert first.returncode == 0, first.stderr
    assert "registered agent notes-bot" in first.stdout and "token for notes-bot (shown once): clm_" in first.stdout
    second = up.cli("apply", "-f", str(bundle))
    assert second.returncode == 0 and "nothing to change" in second.stdout and "clm_" not in second.stdout


def test_a_taken_port_is_reported_clearly(up: Up, tmp_path: Path) -> None:
    """A second stack on the same port stops at once, saying the port is in use."""
    out = subprocess.run([CLAIIM, "up", "--data-dir", str(tmp_path / "other"), "--nats-port", str(up.port),
                          "--ui-port", str(free_port())],
                         capture_output=True, text=True, timeout=60, env=clean_env())
    assert out.returncode != 0
    assert f"port {up.port} is already in use" in out.stderr


def test_restart_keeps_data_and_tokens(up: Up) -> None:
    """After SIGTERM the stack exits cleanly; started again, old records and tokens are still good."""
    before = json.loads(up.cli("chron", "list", "--json", "--limit", "1000").stdout)
    assert before
    assert up.stop() == 0
    again = Up(up.data_dir, up.port)
    try:
        assert any("demo bundle: unchanged" in line for line in again.lines)
        after = json.loads(again.cli("chron", "list", "--json", "--limit", "1000").stdout)
        assert {r["chron_id"] for r in before} <= {r["chron_id"] for r in after}
        out = subprocess.run([sys.executable, "-c", textwrap.dedent(SEED).format(token=again.tokens["deploy-bot"])],
                             capture_output=True, text=True, timeout=60,
                             env={**clean_env(), "CLAIIM_URL": f"nats://127.0.0.1:{again.port}"})
        assert out.stdout.startswith("ALLOW chr_"), out.stderr
    finally:
        assert again.stop() == 0


def test_a_replaced_control_key_refuses_the_old_events_and_says_so(up: Up) -> None:
    """With DIR/control.key replaced, every control event signed with the old key is refused, and claiim up
    says why at start instead of running on a registry nobody signed."""
    if up.process.poll() is None:
        up.stop()
    for name in ("control.key", "control.pub"):
        (up.data_dir / name).rename(up.data_dir / f"{name}.old")
    again = Up(up.data_dir, up.port)
    try:
        warning = [line for line in again.lines if line.startswith("warning: ")]
        assert len(warning) == 1 and "control events in" in warning[0] and "not signed by this stack's control key" \
            in warning[0], again.lines
    finally:
        assert again.stop() == 0
