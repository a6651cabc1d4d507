"""The OCSF rendering of decisions: API Activity 6003 with the outcome as a security-control disposition."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
from claiim_core.ocsf import ocsf_bytes, ocsf_decision
from claiim_core.schemas import DecisionEvent, ShadowDecision

ALLOW = DecisionEvent(
    chron_id="chr_01jd8m6z7b0000000000000000", decided_at="2026-11-25T21:07:30.123456Z", outcome="ALLOW",
    reason="policy:no-prod-v1 -- action allowed", rule="allow[0]: deploy:staging", org="demo",
    agent_id="deploy-bot", anchor="s.emp1", action="deploy:staging", target="api-v2",
    context={"ticket": "CHG-1"}, request_id="req-1", policy="no-prod-v1", skill="deploy-v2", gate="gate-a",
    control_seq=9,
)
DENY = msgspec.structs.replace(
    ALLOW, chron_id="chr_01jd8m6z7c0000000000000001", decided_at="2026-11-25T21:07:31.999999Z", outcome="DENY",
    reason="policy:no-prod-v1 -- action explicitly denied", rule="deny[0]: deploy:production",
    action="deploy:production", request_id=None,
)
ALLOW_MS = int(datetime(2026, 11, 25, 21, 7, 30, tzinfo=UTC).timestamp()) * 1000 + 123
DENY_MS = int(datetime(2026, 11, 25, 21, 7, 31, tzinfo=UTC).timestamp()) * 1000 + 999


def leaves(value: Any) -> list[Any]:
    """Every scalar anywhere inside ``value`` (dict keys excluded)."""
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in leaves(item)]
    return [value]


def test_class_activity_and_time() -> None:
    """Both outcomes are API Activity 6003 in category 6, activity 99 named by the action, time in epoch ms."""
    for event, ms in ((ALLOW, ALLOW_MS), (DENY, DENY_MS)):
        ocsf = ocsf_decision(event)
        assert (ocsf["class_uid"], ocsf["class_name"], ocsf["category_uid"], ocsf["category_name"]) == (
            6003, "API Activity", 6, "Application Activity")
        assert (ocsf["activity_id"], ocsf["activity_name"], ocsf["type_uid"]) == (99, event.action, 600399)
        assert ocsf["time"] == ms
        assert ocsf["api"] == {"operation": event.action, "service": {"name": "claiim.gate"}}
        assert ocsf["resources"] == [{"name": "api-v2"}]


def test_allow_is_allowed_success_informational() -> None:
    """An ALLOW is disposition 1 Allowed, action 1 Allowed, status 1 Success and severity 1 Informational."""
    ocsf = ocsf_decision(ALLOW)
    assert (ocsf["disposition_id"], ocsf["disposition"], ocsf["action_id"], ocsf["action"]) == (
        1, "Allowed", 1, "Allowed")
    assert (ocsf["status_id"], ocsf["status"], ocsf["severity_id"]) == (1, "Success", 1)


def test_deny_is_blocked_failure_medium_with_policy_and_reason() -> None:
    """A DENY is disposition 2 Blocked, status 2 Failure, severity 3, and names the policy and the reason."""
    ocsf = ocsf_decision(DENY)
    assert (ocsf["disposition_id"], ocsf["disposition"], ocsf["action_id"], ocsf["action"]) == (
        2, "Blocked", 2, "Denied")
    assert (ocsf["status_id"], ocsf["status"], ocsf["severity_id"], ocsf["severity"]) == (2, "Failure", 3, "Medium")
    assert ocsf["policy"] == {"name": "no-prod-v1", "uid": "no-prod-v1", "desc": DENY.reason}
    assert ocsf["status_detail"] == DENY.reason
    assert ocsf["message"] == (
        "DENY deploy-bot deploy:production on api-v2 in org demo: policy:no-prod-v1 -- action explicitly denied")


def test_actor_metadata_and_anchor() -> None:
    """The agent is the actor's user in its org, the anchor its manager; metadata carries ids and the raw time."""
    ocsf = ocsf_decision(ALLOW)
    user = ocsf["actor"]["user"]
    assert (user["name"], user["uid"], user["org"], user["type_id"]) == (
        "deploy-bot", "deploy-bot", {"name": "demo"}, 99)
    assert user["ldap_person"]["manager"]["name"] == "s.emp1"
    assert ocsf["metadata"] == {
        "version": "1.5.0", "profiles": ["security_control"], "product": {"name": "claiim", "vendor_name": "claiim"},
        "uid": ALLOW.chron_id, "original_time": ALLOW.decided_at, "correlation_uid": "req-1",
    }
    assert "correlation_uid" not in ocsf_decision(DENY)["metadata"]
    assert ocsf["unmapped"] == {"rule": ALLOW.rule, "skill": "deploy-v2", "context": {"ticket": "CHG-1"},
                                "control_seq": 9}
    assert "trace" not in ocsf


def test_a_traced_decision_has_the_trace_profile() -> None:
    """A decision with a W3C trace id: the Trace profile, its id as ``trace.uid``."""
    ocsf = ocsf_decision(msgspec.structs.replace(DENY, trace_id="4bf92f3577b34da6a3ce929d0e0e4736"))
    assert ocsf["metadata"]["profiles"] == ["security_control", "trace"]
    assert ocsf["trace"] == {"uid": "4bf92f3577b34da6a3ce929d0e0e4736"}


def test_a_log_only_candidates_result_is_unmapped() -> None:
    shadow = ShadowDecision(policy="strict-v1", outcome="DENY", rule="deny[0]: deploy:*")
    ocsf = ocsf_decision(msgspec.structs.replace(ALLOW, shadow=shadow))
    assert ocsf["unmapped"]["shadow"] == {"policy": "strict-v1", "outcome": "DENY", "rule": "deny[0]: deploy:*"}
    assert "shadow" not in ocsf_decision(ALLOW)["unmapped"]


def test_every_decision_field_is_somewhere() -> None:
    """Each value of the decision (outcome as its disposition) appears in the rendering."""
    for event in (ALLOW, DENY):
        ocsf = ocsf_decision(event)
        values = leaves(ocsf)
        for field in ("chron_id", "decided_at", "org", "agent_id", "anchor", "action", "target", "reason", "rule",
                      "policy", "skill", "gate", "control_seq"):
            assert getattr(event, field) in values, field
        assert ocsf["unmapped"]["context"] == event.context
        assert ocsf["disposition"] == {"ALLOW": "Allowed", "DENY": "Blocked"}[event.outcome]


def test_authentication_failure_has_no_policy_nor_target() -> None:
    """A decision that reached no policy and named no target renders without ``policy`` and ``resources``."""
    ocsf = ocsf_decision(msgspec.structs.replace(DENY, policy="", skill="", target="", anchor="",
                                                 reason="auth:bad-token -- token does not match agent deploy-bot"))
    assert "policy" not in ocsf and "resources" not in ocsf
    assert "ldap_person" not in ocsf["actor"]["user"]
    assert ocsf["status_detail"].startswith("auth:bad-token")


def test_rendering_is_deterministic_and_round_trips() -> None:
    """The same decision always gives the same bytes, and those bytes decode to the rendering."""
    assert ocsf_bytes(DENY) == ocsf_bytes(msgspec.json.decode(msgspec.json.encode(DENY), type=DecisionEvent))
    assert ocsf_decision(DENY) == ocsf_decision(DENY)
    assert json.loads(ocsf_bytes(DENY)) == ocsf_decision(DENY)
    assert json.loads(ocsf_bytes(ALLOW)) == ocsf_decision(ALLOW)
