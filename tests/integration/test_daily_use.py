"""Daily use on the real stack: dry runs that cannot be taken for changes, token rotation with a grace
period, and ``claiim chron export`` scoped to the token's role."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from claiim import AsyncAdmin, AsyncGate

from tests.conftest import AUTH_ON, Stack, connect_agent
from tests.integration.test_agent_lifecycle import check, own, refused_by_nats

pytestmark = pytest.mark.integration
CLAIIM = str(Path(sys.executable).parent / "claiim")
NEW_POLICY = {"org": "demo", "policies": [{"name": "no-prod", "skill": "deploy-v2", "allow": ["deploy:staging"],
                                           "deny": ["deploy:production"]}]}


async def cli(stack: Stack, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess, in a thread: the stack's services answer it on this event loop."""
    env = {**os.environ, "CLAIIM_URL": stack.settings.url, "CLAIIM_ADMIN_TOKEN": token,
           "CLAIIM_NAMESPACE": stack.settings.namespace}
    env.pop("CLAIIM_ORG", None)
    return await asyncio.to_thread(subprocess.run, [CLAIIM, "--env-file", "/dev/null", *args], capture_output=True,
                                   text=True, env=env, timeout=60)


async def org_admin(stack: Stack, name: str, role: str = "admin", org: str = "demo") -> tuple[AsyncAdmin, str]:
    stack.admin.org = org
    try:
        token = await stack.admin.enrol_admin(name, role)  # type: ignore[arg-type]
    finally:
        stack.admin.org = "demo"
    return AsyncAdmin(stack.settings.url, token, org=org, namespace=stack.settings.namespace), token


async def test_a_dry_run_says_what_would_happen_and_whether_it_would_wait(stack: Stack, tmp_path: Path) -> None:
    """An org admin's dry run of a widening change says "would publish" and that it would be a proposal
    needing the org's approvals; the operator's says it would apply at once; neither changes anything."""
    carol, token = await org_admin(stack, "carol")
    try:
        before = stack.running.followers[0].registry.last_seq
        reply = await carol.apply(NEW_POLICY, dry_run=True)
        assert (reply.dry_run, reply.would_propose, reply.approvals_required) == (True, True, 1)
        assert reply.changes == ["would publish policy no-prod-v2"] and not reply.proposal_id
        operator = await stack.admin.apply(NEW_POLICY, dry_run=True)
        assert (operator.dry_run, operator.would_propose, operator.approvals_required) == (True, False, 0)
        unchanged = await carol.apply({"org": "demo", "skills": [{"name": "review", "version": 1, "actions": [
            "pr:comment", "pr:merge", "pr:approve"], "description": "Code review on pull requests."}]}, dry_run=True)
        assert unchanged.changes == ["unchanged skill review-v1"] and not unchanged.would_propose
        assert stack.running.followers[0].registry.last_seq == before, "a dry run appended something"
    finally:
        await carol.close()
    policy = tmp_path / "no-prod.yaml"
    policy.write_text("name: no-prod\nskill: deploy-v2\nallow: [deploy:staging]\ndeny: [deploy:production]\n")
    out = await cli(stack, token, "policy", "publish", str(policy), "--dry-run")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == ["dry run: nothing was applied", "would publish policy no-prod-v2"], out.stdout
    assert "would become a proposal" in lines[2] and "1 other admin" in lines[2], out.stdout
    assert "published" not in out.stdout.replace("would publish", "")
    out = await cli(stack, stack.settings.require_admin_token(), "policy", "publish", str(policy), "--dry-run",
                    "--org", "demo")
    assert out.returncode == 0 and "would take effect at once" in out.stdout, out.stdout + out.stderr
    assert stack.running.followers[0].registry.last_seq == before


