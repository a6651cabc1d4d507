"""``claiim policy test``: run a policy document against expected cases, as ``opa test`` does.

Both files are YAML. Problems are reported as ``FILE:LINE: what is wrong``. A cases file::

    - {name: staging is fine, action: deploy:staging, expect: ALLOW}
    - {name: production is not, action: deploy:production, expect: DENY, reason: explicitly denied}

``name`` (default: the action, and the target if any) is what a report and ``--run`` go by.
``target`` defaults to the empty string. ``reason`` and ``rule``, when given, must be contained
in the decision's reason and in the rule that decided (``rule: deny[0]``). The policy's skill is
not consulted: this tests the policy's own rules (deny, then approve, then allow, then default
deny); an action an ``approve`` rule holds is expected as ``PENDING``. Suites that give the agent's
skills, so that cases are decided as the gate decides them, are :mod:`claiim_core.policysuite`.

Rules' conditions (``when``) are evaluated as the gate evaluates them, with what a case gives:
``context`` (a mapping of strings), ``agent``, ``anchor`` and ``time`` (RFC 3339; default
1970-01-01T00:00:00Z)::

    - {action: pay:send, context: {amount_cents: "1200"}, expect: ALLOW}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import yaml

from claiim_core.conditions import ConditionError, Conditions, Facts
from claiim_core.decision import EPOCH
from claiim_core.document import PolicyDocument, Rule, RuleLike
from claiim_core.policy import check_rule, decide_policy
from claiim_core.refs import parse_ref

POLICY_KEYS = {"skill", "allow", "deny", "approve", "description", "name", "version"}
RULE_KEYS = {"action", "target", "description", "when", "ttl", "approver"}
CASE_KEYS = {"name", "action", "target", "expect", "reason", "rule", "context", "agent", "anchor", "time"}


class DocumentError(ValueError):
    """A document that cannot be used; ``problems`` are ``FILE:LINE: message`` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class PolicyFile:
    """A policy document file: its rules, and the name, version and description it may carry."""

    name: str
    version: int | None
    description: str
    document: PolicyDocument

    @property
    def label(self) -> str:
        return f"{self.name}-v{self.version}" if self.version else self.name


@dataclass(frozen=True)
class Case:
    line: int
    action: str
    target: str
    expect: str
    reason: str | None
    rule: str | None = None
    context: dict[str, str] = field(default_factory=dict)
    agent: str = ""
    anchor: str = ""
    time: datetime = EPOCH
    name: str = ""

    @property
    def title(self) -> str:
        """The case's name, else its action (and target)."""
        return self.name or self.action + (f" on {self.target}" if self.target else "")


@dataclass(frozen=True)
class CaseResult:
    case: Case
    outcome: str
    reason: str
    rule: str

    @property
    def passed(self) -> bool:
        case = self.case
        return (self.outcome == case.expect and (case.reason is None or case.reason in self.reason)
                and (case.rule is None or case.rule in self.rule))


def _load(text: str, path: str) -> yaml.Node:
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise DocumentError([f"{path}:{line}: not valid YAML: {getattr(e, 'problem', e)}"]) from e
    if node is None:
        raise DocumentError([f"{path}:1: the document is empty"])
    return node


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _rules(node: yaml.Node, path: str, what: str, problems: list[str],
           conditions: Conditions | None = None) -> list[RuleLike]:
    if not isinstance(node, yaml.SequenceNode):
        problems.append(f"{path}:{_line(node)}: {what} must be a list of rules")
        return []
    out = []
    for item in node.value:
        rule = _rule(item, path, what, problems)
        if rule is None:
            continue
        try:
            out.append(check_rule(rule, approve=what == "approve"))
        except ValueError as e:
            problems.append(f"{path}:{_line(item)}: {what}: {e}")
            continue
        if isinstance(rule, Rule) and rule.when is not None and conditions is not None:
            try:
                conditions.check(rule.when)
            except ConditionError as e:
                problems.append(f"{path}:{_line(item)}: {what}: when: {e}")
    return out


def _rule(node: yaml.Node, path: str, what: str, problems: list[str]) -> RuleLike | None:
    """A rule is an action pattern, or a mapping with action and optional target and description."""
    if isinstance(node, yaml.ScalarNode):
        return str(node.value)
    if not isinstance(node, yaml.MappingNode):
        problems.append(f"{path}:{_line(node)}: {what} entries are action patterns or mappings "
                        "with action, target, description and when")
        return None
    values: dict[str, str] = {}
    ttl = 0
    for key, value in node.value:
        if key.value not in RULE_KEYS:
            problems.append(f"{path}:{_line(key)}: {what}: unknown key {key.value!r} in a rule "
                            f"(expected one of {', '.join(sorted(RULE_KEYS))})")
        elif not isinstance(value, yaml.ScalarNode):
            problems.append(f"{path}:{_line(value)}: {what}: {key.value} must be a string")
        elif key.value == "ttl" and not str(value.value).isdigit():
            problems.append(f"{path}:{_line(value)}: {what}: ttl is a whole number of seconds")
        else:
            values[key.value] = str(value.value)
            ttl = int(value.value) if key.value == "ttl" else ttl
    if values.get("approver", "anchor") not in ("anchor", "admins"):
        problems.append(f"{path}:{_line(node)}: {what}: approver is anchor or admins")
        return None
    if "action" not in values:
        problems.append(f"{path}:{_line(node)}: {what}: a rule needs an action")
        return None
    if len(values) != len(node.value):
        return None
    approver = values.get("approver", "")
    return Rule(action=values["action"], target=values.get("target"), description=values.get("description", ""),
                when=values.get("when"), ttl=ttl, approver="admins" if approver == "admins" else
                "anchor" if approver == "anchor" else "")


