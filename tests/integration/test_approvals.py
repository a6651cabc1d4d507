"""Approvals on the real stack: an ``approve`` rule holds a check until the agent's anchor grants or refuses
it (in the CLI, the SDK), or it expires; each step is recorded in Chron and linked to the PENDING decision;
a grant is good once; only the right person can decide; a gate restart loses nothing; the org's webhook is
told."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from claiim import AsyncAdmin, AsyncGate, ForbiddenError, NotFoundError, UnauthenticatedError
from claiim.errors import ConflictError
from claiim_core.schemas import DecisionEvent
from claiim_server.bootstrap import start_services

from tests.conftest import Stack
from tests.integration.test_decision_path import wait_in_chron

pytestmark = pytest.mark.integration
CLAIIM = str(Path(sys.executable).parent / "claiim")


def gated(ttl: int = 60, approver: str = "anchor") -> dict[str, object]:
    """deploy-bot's production deploys wait for approval (by its anchor s.emp1, or the admins)."""
    return {"org": "demo",
            "policies": [{"name": "gated", "skill": "deploy-v2", "allow": ["deploy:staging", "health:check"],
                          "deny": ["infra:destroy"],
                          "approve": [{"action": "deploy:production", "ttl": ttl, "approver": approver,
                                       "description": "production needs its anchor"}]}],
            "agents": [{"id": "deploy-bot", "anchor": "s.emp1", "description": "Deploys api-v2.",
                        "skills": ["deploy-v2"], "policy": "gated"}]}


async def person(stack: Stack, name: str, role: str = "anchor", org: str = "demo") -> AsyncAdmin:
    stack.admin.org = org
    try:
        token = await stack.admin.enrol_admin(name, role)  # type: ignore[arg-type]
    finally:
        stack.admin.org = "demo"
    return AsyncAdmin(stack.settings.url, token, org=org, namespace=stack.settings.namespace)


def gate(stack: Stack) -> AsyncGate:
    return AsyncGate("deploy-bot", stack.tokens["deploy-bot"], stack.settings.url,
                     namespace=stack.settings.namespace, timeout=10)