async def test_a_rotation_with_grace_keeps_the_old_token_until_it_ends(stack: Stack) -> None:
    """With a grace the old token is ALLOWED (and admitted by NATS) beside the new one until the grace
    ends, then DENY auth:rotated-token and refused; its connection opened during the grace is closed.
    The grace's end is in the control event in Chron; without a grace, rotation is immediate."""
    old = stack.tokens["deploy-bot"]
    before = await connect_agent(stack.settings, "deploy-bot", old) if AUTH_ON else None
    new = await stack.admin.rotate_token("deploy-bot", grace=3)
    assert (await check(stack, old))[0] == "ALLOW" and (await check(stack, new))[0] == "ALLOW"
    assert await own(stack, old) == "ALLOW" and await own(stack, new) == "ALLOW"
    during = await connect_agent(stack.settings, "deploy-bot", old) if AUTH_ON else None
    try:
        await asyncio.sleep(1.0)
        assert before is None or before.is_connected, "the grace did not keep the old token's connection"
        await asyncio.sleep(2.5)
        assert await check(stack, old) == ("DENY", "auth:rotated-token -- this token of agent deploy-bot was rotated")
        assert await refused_by_nats(stack, old)
        assert (await check(stack, new))[0] == "ALLOW"
        # Opened during the grace: its user JWT expires with it. Opened before: the auth service ends it.
        for conn in (c for c in (during, before) if c is not None):
            for _ in range(50):
                if conn.is_closed or not conn.is_connected:
                    break
                await asyncio.sleep(0.1)
            assert conn.is_closed or not conn.is_connected, "a connection of the old token outlived its grace"
    finally:
        for conn in (c for c in (during, before) if c is not None):
            await conn.close()
    assert stack.running.chron is not None
    for _ in range(100):
        rows = await stack.running.chron.store.query(kind="control", agent_id="deploy-bot",
                                                      action="agent.token-rotated")
        if rows:
            break
        await asyncio.sleep(0.05)
    assert rows and b'"grace_until":"' in bytes(rows[0]["event"])
    newest = await stack.admin.rotate_token("deploy-bot")
    assert (await check(stack, new))[1].startswith("auth:rotated-token"), "the default is immediate"
    assert (await check(stack, newest))[0] == "ALLOW"


async def records_in_chron(stack: Stack, org: str, count: int) -> None:
    assert stack.running.chron is not None
    for _ in range(200):
        if len(await stack.running.chron.store.query(org=org, kind="decision")) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} decisions of org {org} in Chron")


async def test_export_holds_the_tokens_org_only_and_the_operator_sees_all(stack: Stack) -> None:
    """With decisions in two orgs, an auditor of one exports only its org's decisions (native and OCSF),
    an admin of the other only that org's, and the operator every org's."""
    other = await stack.admin.apply({
        "org": "other", "skills": [{"name": "ship", "actions": ["ship:build"]}],
        "policies": [{"name": "ship", "skill": "ship-v1", "allow": ["ship:build"]}],
        "agents": [{"id": "ship-bot", "anchor": "o.owner", "skills": ["ship-v1"], "policy": "ship"}]})
    async with AsyncGate("ship-bot", other.tokens["ship-bot"], stack.settings.url,
                         namespace=stack.settings.namespace) as gate:
        await gate.check(action="ship:build", target="x")
    async with AsyncGate("deploy-bot", stack.tokens["deploy-bot"], stack.settings.url,
                         namespace=stack.settings.namespace) as gate:
        for _ in range(3):
            await gate.check(action="deploy:staging", target="api-v2")
    await records_in_chron(stack, "demo", 3)
    await records_in_chron(stack, "other", 1)
    auditor, auditor_token = await org_admin(stack, "eve", "auditor")
    await auditor.close()
    oscar, oscar_token = await org_admin(stack, "oscar", "admin", org="other")
    await oscar.close()

    async def exported(token: str, *extra: str) -> list[dict[str, object]]:
        out = await cli(stack, token, "chron", "export", *extra)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    demo = await exported(auditor_token)
    assert len(demo) >= 3 and {e["org"] for e in demo} == {"demo"}
    assert [e["decided_at"] for e in demo] == sorted(str(e["decided_at"]) for e in demo), "oldest first"
    ocsf = await exported(auditor_token, "--format", "ocsf")
    assert len(ocsf) == len(demo) and "other" not in json.dumps(ocsf)
    assert len(await exported(auditor_token, "--limit", "2")) == 2
    assert {e["org"] for e in await exported(oscar_token)} == {"other"}
    everything = await exported(stack.settings.require_admin_token())
    assert {e["org"] for e in everything} >= {"demo", "other"}