def parse_policy(text: str, path: str, conditions: Conditions | None = None) -> PolicyFile:
    """The policy in ``text`` (its name defaults to the file name), its rules' conditions checked by
    ``conditions``; raises DocumentError."""
    root = _load(text, path)
    if not isinstance(root, yaml.MappingNode):
        raise DocumentError([f"{path}:{_line(root)}: a policy is a mapping with skill, allow and deny"])
    problems: list[str] = []
    fields: dict[str, Any] = {}
    for key, value in root.value:
        if key.value not in POLICY_KEYS:
            problems.append(f"{path}:{_line(key)}: unknown key {key.value!r} (expected one of "
                            f"{', '.join(sorted(POLICY_KEYS))})")
        elif key.value in ("allow", "deny", "approve"):
            fields[key.value] = _rules(value, path, key.value, problems, conditions)
        elif isinstance(value, yaml.ScalarNode):
            fields[key.value] = value.value
            if key.value == "version" and not (value.value.isdigit() and int(value.value) >= 1):
                problems.append(f"{path}:{_line(value)}: version must be a whole number from 1")
            if key.value == "skill":
                try:
                    parse_ref(value.value)
                except ValueError as e:
                    problems.append(f"{path}:{_line(value)}: skill: {e}")
        else:
            problems.append(f"{path}:{_line(value)}: {key.value} must be a single value")
    if "skill" not in {key.value for key, _ in root.value}:
        problems.append(f"{path}:{_line(root)}: missing key 'skill'")
    if problems:
        raise DocumentError(problems)
    name = fields.get("name", path.rsplit("/", 1)[-1].removesuffix(".yaml").removesuffix(".yml"))
    doc = PolicyDocument(skill=fields["skill"], allow=tuple(fields.get("allow", ())),
                         deny=tuple(fields.get("deny", ())),
                         approve=tuple(fields["approve"]) if "approve" in fields else msgspec.UNSET)
    version = int(fields["version"]) if "version" in fields else None
    return PolicyFile(name, version, fields.get("description", ""), doc)


def parse_cases(text: str, path: str) -> list[Case]:
    """The cases of a cases file (a list of cases); raises DocumentError."""
    return parse_case_nodes(_load(text, path), path)


def parse_case_nodes(root: yaml.Node, path: str) -> list[Case]:
    """The cases of a YAML list of cases (a cases file, or a suite's ``cases``); raises DocumentError."""
    if not isinstance(root, yaml.SequenceNode) or not root.value:
        raise DocumentError([f"{path}:{_line(root)}: cases are a non-empty list of mappings"])
    problems: list[str] = []
    cases = []
    for item in root.value:
        if not isinstance(item, yaml.MappingNode):
            problems.append(f"{path}:{_line(item)}: a case is a mapping with action and expect")
            continue
        values = {k.value: v for k, v in item.value}
        for key in values.keys() - CASE_KEYS:
            problems.append(f"{path}:{_line(item)}: unknown key {key!r} in a case")
        action, target, expect, reason, rule, name = (
            values.get(k) for k in ("action", "target", "expect", "reason", "rule", "name"))
        if action is None or expect is None:
            problems.append(f"{path}:{_line(item)}: a case needs action and expect")
            continue
        if expect.value not in ("ALLOW", "DENY", "PENDING"):
            problems.append(f"{path}:{_line(expect)}: expect must be ALLOW, DENY or PENDING, not {expect.value!r}")
            continue
        if name is not None and not (isinstance(name, yaml.ScalarNode) and str(name.value)):
            problems.append(f"{path}:{_line(name)}: a case's name is a non-empty string")
            continue
        facts = _case_facts(values, path, problems)
        if facts is None:
            continue
        cases.append(Case(_line(item), str(action.value), str(target.value) if target else "", expect.value,
                          reason.value if reason else None, rule.value if rule else None, *facts,
                          name=str(name.value) if name else ""))
    if problems:
        raise DocumentError(problems)
    return cases


def _case_facts(values: dict[str, yaml.Node], path: str,
                problems: list[str]) -> tuple[dict[str, str], str, str, datetime] | None:
    """A case's context, agent, anchor and time, for conditions; None (and a problem) when malformed."""
    context: dict[str, str] = {}
    node = values.get("context")
    if node is not None:
        if not isinstance(node, yaml.MappingNode) or not all(isinstance(v, yaml.ScalarNode) for _, v in node.value):
            problems.append(f"{path}:{_line(node)}: context is a mapping of names to strings")
            return None
        context = {str(k.value): str(v.value) for k, v in node.value}
    when = EPOCH
    if "time" in values:
        try:
            when = datetime.fromisoformat(str(values["time"].value))
        except ValueError:
            problems.append(f"{path}:{_line(values['time'])}: time is an RFC 3339 time, e.g. 2026-11-27T10:00:00Z")
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    agent, anchor = (str(values[k].value) if k in values else "" for k in ("agent", "anchor"))
    return context, agent, anchor, when


def run_cases(label: str, doc: PolicyDocument, cases: list[Case],
              conditions: Conditions | None = None) -> list[CaseResult]:
    """Each case's verdict by the policy's rules, conditions evaluated by ``conditions``."""
    return [CaseResult(case, *decide_policy(
        label, doc, case.action, case.target,
        facts=Facts(case.action, case.target, case.context, case.agent, case.anchor, case.time),
        conditions=conditions)) for case in cases]
