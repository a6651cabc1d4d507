"""The decision: one request against the registry, pure. In this order: the agent's token names an
org and the agent is registered there; the token matches (a keyed hash, constant-time; a rotated
or revoked token is refused by name); the agent is active; the action is within one of its skill
versions; its policy decides (:func:`claiim_core.policy.decide_policy`: deny rules, approve rules,
allow rules, default deny).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from claiim_core.conditions import Conditions, Facts
from claiim_core.policy import approval_terms, decide_policy, first_match
from claiim_core.reasons import AGENT_ACTIVE, AUTHENTICATE, POLICY, SKILL, reason
from claiim_core.registry import AgentState, Registry
from claiim_core.schemas import CheckRequest, ShadowDecision
from claiim_core.tokens import check_token, token_org

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The decision time when a caller gives none (conditions on ``time`` then see 1970)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of evaluating one request against the registry."""

    outcome: Literal["ALLOW", "DENY", "PENDING"]
    reason: str
    rule: str
    org: str = ""
    anchor: str = ""
    policy: str = ""
    skill: str = ""
    shadow: ShadowDecision | None = None
    """What the agent's log-only candidate policy would have decided (never the answer)."""
    approval: tuple[int, Literal["anchor", "admins"]] | None = None
    """PENDING only: the approve rule's ttl in seconds and who approves."""


def deny(reason: str, rule: str, *, org: str = "", anchor: str = "", policy: str = "", skill: str = "") -> Verdict:
    return Verdict("DENY", reason, rule, org=org, anchor=anchor, policy=policy, skill=skill)


def evaluate(registry: Registry, request: CheckRequest, token_secret: bytes, *, now: datetime | None = None,
             conditions: Conditions | None = None) -> Verdict:
    """Decide one request. Pure: the same registry, request and time always give the same verdict.

    The agent is looked up in the org its token names. A request for an agent the org does not
    have is recorded under that org when the org exists (so its auditors see the attempt). Rules
    with a condition are evaluated by ``conditions`` at the decision time ``now``, and a token
    rotated out with a grace period is accepted only before its end; without ``now`` no grace
    period holds and conditions see :data:`EPOCH`.
    """
    agent = authenticate_agent(registry, request.agent_id, request.token, token_secret, now=now)
    if isinstance(agent, Verdict):
        return agent
    return evaluate_agent(registry, agent, request.action, request.target, context=request.context,
                          now=EPOCH if now is None else now, conditions=conditions)


def authenticate_agent(registry: Registry, agent_id: str, token: str, token_secret: bytes, *,
                       now: datetime | None) -> AgentState | Verdict:
    """The registered agent ``token`` proves to be ``agent_id``, or the DENY that says why not. A token
    rotated out with a grace period proves it until the grace ends, compared with the decision time
    ``now`` (None: every grace has ended)."""
    org = token_org("agent", token)
    if org is None:
        return deny(reason("auth", "bad-token", f"not an agent token of any org (agent {agent_id})"), AUTHENTICATE)
    agent = registry.agents.get((org, agent_id))
    if agent is None:
        return deny(reason("agent", "unknown", f"no agent {agent_id!r} is registered in org {org}"),
                    AUTHENTICATE, org=org if org in registry.orgs else "")
    who = {"org": agent.org, "anchor": agent.anchor}
    status = check_token(token_secret, token, agent.token_hash, agent.retired_tokens, now)
    if status == "bad":
        return deny(reason("auth", "bad-token", f"token does not match agent {agent.agent_id}"), AUTHENTICATE, **who)
    if status not in ("ok", "grace"):
        return deny(reason("auth", f"{status}-token", f"this token of agent {agent.agent_id} was {status}"),
                    AUTHENTICATE, **who)
    return agent


