"""``claiim rehearsal``: check a running stack end to end, one line per check.

It writes to the stack it is pointed at (``REHEARSAL_WRITES`` in :mod:`claiim_server.cli.main` says
what), and Chron is append-only: what it records stays in that log for good. So the CLI refuses to
run it without ``--yes``; run it against a test or staging stack (``claiim up`` starts one of your
own), not a production log.

It provisions a fresh org with a sample skill, policy and two agents, fires ALLOW and DENY
decisions and bad requests, and checks each returned chron id in Chron with its policy and skill
versions. The agent asks over its own connection, logged in with its token. Requests that NATS
would not even admit (a wrong token, an unknown or suspended agent, garbage) are sent over the
second agent's connection, the probe: that is how the gate's own checks, the second line behind
NATS authentication, are rehearsed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types
import msgspec
from claiim import AsyncAdmin, AsyncGate, CheckResult
from claiim.errors import AdminError, ClaiimError, ForbiddenError, NotCheckpointedError, UnauthorizedError
from claiim.mcp.config import ClaiimSection, ProxyConfig, ServerConfig
from claiim.mcp.proxy import Agent, Agents, GatedProxy
from claiim.transport import NatsTransport
from claiim_core.checkpoint import Verifier
from claiim_core.proofs import InclusionProof, ProofError, check_inclusion
from claiim_core.schemas import Change, ChronRecord, DecisionEvent, DecisionReply
from mcp import Client
from mcp.server.mcpserver import MCPServer

Check = Callable[[], Awaitable[str]]


PROBE = "probe"


def sample_bundle(org: str, agent: str, policy_version_allow: list[str]) -> dict[str, Any]:
    return {
        "org": org,
        "skills": [{"name": "ship", "actions": ["ship:build", "ship:test", "ship:release"]}],
        "policies": [{"name": "careful", "skill": "ship-v1", "allow": policy_version_allow,
                      "deny": ["ship:release"]}],
        "agents": [{"id": agent, "anchor": "rehearsal.owner", "skills": ["ship-v1"], "policy": "careful"},
                   {"id": PROBE, "anchor": "rehearsal.owner", "skills": ["ship-v1"], "policy": "careful"}],
    }


class Rehearsal:
    def __init__(self) -> None:
        suffix = secrets.token_hex(4)
        self.org = f"rehearsal-{suffix}"
        self.admin = AsyncAdmin(org=self.org)
        self.agent = f"rehearsal-bot-{suffix}"
        self.token = ""
        self.wrong_token = f"clm_{self.org}.{secrets.token_urlsafe(32)}"
        self.probe: NatsTransport | None = None
        self.passed = 0
        self.failed = 0

    async def check(self, name: str, fn: Check) -> None:
        try:
            detail = await fn()
        except (AssertionError, ClaiimError, TimeoutError, ProofError) as e:
            self.failed += 1
            print(f"FAIL  {name}: {e}", flush=True)
        else:
            self.passed += 1
            print(f"PASS  {name}{': ' + detail if detail else ''}", flush=True)

    async def decide(self, action: str, token: str | None = None, agent: str | None = None) -> CheckResult:
        """The agent asking over its own connection; with another ``token`` or ``agent``, over the probe's."""
        if token is None and agent is None:
            async with AsyncGate(self.agent, self.token, self.admin.url, namespace=self.admin.names.namespace) as own:
                return await own.check(action, target="rehearsal")
        gate = AsyncGate(agent or self.agent, token or self.token, self.admin.url,
                         namespace=self.admin.names.namespace, transport=self.probe)
        return await gate.check(action, target="rehearsal")

    async def raw_request(self, payload: bytes) -> DecisionReply:
        assert self.probe is not None
        data = await self.probe.request(self.admin.names.gate_check, payload, 5.0)
        return msgspec.json.decode(data, type=DecisionReply)

    async def refused(self, token: str) -> str:
        """NATS refuses the agent's own connection with ``token`` (unless it runs without authentication)."""
        gate = AsyncGate(self.agent, token, self.admin.url, namespace=self.admin.names.namespace)
        try:
            await gate.check("ship:build")
        except UnauthorizedError as e:
            return str(e).split(" (")[0]
        finally:
            await gate.close()
        raise AssertionError("NATS admitted the agent with this token: is NATS authentication off?")

    async def in_chron(self, chron_id: str) -> ChronRecord:
        for _ in range(100):
            record = await self.admin.chron_show(chron_id)
            if record is not None:
                return record
            await asyncio.sleep(0.1)
        raise AssertionError(f"{chron_id} not in Chron after 10 s")

    async def run(self) -> int:
        results: dict[str, CheckResult] = {}

        async def provision() -> str:
            reply = await self.admin.apply(sample_bundle(self.org, self.agent, ["ship:build", "ship:release"]))
            self.token = reply.tokens[self.agent]
            self.probe = NatsTransport(self.admin.url, name="claiim-rehearsal-probe", user=PROBE,
                                       token=reply.tokens[PROBE])
            return "; ".join(reply.changes)

        async def reapply() -> str:
            reply = await self.admin.apply(sample_bundle(self.org, self.agent, ["ship:build", "ship:release"]))
            assert all(c.op == "unchanged" for c in reply.changed), reply.changes
            assert not reply.tokens, "re-apply issued a token"
            return "nothing changed"

        def expect(key: str, action: str, outcome: str, reason_part: str, **kw: str) -> Check:
            async def fn() -> str:
                r = await self.decide(action, **kw)
                results[key] = r
                assert r.outcome == outcome, f"{r.outcome} {r.reason}"
                assert reason_part in r.reason, r.reason
                return f"{r.outcome} {r.reason}"
            return fn

        def raw(payload: bytes, reason_part: str) -> Check:
            async def fn() -> str:
                r = await self.raw_request(payload)
                assert r.outcome == "DENY" and reason_part in r.reason, r.reason
                return r.reason[:80]
            return fn

        def recorded(key: str, policy: str, skill: str) -> Check:
            async def fn() -> str:
                r = results[key]
                rec = await self.in_chron(r.chron_id)
                assert (rec.outcome, rec.policy, rec.skill, rec.agent_id) == (r.outcome, policy, skill, r.agent_id), rec
                assert rec.anchor == "rehearsal.owner" and rec.control_seq > 0, rec
                return f"{r.chron_id} policy={rec.policy} skill={rec.skill} seq={rec.stream_seq}"
            return fn

        async def publish_v2() -> str:
            reply = await self.admin.apply(sample_bundle(self.org, self.agent, ["ship:build", "ship:test"]))
            assert Change(op="published", kind="policy", name="careful", version=2) in reply.changed, reply.changes
            return "; ".join(str(c) for c in reply.changed if c.op != "unchanged")

        await self.check("provision a fresh org, skill, policy and agent", provision)
        if not self.token:
            return self.finish()
        await self.check("applying the same bundle again changes nothing", reapply)
        c = self.check
        await c("allowed action is ALLOWED", expect("allow", "ship:build", "ALLOW", "policy:careful-v1"))
        await c("denied action is DENIED", expect("deny", "ship:release", "DENY", "explicitly denied"))
        await c("action not in allow list is DENIED", expect("notallowed", "ship:test", "DENY", "not in allow list"))
        await c("action outside the skill is DENIED",
                expect("outside", "infra:destroy", "DENY", "outside the agent's skills"))
        await c("a bad token cannot connect to NATS", lambda: self.refused(self.wrong_token))
        await c("bad token is DENIED",
                expect("badtoken", "ship:build", "DENY", "auth:bad-token", token=self.wrong_token))
        await c("unknown agent is DENIED",
                expect("unknown", "ship:build", "DENY", "agent:unknown", agent=f"nobody-{secrets.token_hex(4)}"))
        await c("malformed JSON is answered DENY", raw(b"{not json", "request:malformed"))
        await c("wrongly typed request is answered DENY",
                raw(b'{"agent_id": 5, "token": [], "action": "x"}', "request:malformed"))
        await c("oversized request is answered DENY", raw(b'{"pad":"' + b"x" * 20_000 + b'"}', "request:oversized"))
        await self.check("ALLOW is in Chron with its versions", recorded("allow", "careful-v1", "ship-v1"))
        await self.check("DENY is in Chron with its versions", recorded("deny", "careful-v1", "ship-v1"))
        await self.check("bad-token DENY is in Chron", self._recorded_simple(results, "badtoken"))
        await self.check("publishing policy v2 works", publish_v2)
        await self.check("decisions after v2 use v2", expect("v2", "ship:test", "ALLOW", "policy:careful-v2"))
        await self.check("the v2 decision is in Chron as careful-v2", recorded("v2", "careful-v2", "ship-v1"))

        async def suspend() -> str:
            await self.admin.suspend(self.agent, reason="rehearsal")
            return "suspended"

        async def reactivate() -> str:
            await self.admin.reactivate(self.agent, reason="rehearsal")
            return "reactivated"

        async def rotate() -> str:
            old, self.token = self.token, await self.admin.rotate_token(self.agent)
            r = await self.decide("ship:build", token=old)
            assert r.outcome == "DENY" and r.reason.startswith("auth:rotated-token"), r.reason
            return f"{r.reason}; {await self.refused(old)}"

        await c("suspend the agent", suspend)
        await c("a suspended agent cannot connect to NATS", lambda: self.refused(self.token))
        await c("a suspended agent is DENIED",
                expect("suspended", "ship:build", "DENY", "agent:suspended", agent=self.agent))
        await c("reactivate the agent", reactivate)
        await c("a reactivated agent is ALLOWED again", expect("back", "ship:build", "ALLOW", "action allowed"))
        await c("a rotated-out token is DENIED and cannot connect", rotate)
        await c("the new token is ALLOWED", expect("rotated", "ship:build", "ALLOW", "action allowed"))
        await c("through the MCP proxy a tool outside the skill is not listed, an allowed call runs, a denied one "
                "never reaches its tool", self._mcp)
        await c("the ALLOW has an inclusion proof that verifies offline", lambda: self._proof(results["allow"]))
        await c("two-person control: a proposal waits, self-approval is refused, a second admin applies it",
                self._two_person)
        await c("an auditor reads the org and can change nothing", self._auditor)
        await c("an admin of another org gets nothing of this one", self._outsider)
        await c("a rule's condition allows on the request's context and denies otherwise", self._condition)
        await c("a log-only candidate is recorded beside a decision and changes no answer", self._shadow)
        await c("an approve rule holds a check until the anchor grants it; the grant works once", self._approval)
        return self.finish()

    async def _proof(self, decision: CheckResult) -> str:
        """Prove a decision (waiting up to the 5 s checkpoint interval) and check the proof with the
        verifier key from CLAIIM_CHECKPOINT_VERIFIER (written by `claiim up`)."""
        key = os.environ.get("CLAIIM_CHECKPOINT_VERIFIER")
        if not key:
            raise AssertionError("CLAIIM_CHECKPOINT_VERIFIER is not set: cannot check the proof")
        for _ in range(60):
            try:
                bundle = await self.admin.chron_prove(decision.chron_id)
                break
            except NotCheckpointedError:
                await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"{decision.chron_id} was not in a signed checkpoint within 12 s")
        proven = check_inclusion(msgspec.convert(bundle, InclusionProof), Verifier.parse(key))
        return f"leaf {proven.leaf_index} of a signed tree of {proven.checkpoint.size}"

    async def _condition(self) -> str:
        """A third agent bound to a policy that allows ship:build only on branch main."""
        agent = f"{self.agent}-cond"
        bundle = {"org": self.org, "policies": [{"name": "main-only", "skill": "ship-v1", "allow": [
            {"action": "ship:build", "when": "context.branch == 'main'"}]}],
                  "agents": [{"id": agent, "anchor": "rehearsal.owner", "skills": ["ship-v1"], "policy": "main-only"}]}
        token = (await self.admin.apply(bundle)).tokens[agent]
        async with AsyncGate(agent, token, self.admin.url, namespace=self.admin.names.namespace) as gate:
            main = await gate.check("ship:build", "rehearsal", {"branch": "main"})
            dev = await gate.check("ship:build", "rehearsal", {"branch": "dev"})
        assert (main.outcome, main.rule) == ("ALLOW", "allow[0]: ship:build if context.branch == 'main'"), main
        assert (dev.outcome, dev.rule) == ("DENY", "default-deny"), dev
        return f"main: {main.chron_id} ALLOW, dev: {dev.chron_id} DENY"

    async def _shadow(self) -> str:
        """The agent's candidate main-only-v1 denies what its bound policy allows: the answer stays ALLOW."""
        await self.admin.set_shadow(self.agent, "main-only-v1")
        try:
            decision = await self.decide("ship:build")
        finally:
            await self.admin.set_shadow(self.agent, "")
        assert decision.outcome == "ALLOW", decision
        event = msgspec.json.decode(bytes((await self.in_chron(decision.chron_id)).event), type=DecisionEvent)
        assert event.shadow and (event.shadow.policy, event.shadow.outcome) == ("main-only-v1", "DENY"), event.shadow
        return f"{decision.chron_id}: ALLOW, the candidate would have said DENY [{event.shadow.rule}]"

    async def _approval(self) -> str:
        """A fourth agent whose ship:release waits for its anchor, enrolled as an anchor: PENDING, granted,
        ALLOW, and a second wait for the same grant refused; the three records share the approval id."""
        agent, anchor = f"{self.agent}-approve", f"owner-{secrets.token_hex(3)}"
        bundle = {"org": self.org, "policies": [{"name": "release-approved", "skill": "ship-v1",
                                                 "allow": ["ship:build"], "approve": [{"action": "ship:release"}]}],
                  "agents": [{"id": agent, "anchor": anchor, "skills": ["ship-v1"], "policy": "release-approved"}]}
        token = (await self.admin.apply(bundle)).tokens[agent]
        person = self._as(await self.admin.enrol_admin(anchor, "anchor"))
        try:
            async with AsyncGate(agent, token, self.admin.url, namespace=self.admin.names.namespace) as gate:
                pending = await gate.check("ship:release", "rehearsal")
                assert pending.outcome == "PENDING" and pending.approval_id, pending
                assert [a.approval_id for a in await person.approvals()] == [pending.approval_id]
                await person.grant(pending.approval_id, "rehearsal")
                allowed = await gate.wait(pending.approval_id, 10)
                again = await gate.wait(pending.approval_id, 5)
        finally:
            await person.close()
        assert (allowed.outcome, allowed.reason) == ("ALLOW", f"approval:granted -- granted by {anchor}: rehearsal")
        assert again.outcome == "DENY" and again.reason.startswith("approval:used"), again
        for _ in range(100):
            linked = await self.admin.chron_list(approval_id=pending.approval_id, kind=None)
            if len(linked) == 3:
                break
            await asyncio.sleep(0.1)
        assert sorted(r.outcome or r.action for r in linked) == ["ALLOW", "PENDING", "approval.granted"], linked
        return f"{pending.approval_id}: PENDING, granted by {anchor}, ALLOW {allowed.chron_id}"

    async def _mcp(self) -> str:
        """The proxy's handlers, in this process, in front of an MCP server of this process with three tools
        (actions ``ship:<tool>``): ``deploy`` is outside the skill, ``build`` allowed, ``release`` denied."""
        served: list[str] = []

        def tool(name: str) -> Callable[[], str]:
            def run() -> str:
                served.append(name)
                return f"{name} done"
            return run

        upstream = MCPServer("rehearsal-tools")
        for name in ("build", "release", "deploy"):
            upstream.add_tool(tool(name), name=name, description=f"{name} the ship")
        config = ProxyConfig(mcpServers={"ship": ServerConfig(command="(in this process)",
                                                              claiim=ClaiimSection(action="ship:{tool}"))})
        agents = Agents(self.admin.url, self.admin.names.namespace, Agent(self.agent, self.token))
        try:
            async with Client(upstream, cache=None) as tools, Client(
                    GatedProxy(config, {"ship": tools}, agents).server(), cache=None) as client:
                listed = sorted(t.name for t in (await client.list_tools()).tools)
                assert listed == ["ship__build", "ship__release"], listed
                built = await client.call_tool("ship__build", {})
                assert not built.is_error, built
                released = await client.call_tool("ship__release", {})
        finally:
            await agents.close()
        said = " ".join(b.text for b in released.content if isinstance(b, mcp_types.TextContent))
        assert released.is_error and "claiim denied ship:release" in said and "Chron id: chr_" in said, said
        assert served == ["build"], served
        return said[:100]

    def _as(self, token: str, org: str = "") -> AsyncAdmin:
        """A client acting in ``org`` (empty: the token's own), whatever CLAIIM_ORG says."""
        return AsyncAdmin(self.admin.url, token, org=org, namespace=self.admin.names.namespace)

    async def _two_person(self) -> str:
        first = self._as(await self.admin.enrol_admin(f"first-{secrets.token_hex(3)}"))
        second = self._as(await self.admin.enrol_admin(f"second-{secrets.token_hex(3)}"))
        try:
            bundle = {"org": self.org, "skills": [{"name": "two-person", "actions": ["tp:act"]}]}
            proposed = await first.apply(bundle)
            assert proposed.proposal_id, "a widening change by an org admin was applied without approval"
            assert not [s for s in await first.skills() if s.name == "two-person"], "applied before approval"
            try:
                await first.approve(proposed.proposal_id)
            except ForbiddenError as e:
                assert "cannot approve" in str(e), e
            else:
                raise AssertionError("the proposer approved their own proposal")
            done = await second.approve(proposed.proposal_id, reason="rehearsal")
            assert done.change.startswith("applied proposal"), done
            assert [s.label for s in await first.skills() if s.name == "two-person"] == ["two-person-v1"]
            return f"{proposed.proposal_id} applied"
        finally:
            await first.close()
            await second.close()

    async def _auditor(self) -> str:
        auditor = self._as(await self.admin.enrol_admin(f"auditor-{secrets.token_hex(3)}", "auditor"))
        try:
            assert sorted(a.agent_id for a in await auditor.agents()) == sorted([self.agent, PROBE])
            try:
                await auditor.suspend(self.agent)
            except ForbiddenError as e:
                assert "read-only" in str(e), e
                return str(e)
            raise AssertionError("an auditor suspended an agent")
        finally:
            await auditor.close()

    async def _outsider(self) -> str:
        other = f"{self.org}-x"
        await self.admin.create_org(other)
        operator_there = self._as(os.environ["CLAIIM_ADMIN_TOKEN"], other)
        try:
            outsider = self._as(await operator_there.enrol_admin("outsider"), self.org)
        finally:
            await operator_there.close()
        try:
            try:
                await outsider.agents()
            except AdminError as e:
                assert str(e).startswith("forbidden:"), e
            else:
                raise AssertionError("another org's admin listed this org's agents")
            outsider.org = ""
            assert await outsider.agents() == [] and await outsider.chron_list(kind="decision") == []
            return "forbidden, and its own org is empty"
        finally:
            await outsider.close()

    def _recorded_simple(self, results: dict[str, CheckResult], key: str) -> Check:
        async def fn() -> str:
            rec = await self.in_chron(results[key].chron_id)
            assert rec.outcome == "DENY" and "auth:bad-token" in rec.reason, rec
            assert self.wrong_token not in bytes(rec.event).decode(), "token leaked into Chron"
            return f"{rec.chron_id} (no token stored)"
        return fn

    def finish(self) -> int:
        print(f"PASS: {self.passed} / FAIL: {self.failed}")
        return 1 if self.failed or not self.passed else 0

    async def close(self) -> None:
        if self.probe is not None:
            await self.probe.close()
        await self.admin.close()


async def rehearsal() -> int:
    """Run the rehearsal (the CLI has had ``--yes``): it says where it writes, and which org."""
    if not os.environ.get("CLAIIM_ADMIN_TOKEN"):
        print("CLAIIM_ADMIN_TOKEN is not set: source the stack's env file (claiim up writes .claiim/env)")
        return 2
    r = Rehearsal()
    print(f"rehearsal against {r.admin.url} (namespace {r.admin.names.namespace}): writing org {r.org}, "
          "recorded in Chron for good", flush=True)
    try:
        return await r.run()
    finally:
        await r.close()
