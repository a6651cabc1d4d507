"""The policy language and the decision evaluator.

A policy document (the seed's format)::

    skill: deploy-v2
    allow: [deploy:staging, health:check]
    deny:  [deploy:production]

Patterns are actions whose segments (split on ``:``) may contain ``*``, which matches any run of
characters inside one segment (``deploy:*`` matches ``deploy:staging`` but not ``deploy``).

A rule is either a bare action pattern or a mapping with an optional target pattern and an
optional description::

    deny:
      - action: deploy:*
        target: prod-*          # '*' matches any run of characters, ':' and '/' included
        description: production changes need a human

A rule without ``target`` applies to every target.

Evaluation order (README, "The decision"): authenticate, agent active, action within the agent's skill
versions, deny rules, allow rules, default deny. Deny wins over allow. An explicitly denied
action gets the reason ``... -- action explicitly denied`` (the seed said "not in allow list";
naming the deny rule is more useful to whoever reads the log).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from claiim_core.document import MAX_DESCRIPTION, MAX_TARGET_PATTERN, PolicyDocument, RuleLike
from claiim_core.schemas import CheckRequest
from claiim_core.tokens import check_token, token_org

if TYPE_CHECKING:
    from claiim_core.registry import AgentState, Registry

# Patterns end in \Z, not $: "$" would also accept a trailing newline.
PATTERN_RE = re.compile(r"^[A-Za-z0-9_.\-*]+(:[A-Za-z0-9_.\-*]+)*\Z")
NAME_PATTERN = r"[a-z0-9](?:[a-z0-9_]|-(?!v\d+\Z))*"
"""A skill or policy name: it may not itself end in ``-vN``, which would read as a version."""
REF_RE = re.compile(rf"^(?P<name>{NAME_PATTERN})(?:-v(?P<version>[1-9]\d*))?\Z")


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split ``deploy-v2`` into ``("deploy", 2)``; a bare ``deploy`` means the latest version."""
    m = REF_RE.match(ref)
    if not m:
        raise ValueError(
            f"{ref!r} is not a reference: use NAME (latest) or NAME-vN (pinned), "
            "NAME made of a-z, 0-9, '-' and '_'"
        )
    version = m.group("version")
    return m.group("name"), int(version) if version else None


def label(name: str, version: int) -> str:
    """The display form of a version, as recorded in decisions: ``no-prod-v1``."""
    return f"{name}-v{version}"


def check_pattern(pattern: str) -> None:
    if not PATTERN_RE.match(pattern) or "**" in pattern:
        raise ValueError(
            f"{pattern!r} is not an action pattern: segments of [A-Za-z0-9_.-] joined by ':', "
            "with '*' standing for any characters inside one segment"
        )


def check_target_pattern(pattern: str) -> None:
    if not pattern or len(pattern) > MAX_TARGET_PATTERN or not pattern.isprintable():
        raise ValueError(
            f"{pattern!r} is not a target pattern: 1 to {MAX_TARGET_PATTERN} printable characters, "
            "with '*' standing for any characters"
        )


def check_rule(rule: RuleLike) -> RuleLike:
    """The rule in its stored form, a bare string when it has neither target nor description.

    Raises ValueError naming what is wrong with its action, target or description.
    """
    if isinstance(rule, str):
        check_pattern(rule)
        return rule
    check_pattern(rule.action)
    if rule.target is not None:
        check_target_pattern(rule.target)
    if len(rule.description) > MAX_DESCRIPTION:
        raise ValueError(f"a rule's description is at most {MAX_DESCRIPTION} characters")
    return rule.action if rule.target is None and not rule.description else rule


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    parts = [re.escape(seg).replace(r"\*", "[^:]*") for seg in pattern.split(":")]
    return re.compile("^" + ":".join(parts) + r"\Z")


@lru_cache(maxsize=4096)
def _compile_target(pattern: str) -> re.Pattern[str]:
    return re.compile(re.escape(pattern).replace(r"\*", ".*") + r"\Z", re.DOTALL)


