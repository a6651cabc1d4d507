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