def skill_actions(registry: Registry, agent: AgentState) -> tuple[list[str], list[str]]:
    """The labels of ``agent``'s skill versions that resolve, and every action pattern they list, in
    order: what the agent may ask for at all (its policy decides the rest). Nothing while the agent
    is not active."""
    if agent.status != "active":
        return [], []
    resolved = [s for s in (registry.resolve_skill(agent.org, ref) for ref in agent.skills) if s is not None]
    return [s.label for s in resolved], [action for s in resolved for action in s.actions]


def evaluate_agent(registry: Registry, agent: AgentState, action: str, target: str,
                   trace: list[str] | None = None, *, context: Mapping[str, str] | None = None,
                   now: datetime = EPOCH, conditions: Conditions | None = None) -> Verdict:
    """Everything after authentication: agent active, skills, policy. With ``trace``, each step
    taken is appended to it as a line for people (``claiim explain`` shows them): the steps are the
    evaluation's own, so an explanation cannot disagree with the decision. ``context`` and ``now``
    are what conditions see of the request, with the agent and its anchor."""
    who = {"org": agent.org, "anchor": agent.anchor}
    if agent.status != "active":
        return deny(reason("agent", agent.status, f"agent {agent.agent_id} is {agent.status}"), AGENT_ACTIVE, **who)

    skills = [registry.resolve_skill(agent.org, ref) for ref in agent.skills]
    resolved = [s for s in skills if s is not None]
    if len(resolved) != len(skills):
        missing = [ref for ref, s in zip(agent.skills, skills, strict=True) if s is None]
        if trace is not None:
            trace += [f"skill {ref}: not found" for ref in missing]
        return deny(reason("skill", ",".join(missing), "skill version not found"), SKILL, **who)
    skill = None
    for ref, candidate in zip(agent.skills, resolved, strict=True):
        i = first_match(candidate.actions, action)
        if trace is not None:
            trace.append(f"skill {ref} -> {candidate.label}: " + (
                f"covers {action} (actions[{i}]: {candidate.actions[i]})" if i is not None
                else f"does not cover {action}"))
        if i is not None:
            skill = candidate
            break
    if skill is None:
        labels = ",".join(s.label for s in resolved) or "none"
        return deny(reason("skill", labels, "action outside the agent's skills"), SKILL, skill=labels, **who)
    found = {**who, "skill": skill.label}

    policy = registry.resolve_policy(agent.org, agent.policy) if agent.policy else None
    if policy is None:
        if trace is not None:
            trace.append(f"policy {agent.policy or '(none)'}: not found")
        return deny(reason("policy", "none", "agent has no bound policy"), POLICY, **found)
    matched: list[str] | None = None if trace is None else []
    facts = Facts(action, target, context or {}, agent.agent_id, agent.anchor, now)
    outcome, why, rule = decide_policy(policy.label, policy.document, action, target, matched, facts=facts,
                                       conditions=conditions)
    if trace is not None and matched is not None:
        trace.append(f"policy {agent.policy} -> {policy.label} on target {target!r}: {', '.join(matched)}")
    shadow = _shadow(registry, agent, action, target, facts, conditions)
    if trace is not None and shadow is not None:
        trace.append(f"log-only candidate {shadow.policy}: {shadow.outcome} [{shadow.rule}] (not the answer)")
    terms = approval_terms(policy.document, rule) if outcome == "PENDING" else None
    return Verdict(outcome, why, rule, policy=policy.label, shadow=shadow, approval=terms, **found)


def _shadow(registry: Registry, agent: AgentState, action: str, target: str, facts: Facts,
            conditions: Conditions | None) -> ShadowDecision | None:
    """The agent's log-only candidate's policy step, when it has one that resolves."""
    candidate = registry.resolve_policy(agent.org, agent.shadow) if agent.shadow else None
    if candidate is None:
        return None
    outcome, _, rule = decide_policy(candidate.label, candidate.document, action, target, facts=facts,
                                     conditions=conditions)
    return ShadowDecision(policy=candidate.label, outcome=outcome, rule=rule)
