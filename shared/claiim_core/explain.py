"""Dry runs and version diffs for admins: why a decision would come out as it does, and what
changed between two policy versions. Nothing here is on the gate's hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from claiim_core.conditions import Conditions
from claiim_core.decision import EPOCH, Verdict, evaluate_agent
from claiim_core.policy import approval_text, rule_text
from claiim_core.registry import Registry
from claiim_core.schemas import PolicyVersionInfo


def explain(registry: Registry, org: str, agent_id: str, action: str, target: str = "", *,
            context: Mapping[str, str] | None = None, now: datetime = EPOCH,
            conditions: Conditions | None = None) -> tuple[Verdict | None, list[str]]:
    """The verdict an authenticated request with ``context`` would get at ``now``, with the
    evaluation's own steps through skill, policy and conditions
    (:func:`claiim_core.decision.evaluate_agent`'s trace).

    The token is not checked (this is the admin's view); the verdict is None for an unknown agent.
    """
    agent = registry.agents.get((org, agent_id))
    if agent is None:
        return None, [f"agent {agent_id!r} is not registered in org {org}: DENY agent:unknown"]
    steps = [f"agent {agent.agent_id}: org {agent.org}, anchor {agent.anchor}, {agent.status}, "
             f"control seq {registry.last_seq}"]
    verdict = evaluate_agent(registry, agent, action, target, trace=steps, context=context, now=now,
                             conditions=conditions)
    steps.append(f"=> {verdict.outcome} {verdict.reason} [{verdict.rule}]")
    return verdict, steps


def _doc_lines(version: PolicyVersionInfo) -> list[str]:
    return ([f"description: {version.description}", f"skill: {version.skill}"]
            + [f"allow: {rule_text(r)}" for r in version.allow] + [f"deny: {rule_text(r)}" for r in version.deny]
            + [f"approve: {approval_text(r)}" for r in version.approve])


def policy_diff(old: PolicyVersionInfo, new: PolicyVersionInfo) -> list[str]:
    """Lines removed (``-``) and added (``+``) from ``old`` to ``new``, rule order ignored."""
    before, after = _doc_lines(old), _doc_lines(new)
    removed = [f"- {line}" for line in before if line not in after]
    added = [f"+ {line}" for line in after if line not in before]
    return removed + added