def matches(pattern: str, action: str) -> bool:
    """True when ``action`` matches ``pattern`` (exact, or with ``*`` inside segments)."""
    if "*" not in pattern:
        return pattern == action
    return _compile(pattern).match(action) is not None


def target_matches(pattern: str | None, target: str) -> bool:
    """True when the rule's target pattern (None: any target) matches ``target``."""
    if pattern is None:
        return True
    if "*" not in pattern:
        return pattern == target
    return _compile_target(pattern).match(target) is not None


def first_match(patterns: tuple[str, ...], action: str) -> int | None:
    """The index of the first action pattern matching ``action`` (skills use this)."""
    for i, pattern in enumerate(patterns):
        if matches(pattern, action):
            return i
    return None


def _rule_matches(rule: RuleLike, action: str, target: str) -> bool:
    if isinstance(rule, str):
        return matches(rule, action)
    return matches(rule.action, action) and target_matches(rule.target, target)


def first_rule(rules: tuple[RuleLike, ...], action: str, target: str) -> int | None:
    """The index of the first rule matching ``action`` on ``target``. Long rule lists are looked up
    through an index of their exact actions (:class:`_RuleIndex`): the cost of a decision hardly
    grows with rules that name other actions."""
    if len(rules) < INDEX_FROM:
        return next((i for i, rule in enumerate(rules) if _rule_matches(rule, action, target)), None)
    index = _rule_index(rules)
    first = next((i for i in index.exact.get(action, ()) if _rule_matches(rules[i], action, target)), None)
    for i in index.wild:
        if first is not None and i > first:
            break
        if _rule_matches(rules[i], action, target):
            return i
    return first


INDEX_FROM = 16
"""Rule lists at least this long are looked up through an index."""


@dataclass(frozen=True, slots=True)
class _RuleIndex:
    exact: dict[str, tuple[int, ...]]
    """Per action, the rules whose action pattern is that action (no ``*``), in order."""
    wild: tuple[int, ...]
    """The rules whose action pattern has a ``*``, in order."""


_indexes: dict[int, tuple[tuple[RuleLike, ...], _RuleIndex]] = {}
"""Rule lists by identity (policies are immutable and live in the registry), at most 1,024."""


def _rule_index(rules: tuple[RuleLike, ...]) -> _RuleIndex:
    cached = _indexes.get(id(rules))
    if cached is not None and cached[0] is rules:
        return cached[1]
    exact: dict[str, list[int]] = {}
    wild: list[int] = []
    for i, rule in enumerate(rules):
        pattern = rule if isinstance(rule, str) else rule.action
        if "*" in pattern:
            wild.append(i)
        else:
            exact.setdefault(pattern, []).append(i)
    index = _RuleIndex({a: tuple(ix) for a, ix in exact.items()}, tuple(wild))
    if len(_indexes) >= 1024:
        _indexes.pop(next(iter(_indexes)))
    _indexes[id(rules)] = (rules, index)
    return index


def rule_text(rule: RuleLike) -> str:
    """A rule on one line: ``deploy:* @ prod-* -- why`` (target and description when set)."""
    if isinstance(rule, str):
        return rule
    text = rule.action
    if rule.target is not None:
        text += f" @ {rule.target}"
    if rule.description:
        text += f" -- {rule.description}"
    return text


def describe_rule(kind: str, i: int, rule: RuleLike) -> str:
    """How a decision names its rule: ``deny[0]: deploy:* @ prod-* -- why``."""
    return f"{kind}[{i}]: {rule_text(rule)}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of evaluating one request against the registry."""

    outcome: Literal["ALLOW", "DENY"]
    reason: str
    rule: str
    org: str = ""
    anchor: str = ""
    policy: str = ""
    skill: str = ""


def deny(reason: str, rule: str, **found: str) -> Verdict:
    return Verdict("DENY", reason, rule, **found)


