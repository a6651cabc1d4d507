"""A decision rendered as an OCSF 1.5.0 API Activity event (class 6003) for SIEMs.

The allow/deny is in the Security Control profile's ``action``/``disposition`` attributes, next to
the ``policy`` that decided; a PENDING decision (waiting for a person's approval) is action 99
Other, disposition 14 Delayed. Fields with no OCSF home (rule, skill, context, control_seq, a
log-only candidate's result, ``shadow``, and the ``approval`` a decision asks for or ends) go under
``unmapped``. A decision with a W3C trace id adds
the Trace profile: ``trace.uid``. Pure: the event's time comes from ``decided_at``; publishing is
left to the caller.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from claiim_core.canonical import canonical_bytes
from claiim_core.schemas import DecisionEvent

OCSF_VERSION = "1.5.0"
CLASS_UID = 6003  # API Activity
CATEGORY_UID = 6  # Application Activity
ACTIVITY_OTHER = 99  # agent actions (deploy:staging, pr:merge) are not Create/Read/Update/Delete
USER_TYPE_OTHER = 99  # ``type`` then names it: an AI agent is neither a person nor a system account
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_BY_OUTCOME: dict[str, dict[str, Any]] = {
    "ALLOW": {"action_id": 1, "action": "Allowed", "disposition_id": 1, "disposition": "Allowed",
              "status_id": 1, "status": "Success", "severity_id": 1, "severity": "Informational"},
    "DENY": {"action_id": 2, "action": "Denied", "disposition_id": 2, "disposition": "Blocked",
             "status_id": 2, "status": "Failure", "severity_id": 3, "severity": "Medium"},
    "PENDING": {"action_id": 99, "action": "Pending approval", "disposition_id": 14, "disposition": "Delayed",
                "status_id": 99, "status": "Pending", "severity_id": 2, "severity": "Low"},
}


def _epoch_ms(rfc3339: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 time, truncated (integer arithmetic, no float)."""
    return (datetime.fromisoformat(rfc3339) - _EPOCH) // timedelta(milliseconds=1)


def _actor(event: DecisionEvent) -> dict[str, Any]:
    user: dict[str, Any] = {"name": event.agent_id, "uid": event.agent_id, "type_id": USER_TYPE_OTHER,
                            "type": "AI Agent", "org": {"name": event.org}}
    if event.anchor:
        user["ldap_person"] = {"manager": {"name": event.anchor, "uid": event.anchor, "type_id": 1, "type": "User"}}
    return {"user": user}


def _metadata(event: DecisionEvent) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "version": OCSF_VERSION, "profiles": ["security_control"],
        "product": {"name": "claiim", "vendor_name": "claiim"},
        "uid": event.chron_id, "original_time": event.decided_at,
    }
    if event.request_id is not None:
        metadata["correlation_uid"] = event.request_id
    if event.trace_id:
        metadata["profiles"].append("trace")
    return metadata


def ocsf_decision(event: DecisionEvent) -> dict[str, Any]:
    """``event`` as an OCSF API Activity event.

    Activity is 99 Other, with ``activity_name`` the action. A DENY has severity 3 Medium: nothing
    happened, but an agent tried what its policy forbids or could not prove who it is, and a person
    should look. The anchor, the human accountable for the agent, is the agent's
    ``actor.user.ldap_person.manager`` (OCSF's person answerable for an account). The gate sees no
    network address of the agent, so ``src_endpoint`` names the agent; ``dst_endpoint`` is the
    gate instance that decided. ``policy`` is left out when no policy was reached (authentication).
    """
    target = f" on {event.target}" if event.target else ""
    rendered: dict[str, Any] = {
        "class_uid": CLASS_UID, "class_name": "API Activity",
        "category_uid": CATEGORY_UID, "category_name": "Application Activity",
        "activity_id": ACTIVITY_OTHER, "activity_name": event.action,
        "type_uid": CLASS_UID * 100 + ACTIVITY_OTHER, "type_name": "API Activity: Other",
        "time": _epoch_ms(event.decided_at),
        **_BY_OUTCOME[event.outcome],
        "status_detail": event.reason,
        "message": f"{event.outcome} {event.agent_id} {event.action}{target} in org {event.org}: {event.reason}",
        "metadata": _metadata(event),
        "actor": _actor(event),
        "api": {"operation": event.action, "service": {"name": "claiim.gate"}},
        "src_endpoint": {"name": event.agent_id},
        "dst_endpoint": {"name": event.gate, "svc_name": "claiim.gate"},
        "unmapped": {"rule": event.rule, "skill": event.skill, "context": dict(event.context),
                     "control_seq": event.control_seq},
    }
    if event.policy:
        rendered["policy"] = {"name": event.policy, "uid": event.policy, "desc": event.reason}
    if event.target:
        rendered["resources"] = [{"name": event.target}]
    if event.trace_id:
        rendered["trace"] = {"uid": event.trace_id}
    if event.approval:
        rendered["unmapped"]["approval"] = {k: v for k, v in msgspec.structs.asdict(event.approval).items() if v}
    if event.shadow:
        rendered["unmapped"]["shadow"] = {"policy": event.shadow.policy, "outcome": event.shadow.outcome,
                                          "rule": event.shadow.rule}
    return rendered


def ocsf_bytes(event: DecisionEvent) -> bytes:
    """The OCSF rendering of ``event`` in canonical JSON."""
    return canonical_bytes(ocsf_decision(event))
