"""Dry runs and version diffs for admins: why a decision would come out as it does, and what
changed between two policy versions. Nothing here is on the gate's hot path.
"""

from __future__ import annotations

from claiim_core.document import RuleLike
from claiim_core.policy import Verdict, describe_rule, evaluate_agent, first_match, first_rule, rule_text
from claiim_core.registry import Registry
from claiim_core.schemas import PolicyVersionInfo


def explain(registry: Registry, org: str, agent_id: str, action: str,
            target: str = "") -> tuple[Verdict | None, list[str]]:
    """The verdict an authenticated request would get now, with the path through skill and policy.

    The token is not checked (this is the admin's view); the verdict is None for an unknown agent.
    """
    agent = registry.agents.get((org, agent_id))
    if agent is None:
        return None, [f"agent {agent_id!r} is not registered in org {org}: DENY agent:unknown"]
    steps = [f"agent {agent.agent_id}: org {agent.org}, anchor {agent.anchor}, {agent.status}, "
             f"control seq {registry.last_seq}"]
    for ref in agent.skills:
        skill = registry.resolve_skill(agent.org, ref)
        if skill is None:
            steps.append(f"skill {ref}: not found")
            continue
        i = first_match(skill.actions, action)
        covered = f"covers {action} (actions[{i}]: {skill.actions[i]})" if i is not None else f"does not cover {action}"
        steps.append(f"skill {ref} -> {skill.label}: {covered}")
    policy = registry.resolve_policy(agent.org, agent.policy) if agent.policy else None
    if policy is None:
        steps.append(f"policy {agent.policy or '(none)'}: not found")
    else:
        doc = policy.document
        steps.append(f"policy {agent.policy} -> {policy.label} on target {target!r}: "
                     f"deny {_match_text('deny', doc.deny, action, target)}, "
                     f"allow {_match_text('allow', doc.allow, action, target)}")
    verdict = evaluate_agent(registry, agent, action, target)
    steps.append(f"=> {verdict.outcome} {verdict.reason} [{verdict.rule}]")
    return verdict, steps


def _match_text(kind: str, rules: tuple[RuleLike, ...], action: str, target: str) -> str:
    i = first_rule(rules, action, target)
    return "no match" if i is None else "matches " + describe_rule(kind, i, rules[i])


def _doc_lines(version: PolicyVersionInfo) -> list[str]:
    return ([f"description: {version.description}", f"skill: {version.skill}"]
            + [f"allow: {rule_text(r)}" for r in version.allow] + [f"deny: {rule_text(r)}" for r in version.deny])


def policy_diff(old: PolicyVersionInfo, new: PolicyVersionInfo) -> list[str]:
    """Lines removed (``-``) and added (``+``) from ``old`` to ``new``, rule order ignored."""
    before, after = _doc_lines(old), _doc_lines(new)
    removed = [f"- {line}" for line in before if line not in after]
    added = [f"+ {line}" for line in after if line not in before]
    return removed + added
