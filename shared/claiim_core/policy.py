"""The policy language: action and target patterns, rules, and a policy document's verdict.

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

A rule without ``target`` applies to every target. A rule may carry a condition, ``when``: a CEL
expression over the request (:mod:`claiim_core.conditions`), and applies only when it is true::

    allow:
      - action: pay:send
        when: int(context.amount_cents) < 5000

A condition that cannot be evaluated (a missing context key, a value of the wrong type) makes the
decision DENY, naming the rule: never an exception, never an ALLOW.

A document's deny rules come first, then its allow rules, then the default deny: deny wins over
allow. An explicitly denied action gets the reason ``... -- action explicitly denied`` (the seed
said "not in allow list"; naming the deny rule is more useful to whoever reads the log). The whole
decision, of which this is the last step, is :mod:`claiim_core.decision`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from claiim_core.conditions import ConditionError, Conditions, Facts
from claiim_core.document import (
    DEFAULT_APPROVAL_TTL_S,
    MAX_APPROVAL_TTL_S,
    MAX_CONDITION,
    MAX_DESCRIPTION,
    MAX_TARGET_PATTERN,
    PolicyDocument,
    Rule,
    RuleLike,
)
from claiim_core.reasons import DEFAULT_DENY, reason

# Patterns end in \Z, not $: "$" would also accept a trailing newline.
PATTERN_RE = re.compile(r"^[A-Za-z0-9_.\-*]+(:[A-Za-z0-9_.\-*]+)*\Z")


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


def check_rule(rule: RuleLike, *, approve: bool = False) -> RuleLike:
    """The rule in its stored form, a bare string when it has neither target, description nor
    condition (nor, for an ``approve`` rule, a ttl or approver).

    Raises ValueError naming what is wrong with its action, target, description, condition, or with
    a ttl or approver on a rule that is not an ``approve`` rule.
    """
    if isinstance(rule, str):
        check_pattern(rule)
        return rule
    check_pattern(rule.action)
    if rule.target is not None:
        check_target_pattern(rule.target)
    if len(rule.description) > MAX_DESCRIPTION:
        raise ValueError(f"a rule's description is at most {MAX_DESCRIPTION} characters")
    if rule.when is not None and not (0 < len(rule.when) <= MAX_CONDITION and rule.when.strip()):
        raise ValueError(f"a rule's condition (when) is 1 to {MAX_CONDITION} characters")
    if not approve and (rule.ttl or rule.approver):
        raise ValueError("only approve rules have a ttl or an approver")
    if not 0 <= rule.ttl <= MAX_APPROVAL_TTL_S:
        raise ValueError(f"an approval's ttl is 1 to {MAX_APPROVAL_TTL_S} seconds")
    plain = rule.target is None and not rule.description and rule.when is None and not rule.ttl and not rule.approver
    return rule.action if plain else rule


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
    conditional: bool
    """Whether a rule of the list has a condition (then it is walked in order, conditions evaluated)."""


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
    conditional = any(isinstance(rule, Rule) and rule.when is not None for rule in rules)
    index = _RuleIndex({a: tuple(ix) for a, ix in exact.items()}, tuple(wild), conditional)
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
    if rule.when is not None:
        text += f" if {rule.when}"
    if rule.description:
        text += f" -- {rule.description}"
    return text


def approval_text(rule: RuleLike) -> str:
    """An ``approve`` rule on one line with its terms: ``deploy:production (ttl 900 s, approver admins)``."""
    ttl, approver = (rule.ttl, rule.approver) if isinstance(rule, Rule) else (0, "")
    return f"{rule_text(rule)} (ttl {ttl or DEFAULT_APPROVAL_TTL_S} s, approver {approver or 'anchor'})"


def describe_rule(kind: str, i: int, rule: RuleLike) -> str:
    """How a decision names its rule: ``deny[0]: deploy:* @ prod-* -- why``."""
    return f"{kind}[{i}]: {rule_text(rule)}"


PolicyOutcome = Literal["ALLOW", "DENY", "PENDING"]


def approval_terms(doc: PolicyDocument, rule: str) -> tuple[int, Literal["anchor", "admins"]]:
    """The ttl (seconds) and approver of the ``approve`` rule a PENDING decision names (``approve[i]: ...``)."""
    found = doc.approve[int(rule[len("approve["):rule.index("]")])] if doc.approve else None
    if not isinstance(found, Rule):
        return DEFAULT_APPROVAL_TTL_S, "anchor"
    return found.ttl or DEFAULT_APPROVAL_TTL_S, found.approver or "anchor"


def decide_policy(label: str, doc: PolicyDocument, action: str, target: str,
                  trace: list[str] | None = None, *, facts: Facts | None = None,
                  conditions: Conditions | None = None) -> tuple[PolicyOutcome, str, str]:
    """The policy step alone: deny rules, then approve rules (PENDING: a person must approve), then
    allow rules, then default deny; ``trace`` gets what each list came to (``deny no match``,
    ``allow matches allow[0]: ...``). A rule with a condition applies only when ``conditions`` says
    it holds of ``facts``; one that cannot be evaluated (or without ``conditions`` to evaluate it)
    decides DENY, naming that rule."""
    approve = doc.approve or ()
    steps: tuple[tuple[str, tuple[RuleLike, ...], PolicyOutcome, str], ...] = (
        ("deny", doc.deny, "DENY", "action explicitly denied"),
        ("approve", approve, "PENDING", "action needs approval"),
        ("allow", doc.allow, "ALLOW", "action allowed"))
    for kind, rules, outcome, text in steps:
        if not rules and kind == "approve":
            continue
        i, failed = _first_applying(rules, action, target, facts, conditions, kind, trace)
        if trace is not None:
            trace.append(f"{kind} no match" if i is None else f"{kind} matches {describe_rule(kind, i, rules[i])}")
        if i is not None and failed is not None:
            return "DENY", reason("policy", label, f"condition of {kind}[{i}] not evaluated: {failed}"), \
                describe_rule(kind, i, rules[i])
        if i is not None:
            return outcome, reason("policy", label, text), describe_rule(kind, i, rules[i])
    return "DENY", reason("policy", label, "action not in allow list"), DEFAULT_DENY


def _first_applying(rules: tuple[RuleLike, ...], action: str, target: str, facts: Facts | None,
                    conditions: Conditions | None, kind: str,
                    trace: list[str] | None) -> tuple[int | None, str | None]:
    """The first rule that applies (its action and target match and its condition, if any, holds), and
    why its condition could not be evaluated (None: it could)."""
    if not _rule_index(rules).conditional:
        return first_rule(rules, action, target), None
    for i, rule in enumerate(rules):
        if not _rule_matches(rule, action, target):
            continue
        when = rule.when if isinstance(rule, Rule) else None
        if when is None:
            return i, None
        if conditions is None or facts is None:
            return i, "conditions are not evaluated here"
        try:
            holds = conditions.holds(when, facts)
        except ConditionError as e:
            return i, str(e)
        if holds:
            return i, None
        if trace is not None:
            trace.append(f"{kind}[{i}] matches, but its condition is false: {when}")
    return None, None