async def cli(stack: Stack, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess, in a thread: the stack's services answer its login on this event loop."""
    env = {**os.environ, "CLAIIM_URL": stack.settings.url, "CLAIIM_ADMIN_TOKEN": token,
           "CLAIIM_NAMESPACE": stack.settings.namespace}
    env.pop("CLAIIM_ORG", None)
    return await asyncio.to_thread(subprocess.run, [CLAIIM, *args], capture_output=True, text=True, env=env,
                                   timeout=60)


async def records(stack: Stack, approval_id: str, count: int) -> list[dict[str, object]]:
    """Chron's records of one approval, oldest first, once there are ``count`` of them."""
    assert stack.running.chron is not None
    for _ in range(200):
        rows = await stack.running.chron.store.query(approval_id=approval_id)
        if len(rows) >= count:
            return sorted(rows, key=lambda r: int(str(r["leaf_index"])))
        await asyncio.sleep(0.05)
    raise AssertionError(f"approval {approval_id} has {len(rows)} records in Chron, not {count}")


async def test_the_anchor_grants_in_the_cli_and_the_waiting_check_gets_allow_once(stack: Stack) -> None:
    applied = await stack.admin.apply(gated())
    assert any("its anchor s.emp1 is not enrolled" in w for w in applied.warnings), applied.warnings
    anchor = await person(stack, "s.emp1")
    token = anchor._token
    try:
        async with gate(stack) as g:
            waiting = asyncio.create_task(g.check("deploy:production", "api-v2", {"ticket": "CHG-1"}, wait=20))
            for _ in range(100):
                found = await anchor.approvals()
                if found:
                    break
                await asyncio.sleep(0.05)
            (approval,) = found
            assert (approval.agent_id, approval.action, approval.target, approval.context, approval.status,
                    approval.policy, approval.approver) == (
                "deploy-bot", "deploy:production", "api-v2", {"ticket": "CHG-1"}, "pending", "gated-v1", "anchor")
            assert approval.rule == "approve[0]: deploy:production -- production needs its anchor"
            assert not waiting.done(), "PENDING is never permission: the check waits"

            shown = await cli(stack, token, "approvals", "show", approval.approval_id)
            assert shown.returncode == 0 and approval.request_hash in shown.stdout, shown.stderr
            wrong = await cli(stack, token, "approvals", "grant", approval.approval_id, "--reason", "ok",
                        "--hash", "sha256:" + "0" * 64)
            assert wrong.returncode != 0 and "not the one waiting" in wrong.stderr
            granted = await cli(stack, token, "approvals", "grant", approval.approval_id, "--reason", "change CHG-1 ok",
                          "--hash", approval.request_hash)
            assert granted.returncode == 0, granted.stderr
            assert f"granted approval {approval.approval_id}" in granted.stdout

            allowed = await asyncio.wait_for(waiting, 15)
            assert (allowed.outcome, allowed.approval_id, allowed.policy) == ("ALLOW", approval.approval_id,
                                                                               "gated-v1")
            assert allowed.reason == "approval:granted -- granted by s.emp1: change CHG-1 ok" and allowed.allowed
            again = await g.wait(approval.approval_id, 5)
            assert (again.outcome, again.reason.split(" --")[0]) == ("DENY", "approval:used")
            twice = await cli(stack, token, "approvals", "refuse", approval.approval_id, "--reason", "too late")
            assert twice.returncode != 0 and "already granted by s.emp1" in twice.stderr

        pending_row, grant_row, allow_row = await records(stack, approval.approval_id, 3)
        assert (pending_row["kind"], pending_row["outcome"], pending_row["chron_id"]) == (
            "decision", "PENDING", approval.approval_id)
        assert (grant_row["kind"], grant_row["action"], grant_row["actor"]) == ("control", "approval.granted",
                                                                                 "s.emp1")
        assert (allow_row["outcome"], allow_row["chron_id"], allow_row["policy"]) == ("ALLOW", allowed.chron_id,
                                                                                      "gated-v1")
        ended = msgspec.json.decode(allow_row["event"], type=DecisionEvent)  # type: ignore[call-overload]
        assert ended.approval and (ended.approval.id, ended.approval.decided_by, ended.approval.note,
                                   ended.approval.event_id) == (approval.approval_id, "s.emp1", "change CHG-1 ok",
                                                                grant_row["chron_id"])
        listed = await cli(stack, stack.settings.require_admin_token(), "chron", "list", "--org", "demo", "--approval",
                     approval.approval_id, "--json")
        assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 3, listed.stderr
        mine = await anchor.chron_list()
        assert {r.agent_id for r in mine} == {"deploy-bot"}, "an anchor reads its agents' records only"
        with pytest.raises(ForbiddenError):
            await anchor.agents()
    finally:
        await anchor.close()


async def test_a_refusal_is_deny_with_the_anchors_reason_and_an_expiry_is_deny(stack: Stack) -> None:
    await stack.admin.apply(gated(ttl=2))
    anchor = await person(stack, "s.emp1")
    try:
        async with gate(stack) as g:
            first = await g.check("deploy:production", "api-v2")
            assert (first.outcome, first.reason) == ("PENDING", "policy:gated-v1 -- action needs approval")
            assert not first.allowed, "PENDING is not permission"
            assert first.approval_id == first.chron_id and first.expires_at
            refused = await anchor.refuse(first.approval_id, "not during the freeze")
            assert refused.approvals[0].status == "refused"
            denied = await g.wait(first.approval_id, 5)
            assert (denied.outcome, denied.reason) == ("DENY", "approval:refused -- refused by s.emp1: not during "
                                                                "the freeze")
            second = await g.check("deploy:production", "api-v2")
            expired = await g.wait(second.approval_id, 10)
            assert (expired.outcome, expired.reason.split(" --")[0]) == ("DENY", "approval:expired")
            with pytest.raises(ConflictError, match="already ended"):
                await anchor.grant(second.approval_id, "too late")
            nobody = await g.check("deploy:production", "api-v2")
            staging = await g.check("deploy:staging", "api-v2")
        assert staging.outcome == "ALLOW" and not staging.approval_id
        for _ in range(150):  # nobody waits: control's sweep records the expiry after its grace
            if (await anchor.approval(nobody.approval_id)).status == "expired" and len(
                    await stack.running.chron.store.query(approval_id=nobody.approval_id)) == 2:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.1)
        rows = await records(stack, nobody.approval_id, 2)
        assert [r["action"] for r in rows] == ["deploy:production", "approval.expired"]
        assert (await anchor.approval(nobody.approval_id)).status == "expired"
    finally:
        await anchor.close()


