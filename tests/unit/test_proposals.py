"""Two-person control in the pure core: what waits, who may approve, thresholds, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from claiim_core.events import AgentSuspended, AgentUpdated, ApprovalRuleSet, ProposalApplied
from claiim_core.names import Names
from claiim_core.proposals import (
    ProposalError,
    approve,
    change_hash,
    expirations,
    propose,
    reject,
    widens,
)
from claiim_core.registry import Registry

from tests.unit.seed import AT, apply_all, seed_registry

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
_ids = count(1)


def new_id() -> str:
    return f"chr_{next(_ids):026d}"


def anchor(name: str) -> AgentUpdated:
    return AgentUpdated(event_id=new_id(), at=AT, actor="alice", org="demo", agent_id="deploy-bot", anchor=name,
                        description="", skills=("deploy-v2",), policy="no-prod-v1")


def proposed(registry: Registry, ttl: timedelta = timedelta(hours=24)) -> str:
    p = propose(registry, "demo", "alice", [anchor("k.lee")], ["set-anchor deploy-bot"], proposal_id=new_id(),
                now=NOW, names=Names(), ttl=ttl)
    apply_all(registry, [p])
    return p.proposal_id


def test_what_widens() -> None:
    suspend = AgentSuspended(event_id=new_id(), at=AT, actor="a", org="demo", agent_id="x", reason="")
    assert widens([anchor("x")]) and not widens([suspend]) and widens([suspend, anchor("x")])
    assert widens([ApprovalRuleSet(event_id=new_id(), at=AT, actor="a", org="demo", approvals=3)])


def test_a_proposal_holds_the_exact_change_and_where_it_applies() -> None:
    registry = seed_registry()
    event = anchor("k.lee")
    p = propose(registry, "demo", "alice", [event], ["x"], proposal_id="chr_p", now=NOW, names=Names())
    assert p.events == (event,) and p.change_hash == change_hash([event])
    subject = Names().control_subject("demo", "agent", "deploy-bot")
    assert p.base == {subject: registry.subject_seq[subject]}
    assert (p.approvals_required, p.expires_at) == (1, "2026-11-26T12:00:00.000000Z")


def test_the_proposer_never_approves_and_each_admin_approves_once() -> None:
    registry = seed_registry()
    pid = proposed(registry)
    with pytest.raises(ProposalError, match="alice proposed"):
        approve(registry, "demo", pid, "alice", "", NOW, new_id)
    assert approve(registry, "demo", pid, "bob", "", NOW, new_id).complete


def test_thresholds_count_distinct_approvers() -> None:
    registry = apply_all(seed_registry(), [ApprovalRuleSet(event_id=new_id(), at=AT, actor="x", org="demo",
                                                           approvals=2)])
    pid = proposed(registry)
    first = approve(registry, "demo", pid, "bob", "", NOW, new_id)
    assert not first.complete
    apply_all(registry, [first.event])
    with pytest.raises(ProposalError, match="bob has already approved"):
        approve(registry, "demo", pid, "bob", "", NOW, new_id)
    assert approve(registry, "demo", pid, "carol", "", NOW, new_id).complete


def test_closed_expired_and_foreign_proposals_cannot_be_approved() -> None:
    registry = seed_registry()
    pid = proposed(registry, ttl=timedelta(minutes=5))
    with pytest.raises(ProposalError, match="expired at 2026-11-25T12:05:00"):
        approve(registry, "demo", pid, "bob", "", NOW + timedelta(minutes=5), new_id)
    with pytest.raises(ProposalError, match=f"no proposal '{pid}' in org other"):
        approve(registry, "other", pid, "bob", "", NOW, new_id)
    with pytest.raises(ProposalError, match="not the change you reviewed"):
        approve(registry, "demo", pid, "bob", "", NOW, new_id, seen_hash="sha256:00")
    [expired] = expirations(registry, NOW + timedelta(minutes=6), new_id)
    assert expired.proposal_id == pid and not expirations(registry, NOW, new_id)
    apply_all(registry, [reject(registry, "demo", pid, "bob", "no", NOW, new_id)])
    with pytest.raises(ProposalError, match=f"proposal {pid} is rejected"):
        approve(registry, "demo", pid, "carol", "", NOW, new_id)


def test_applied_proposals_are_closed() -> None:
    registry = seed_registry()
    pid = proposed(registry)
    apply_all(registry, [ProposalApplied(event_id=new_id(), at=AT, actor="bob", org="demo", proposal_id=pid)])
    assert registry.proposals[("demo", pid)].status == "applied"
    with pytest.raises(ProposalError, match="is applied"):
        reject(registry, "demo", pid, "bob", "", NOW, new_id)


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(days=8)])
def test_lifetimes_are_bounded(ttl: timedelta) -> None:
    with pytest.raises(ProposalError, match="at most 7 days"):
        proposed(seed_registry(), ttl=ttl)