def evaluate(registry: Registry, request: CheckRequest, token_secret: bytes) -> Verdict:
    """Decide one request. Pure: the same registry and request always give the same verdict.

    The agent is looked up in the org its token names. A request for an agent the org does not
    have is recorded under that org when the org exists (so its auditors see the attempt).
    """
    org = token_org("agent", request.token)
    if org is None:
        return deny(f"auth:bad-token -- not an agent token of any org (agent {request.agent_id})",
                    "authenticate")
    agent = registry.agents.get((org, request.agent_id))
    if agent is None:
        return deny(f"agent:unknown -- no agent {request.agent_id!r} is registered in org {org}",
                    "authenticate", org=org if org in registry.orgs else "")
    who = {"org": agent.org, "anchor": agent.anchor}
    status = check_token(token_secret, request.token, agent.token_hash, agent.retired_tokens)
    if status == "bad":
        return deny(f"auth:bad-token -- token does not match agent {agent.agent_id}", "authenticate", **who)
    if status != "ok":
        return deny(f"auth:{status}-token -- this token of agent {agent.agent_id} was {status}",
                    "authenticate", **who)
    return evaluate_agent(registry, agent, request.action, request.target)


def evaluate_agent(registry: Registry, agent: AgentState, action: str, target: str,
                   trace: list[str] | None = None) -> Verdict:
    """Everything after authentication: agent active, skills, policy. With ``trace``, each step
    taken is appended to it as a line for people (``claiim explain`` shows them): the steps are the
    evaluation's own, so an explanation cannot disagree with the decision."""
    who = {"org": agent.org, "anchor": agent.anchor}
    if agent.status != "active":
        return deny(f"agent:{agent.status} -- agent {agent.agent_id} is {agent.status}", "agent-active", **who)

    skills = [registry.resolve_skill(agent.org, ref) for ref in agent.skills]
    resolved = [s for s in skills if s is not None]
    if len(resolved) != len(skills):
        missing = [ref for ref, s in zip(agent.skills, skills, strict=True) if s is None]
        if trace is not None:
            trace += [f"skill {ref}: not found" for ref in missing]
        return deny(f"skill:{','.join(missing)} -- skill version not found", "skill", **who)
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
        return deny(f"skill:{labels} -- action outside the agent's skills", "skill", skill=labels, **who)
    found = {**who, "skill": skill.label}

    policy = registry.resolve_policy(agent.org, agent.policy) if agent.policy else None
    if policy is None:
        if trace is not None:
            trace.append(f"policy {agent.policy or '(none)'}: not found")
        return deny("policy:none -- agent has no bound policy", "policy", **found)
    matched: list[str] | None = None if trace is None else []
    outcome, reason, rule = decide_policy(policy.label, policy.document, action, target, matched)
    if trace is not None and matched is not None:
        trace.append(f"policy {agent.policy} -> {policy.label} on target {target!r}: {', '.join(matched)}")
    return Verdict(outcome, reason, rule, policy=policy.label, **found)


def decide_policy(label: str, doc: PolicyDocument, action: str, target: str,
                  trace: list[str] | None = None) -> tuple[Literal["ALLOW", "DENY"], str, str]:
    """The policy step alone: deny rules, then allow rules, then default deny; ``trace`` gets what
    each list came to (``deny no match``, ``allow matches allow[0]: ...``)."""
    steps: tuple[tuple[str, tuple[RuleLike, ...], Literal["ALLOW", "DENY"], str], ...] = (
        ("deny", doc.deny, "DENY", "action explicitly denied"), ("allow", doc.allow, "ALLOW", "action allowed"))
    for kind, rules, outcome, text in steps:
        i = first_rule(rules, action, target)
        if trace is not None:
            trace.append(f"{kind} no match" if i is None else f"{kind} matches {describe_rule(kind, i, rules[i])}")
        if i is not None:
            return outcome, f"policy:{label} -- {text}", describe_rule(kind, i, rules[i])
    return "DENY", f"policy:{label} -- action not in allow list", "default-deny"
