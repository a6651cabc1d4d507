"""``approve`` rules in the policy language: deny, then approve (PENDING), then allow; their ttl and approver."""

from __future__ import annotations

import msgspec
import pytest
from claiim_core.canonical import canonical_bytes
from claiim_core.document import PolicyDocument, Rule
from claiim_core.policy import check_rule, decide_policy

DOC = PolicyDocument(skill="pay-v1", deny=("pay:offshore",),
                     approve=(Rule(action="pay:send", ttl=600, description="payments need their anchor"),),
                     allow=("pay:send", "pay:quote"))


def test_deny_then_approve_then_allow() -> None:
    assert decide_policy("pay-v1", DOC, "pay:offshore", "x")[0] == "DENY"
    assert decide_policy("pay-v1", DOC, "pay:send", "x") == (
        "PENDING", "policy:pay-v1 -- action needs approval", "approve[0]: pay:send -- payments need their anchor")
    assert decide_policy("pay-v1", DOC, "pay:quote", "x")[0] == "ALLOW"


def test_a_document_without_approve_rules_encodes_as_before() -> None:
    plain = PolicyDocument(skill="pay-v1", allow=("pay:quote",))
    assert b"approve" not in canonical_bytes(plain)
    assert msgspec.json.decode(canonical_bytes(DOC), type=PolicyDocument) == DOC


def test_only_approve_rules_have_a_ttl_or_an_approver() -> None:
    with pytest.raises(ValueError, match="only approve rules"):
        check_rule(Rule(action="pay:send", ttl=60))
    assert check_rule(Rule(action="pay:send", approver="admins"), approve=True) == Rule(action="pay:send",
                                                                                        approver="admins")
    with pytest.raises(ValueError, match="ttl"):
        check_rule(Rule(action="pay:send", ttl=10**9), approve=True)


def test_a_bundle_publishes_approve_rules_and_refuses_a_ttl_elsewhere() -> None:
    from claiim_core.bundle import BundleError, PlanContext, parse_bundle, plan_bundle
    from claiim_core.events import PolicyPublished
    from claiim_core.registry import Registry

    ctx = PlanContext(actor="alice", now="2026-11-27T12:00:00Z", new_id=lambda: "chr_1",
                      new_token=lambda kind, org: f"clm_{org}.x", token_secret=b"s" * 32)
    bundle = {"org": "acme", "skills": [{"name": "pay", "actions": ["pay:send"]}],
              "policies": [{"name": "pay", "skill": "pay-v1", "approve": [{"action": "pay:send", "ttl": 600}]}]}
    plan = plan_bundle(Registry(), parse_bundle(bundle), ctx)
    (published,) = [e for e in plan.events if isinstance(e, PolicyPublished)]
    assert published.document.approve == (Rule(action="pay:send", ttl=600),)
    bundle["policies"][0]["allow"] = [{"action": "pay:send", "ttl": 600}]  # type: ignore[index]
    with pytest.raises(BundleError, match=r"allow\[0\]: only approve rules have a ttl"):
        plan_bundle(Registry(), parse_bundle(bundle), ctx)


def test_a_policy_versions_approve_rules_are_shown_and_diffed() -> None:
    from claiim_core.explain import policy_diff
    from claiim_core.registry import PolicyVersion
    from claiim_core.views import policy_info

    old = policy_info(PolicyVersion("acme", "pay", 1, "", PolicyDocument(skill="pay-v1", allow=("pay:send",)), "h1"))
    new = policy_info(PolicyVersion("acme", "pay", 2, "", DOC, "h2"))
    assert new.approve == DOC.approve and old.approve == ()
    assert "+ approve: pay:send -- payments need their anchor (ttl 600 s, approver anchor)" in policy_diff(old, new)
