"""Approvals in the pure core: the PENDING decision's approval, who may decide it, how it ends."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from claiim_core.access import AccessError, Principal
from claiim_core.approvals import (
    ApprovalError,
    check_decider,
    conclude,
    expiries,
    plan_decision,
    request_hash,
    unsatisfiable,
)
from claiim_core.document import PolicyDocument, Rule
from claiim_core.events import AdminEnrolled, AgentSuspended, ApprovalGranted, ApprovalRefused
from claiim_core.names import Names, name_token
from claiim_core.registry import Registry
from claiim_core.schemas import CheckRequest, DecisionEvent
from claiim_gate.decide import Moment, decide

from tests.unit.seed import DEPLOY_TOKEN, SECRET, _base, agent_update, apply_all, policy, seed_registry

GATED = PolicyDocument(skill="deploy-v2", allow=("deploy:staging",), deny=("infra:destroy",),
                       approve=(Rule(action="deploy:production", ttl=120), Rule(action="deploy:rollback-*",
                                                                                approver="admins")))
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ANCHOR = Principal("s.emp1", "anchor", "demo")
_RANDOM = (i.to_bytes(10, "big") for i in itertools.count(1))


def gated_registry() -> Registry:
    return apply_all(seed_registry(), [policy("gated", 1, GATED), agent_update("deploy-bot", ("deploy-v2",),
                                                                                   "gated-v1")])


def pending(registry: Registry, action: str = "deploy:production", at: datetime = T0) -> DecisionEvent:
    request = CheckRequest(agent_id="deploy-bot", token=DEPLOY_TOKEN, action=action, target="api-v2",
                           context={"ticket": "CHG-1"}, request_id="r1")
    event = decide(msgspec.json.encode(request), registry, SECRET, "gate-1",
                   Moment(int(at.timestamp() * 1_000_000), next(_RANDOM)))
    assert event.outcome == "PENDING", event.reason
    return event


def granted(registry: Registry, event: DecisionEvent, by: str = "s.emp1", grant: bool = True) -> Registry:
    decided = plan_decision(registry, Principal(by, "anchor", "demo"), event, None, grant, "ok", T0,
                            lambda: "chr_decision0000000000000000000")
    return apply_all(registry, [decided])


def test_a_pending_decision_asks_for_an_approval_bound_to_its_request() -> None:
    registry = gated_registry()
    event = pending(registry)
    assert event.approval and event.approval.id == event.chron_id
    assert (event.approval.approver, event.approval.expires_at) == ("anchor", "2026-01-02T03:06:05.000000Z")
    assert event.approval.request_hash == request_hash("demo", "deploy-bot", "deploy:production", "api-v2",
                                                       {"ticket": "CHG-1"})
    assert request_hash("demo", "deploy-bot", "deploy:production", "api-v2", {"ticket": "CHG-2"}) != \
        event.approval.request_hash
    admins = pending(registry, "deploy:rollback-production")
    assert admins.approval and admins.approval.approver == "admins"
    assert admins.approval.expires_at == "2026-01-02T03:09:05.000000Z", "the default ttl is 5 minutes"


def test_who_may_decide() -> None:
    event = pending(gated_registry())
    check_decider(ANCHOR, event)
    check_decider(Principal("s.emp1", "admin", "demo"), event)  # an admin who is the agent's anchor
    for who, why in ((Principal("j.smith", "anchor", "demo"), "only deploy-bot's anchor s.emp1"),
                     (Principal("ada", "admin", "demo"), "only deploy-bot's anchor"),
                     (Principal("s.emp1", "auditor", "demo"), "only deploy-bot's anchor"),
                     (Principal("s.emp1", "anchor", "other"), "cannot act in org demo"),
                     (Principal("operator", "operator", None), "not the operator")):
        with pytest.raises(AccessError, match=why):
            check_decider(who, event)
    admins = pending(gated_registry(), "deploy:rollback-production")
    check_decider(Principal("ada", "admin", "demo"), admins)
    with pytest.raises(AccessError, match="an admin of org demo"):
        check_decider(ANCHOR, admins)


def test_a_decision_is_refused_when_decided_expired_for_another_request_or_without_a_reason() -> None:
    registry = gated_registry()
    event = pending(registry)
    ids = iter(f"chr_{i:026d}" for i in range(10))
    with pytest.raises(ApprovalError, match="not the one waiting"):
        plan_decision(registry, ANCHOR, event, None, True, "ok", T0, ids.__next__, "sha256:" + "0" * 64)
    with pytest.raises(ApprovalError, match="say why"):
        plan_decision(registry, ANCHOR, event, None, True, "  ", T0, ids.__next__)
    with pytest.raises(ApprovalError, match="expired at"):
        plan_decision(registry, ANCHOR, event, None, True, "ok", T0 + timedelta(minutes=3), ids.__next__)
    grant = plan_decision(registry, ANCHOR, event, None, True, "ok", T0, ids.__next__)
    assert isinstance(grant, ApprovalGranted) and grant.request_hash == event.approval.request_hash  # type: ignore[union-attr]
    apply_all(registry, [grant])
    with pytest.raises(ApprovalError, match=r"already granted by s\.emp1"):
        plan_decision(registry, ANCHOR, event, None, False, "no", T0, ids.__next__)


def test_how_an_approval_ends() -> None:
    registry = gated_registry()
    agent = registry.agents[("demo", "deploy-bot")]
    event = pending(registry)
    assert conclude(registry, agent, event, T0, None) is None, "it waits"
    verdict, link = conclude(registry, agent, event, T0 + timedelta(minutes=2), None)  # type: ignore[misc]
    assert (verdict.outcome, verdict.reason.split(" --")[0], link.decided_by) == ("DENY", "approval:expired", "")

    refused = granted(gated_registry(), event, grant=False)
    verdict, link = conclude(refused, agent, event, T0, None)  # type: ignore[misc]
    assert (verdict.outcome, verdict.reason) == ("DENY", "approval:refused -- refused by s.emp1: ok")
    assert link.event_id == "chr_decision0000000000000000000"

    allowed = granted(gated_registry(), event)
    verdict, link = conclude(allowed, agent, event, T0, None)  # type: ignore[misc]
    assert (verdict.outcome, verdict.reason, verdict.policy) == ("ALLOW", "approval:granted -- granted by s.emp1: ok",
                                                                 "gated-v1")
    assert verdict.rule == "approve[0]: deploy:production"
    assert (link.id, link.decided_by, link.note) == (event.chron_id, "s.emp1", "ok")

    suspended = apply_all(granted(gated_registry(), event), [AgentSuspended(agent_id="deploy-bot", reason="x",
                                                                            **_base())])
    verdict, _ = conclude(suspended, suspended.agents[("demo", "deploy-bot")], event, T0, None)  # type: ignore[misc]
    assert (verdict.outcome, verdict.rule) == ("DENY", "agent-active"), "a grant does not outlive a deny"


def test_control_expires_only_undecided_approvals_after_the_grace() -> None:
    registry = gated_registry()
    first, second = pending(registry), pending(registry, "deploy:rollback-staging")
    ids = iter(f"chr_{i:026d}" for i in range(10))
    apply_all(registry, [ApprovalRefused(approval_id=second.chron_id, agent_id="deploy-bot", request_hash="",
                                         reason="no", **_base())])
    assert expiries(registry, [first, second], T0 + timedelta(seconds=121), ids.__next__) == []
    (expired,) = expiries(registry, [first, second], T0 + timedelta(seconds=123), ids.__next__)
    assert (expired.approval_id, expired.actor) == (first.chron_id, "claiim")


def test_apply_warns_when_nobody_enrolled_can_grant() -> None:
    registry = gated_registry()
    problems = unsatisfiable(registry, "demo")
    assert problems == [
        "agent deploy-bot: its anchor s.emp1 is not enrolled in org demo as an anchor or admin, so nobody can "
        "grant the approve rules of gated-v1 (`claiim admin enrol s.emp1 --role anchor`)",
        "agent deploy-bot: org demo has no admin to grant the approve rules of gated-v1"]
    apply_all(registry, [AdminEnrolled(name="s.emp1", role="anchor", token_hash="h1", **_base()),
                         AdminEnrolled(name="ada", role="admin", token_hash="h2", **_base())])
    assert unsatisfiable(registry, "demo") == []


def test_a_persons_name_with_dots_has_a_subject_of_its_own() -> None:
    assert name_token("alice") == "alice"
    assert name_token("s.emp1") != name_token("s.emp2")
    assert "." not in Names().control_subject("demo", "admin", "s.emp1").removeprefix("claiim.control.demo.admin.")