async def test_only_the_anchor_decides_an_anchor_approval(stack: Stack) -> None:
    await stack.admin.apply(gated())
    await stack.admin.create_org("other")
    anchor = await person(stack, "s.emp1")
    others = [await person(stack, "j.smith"), await person(stack, "audrey", "auditor"),
              await person(stack, "mallory", "admin", org="other")]
    try:
        async with gate(stack) as g:
            pending = await g.check("deploy:production", "api-v2")
        for who in others[::2]:  # another agent's anchor, an admin of another org: they cannot even see it
            with pytest.raises(NotFoundError):
                await who.grant(pending.approval_id, "I approve")
            assert await who.approvals() == []
        with pytest.raises(ForbiddenError, match=r"only deploy-bot.s anchor s\.emp1"):
            await others[1].grant(pending.approval_id, "I approve")
        with pytest.raises(ForbiddenError, match="not the operator"):
            await stack.admin.grant(pending.approval_id, "break glass")
        agent_itself = AsyncAdmin(stack.settings.url, stack.tokens["deploy-bot"], org="demo",
                                  namespace=stack.settings.namespace)
        with pytest.raises(UnauthenticatedError):
            await agent_itself.grant(pending.approval_id, "I approve myself")
        await agent_itself.close()
        with pytest.raises(NotFoundError):
            await anchor.approval("chr_00000000000000000000000000")
        assert (await anchor.grant(pending.approval_id, "fine")).approvals[0].status == "granted"
    finally:
        for who in [anchor, *others]:
            await who.close()


async def test_admins_decide_an_admins_approval(stack: Stack) -> None:
    await stack.admin.apply(gated(approver="admins"))
    anchor = await person(stack, "s.emp1")
    admin = await person(stack, "ada", "admin")
    try:
        async with gate(stack) as g:
            pending = await g.check("deploy:production", "api-v2")
            with pytest.raises(ForbiddenError, match="an admin of org demo"):
                await anchor.grant(pending.approval_id, "mine")
            await admin.grant(pending.approval_id, "on call")
            assert (await g.wait(pending.approval_id, 5)).outcome == "ALLOW"
    finally:
        await anchor.close()
        await admin.close()


async def test_a_gate_restart_while_an_approval_waits_loses_nothing(stack: Stack) -> None:
    await stack.admin.apply(gated())
    anchor = await person(stack, "s.emp1")
    try:
        async with gate(stack) as g:
            pending = await g.check("deploy:production", "api-v2")
            waiting = asyncio.create_task(g.wait(pending.approval_id, 20))  # held by the gate that stops
            await asyncio.sleep(0.3)
            (first,) = stack.running.gates
            await first.stop()
            await stack.running.connections["gate"].close()
            stack.running.gates.clear()
            assert not waiting.done(), "a stopping gate answers PENDING: the agent asks again"
            replacement = await start_services(stack.settings, ("gate",), instance="gate-after-restart")
            try:
                await anchor.grant(pending.approval_id, "after the restart")
                allowed = await asyncio.wait_for(waiting, 15)
            finally:
                await replacement.stop()
        assert allowed.outcome == "ALLOW"
        stored = await wait_in_chron(stack, allowed.chron_id)
        assert stored["gate"] == "gate-after-restart"
    finally:
        await anchor.close()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, object]], list[int]]]:
    """A local webhook that answers each POST with the next status of ``statuses`` (then 200)."""
    received: list[dict[str, object]] = []
    statuses: list[int] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=statuses.pop(0) if statuses else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/hook", received, statuses
    finally:
        await runner.cleanup()


async def test_the_orgs_webhook_is_told_of_a_waiting_approval_and_retried(
        stack: Stack, receiver: tuple[str, list[dict[str, object]], list[int]]) -> None:
    url, received, statuses = receiver
    await stack.admin.apply(gated())
    set_by_operator = await stack.admin.set_webhook(url)
    assert not set_by_operator.proposal_id
    with pytest.raises(Exception, match="http"):
        await stack.admin.set_webhook("file:///etc/passwd")
    statuses.append(503)
    async with gate(stack) as g:
        pending = await g.check("deploy:production", "api-v2", {"ticket": "CHG-9"})
    for _ in range(160):
        if len(received) >= 2:
            break
        await asyncio.sleep(0.05)
    assert len(received) == 2, "the refused POST is retried"
    notice = received[-1]
    assert (notice["approval_id"], notice["agent_id"], notice["anchor"], notice["context"]) == (
        pending.approval_id, "deploy-bot", "s.emp1", {"ticket": "CHG-9"})
    assert f"claiim approvals show {pending.approval_id}" in str(notice["text"])
    body = json.dumps(received)
    assert stack.tokens["deploy-bot"] not in body and "token" not in body
