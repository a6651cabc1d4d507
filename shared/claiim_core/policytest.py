"""``claiim policy test``: run a policy document against expected cases, as ``opa test`` does.

Both files are YAML. Problems are reported as ``FILE:LINE: what is wrong``. A cases file::

    - {action: deploy:staging, expect: ALLOW}
    - {action: deploy:production, expect: DENY, reason: explicitly denied}

``reason``, when given, must be contained in the decision's reason. The policy's skill is not
consulted: this tests the policy's own rules (deny, then allow, then default deny).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from claiim_core.policy import PolicyDocument, check_pattern, decide_policy, parse_ref

POLICY_KEYS = {"skill", "allow", "deny", "description", "name", "version"}
CASE_KEYS = {"action", "target", "expect", "reason"}


class DocumentError(ValueError):
    """A document that cannot be used; ``problems`` are ``FILE:LINE: message`` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Case:
    line: int
    action: str
    expect: str
    reason: str | None


@dataclass(frozen=True)
class CaseResult:
    case: Case
    outcome: str
    reason: str
    rule: str

    @property
    def passed(self) -> bool:
        return self.outcome == self.case.expect and (self.case.reason is None or self.case.reason in self.reason)


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


def _strings(node: yaml.Node, path: str, what: str, problems: list[str]) -> list[str]:
    if not isinstance(node, yaml.SequenceNode):
        problems.append(f"{path}:{_line(node)}: {what} must be a list of action patterns")
        return []
    out = []
    for item in node.value:
        if not isinstance(item, yaml.ScalarNode):
            problems.append(f"{path}:{_line(item)}: {what} entries must be strings")
            continue
        try:
            check_pattern(item.value)
        except ValueError as e:
            problems.append(f"{path}:{_line(item)}: {what}: {e}")
            continue
        out.append(item.value)
    return out


def parse_policy(text: str, path: str) -> tuple[str, PolicyDocument]:
    """The policy's label (``name-vN`` or the file name) and its document; raises DocumentError."""
    root = _load(text, path)
    if not isinstance(root, yaml.MappingNode):
        raise DocumentError([f"{path}:{_line(root)}: a policy is a mapping with skill, allow and deny"])
    problems: list[str] = []
    fields: dict[str, Any] = {}
    for key, value in root.value:
        if key.value not in POLICY_KEYS:
            problems.append(f"{path}:{_line(key)}: unknown key {key.value!r} (expected one of "
                            f"{', '.join(sorted(POLICY_KEYS))})")
        elif key.value in ("allow", "deny"):
            fields[key.value] = _strings(value, path, key.value, problems)
        elif isinstance(value, yaml.ScalarNode):
            fields[key.value] = value.value
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
    label = f"{name}-v{fields['version']}" if "version" in fields else name
    doc = PolicyDocument(skill=fields["skill"], allow=tuple(fields.get("allow", ())),
                         deny=tuple(fields.get("deny", ())))
    return label, doc


def parse_cases(text: str, path: str) -> list[Case]:
    root = _load(text, path)
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
        action, expect, reason = (values.get(k) for k in ("action", "expect", "reason"))
        if action is None or expect is None:
            problems.append(f"{path}:{_line(item)}: a case needs action and expect")
            continue
        if expect.value not in ("ALLOW", "DENY"):
            problems.append(f"{path}:{_line(expect)}: expect must be ALLOW or DENY, not {expect.value!r}")
            continue
        cases.append(Case(_line(item), str(action.value), expect.value, reason.value if reason else None))
    if problems:
        raise DocumentError(problems)
    return cases


def run_cases(label: str, doc: PolicyDocument, cases: list[Case]) -> list[CaseResult]:
    return [CaseResult(case, *decide_policy(label, doc, case.action)) for case in cases]
