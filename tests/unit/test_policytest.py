"""``claiim policy test``: cases pass and fail as they should; bad documents name file and line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from claiim_core.document import Rule
from claiim_core.policytest import DocumentError, parse_cases, parse_policy, run_cases

POLICY = """\
name: no-prod
version: 1
skill: deploy-v2
allow: [deploy:staging, "deploy:rollback-*"]
deny: [deploy:production, deploy:rollback-production]
"""
CASES = """\
- {action: deploy:staging, expect: ALLOW}
- {action: deploy:rollback-staging, expect: ALLOW, reason: "allow[1]"}
- {action: deploy:rollback-production, expect: DENY, reason: explicitly denied}
- {action: pr:merge, expect: DENY, reason: not in allow list}
"""
CLAIIM = str(Path(sys.executable).parent / "claiim")


def test_every_case_holds_for_the_seed_policy() -> None:
    """The seed-like policy meets all its cases, deny winning over a matching allow wildcard."""
    policy = parse_policy(POLICY, "p.yaml")
    results = run_cases(policy.label, policy.document, parse_cases(CASES, "c.yaml"))
    assert policy.label == "no-prod-v1"
    assert [r.passed for r in results] == [True, False, True, True]  # reason names the message, not the rule
    assert results[1].rule == "allow[1]: deploy:rollback-*"


def test_a_wrong_expectation_fails() -> None:
    """A case expecting the opposite outcome fails."""
    policy = parse_policy(POLICY, "p.yaml")
    [result] = run_cases(policy.label, policy.document,
                         parse_cases("- {action: deploy:production, expect: ALLOW}", "c.yaml"))
    assert not result.passed and result.outcome == "DENY"


TARGETED = """\
name: careful
skill: deploy-v2
allow:
  - action: "deploy:*"
    target: "staging-*"
    description: staging is fair game
deny:
  - action: deploy:production
    description: production needs a human
"""
TARGETED_CASES = """\
- {action: deploy:staging, target: staging-eu, expect: ALLOW, rule: "allow[0]"}
- {action: deploy:staging, target: prod-eu, expect: DENY, reason: not in allow list}
- {action: deploy:production, target: staging-eu, expect: DENY, rule: "production needs a human"}
- {action: deploy:staging, target: staging-eu, expect: ALLOW, rule: "deny[0]"}
"""


def test_rules_with_targets_and_descriptions() -> None:
    """Target patterns restrict a rule; a case can name the rule (or its description) that must decide."""
    policy = parse_policy(TARGETED, "p.yaml")
    results = run_cases(policy.label, policy.document, parse_cases(TARGETED_CASES, "c.yaml"))
    assert [r.passed for r in results] == [True, True, True, False]
    assert results[0].rule == "allow[0]: deploy:* @ staging-* -- staging is fair game"
    assert results[2].rule == "deny[0]: deploy:production -- production needs a human"


@pytest.mark.parametrize(("text", "expected"), [
    ("skil: deploy-v2\n", ["p.yaml:1: unknown key 'skil'", "p.yaml:1: missing key 'skill'"]),
    ("skill: deploy-v2\nallow:\n  - ok:fine\n  - 'bad action!'\n", ["p.yaml:4: allow: 'bad action!' is not an action"]),
    ("skill: deploy-v2\ndeny: deploy:production\n", ["p.yaml:2: deny must be a list"]),
    ("skill: [a]\n", ["p.yaml:1: skill must be a single value"]),
    ("skill: deploy-v2\nallow: [a:b\n", ["p.yaml:3: not valid YAML"]),
    ("- just a list\n", ["p.yaml:1: a policy is a mapping"]),
    ("", ["p.yaml:1: the document is empty"]),
    ("skill: deploy-v2\nallow:\n  - action: a:b\n    targt: x\n", ["p.yaml:4: allow: unknown key 'targt' in a rule"]),
    ("skill: deploy-v2\ndeny:\n  - target: x\n", ["p.yaml:3: deny: a rule needs an action"]),
    ("skill: deploy-v2\ndeny:\n  - action: a:b\n    target: ''\n", ["p.yaml:3: deny: '' is not a target pattern"]),
    ("skill: deploy-v2\ndeny:\n  - action: a:b\n    target: [x]\n", ["p.yaml:4: deny: target must be a string"]),
    ("skill: deploy-v2\ndeny:\n  - [a:b]\n", ["p.yaml:3: deny entries are action patterns or mappings"]),
    ("skill: deploy-v2\nversion: two\n", ["p.yaml:2: version must be a whole number"]),
])
def test_bad_policy_documents_name_the_line(text: str, expected: list[str]) -> None:
    """Each problem in a policy document is reported with its file and line."""
    with pytest.raises(DocumentError) as info:
        parse_policy(text, "p.yaml")
    assert len(info.value.problems) == len(expected)
    for problem, start in zip(info.value.problems, expected, strict=True):
        assert problem.startswith(start), problem


@pytest.mark.parametrize(("text", "start"), [
    ("- {action: a:b, expect: MAYBE}\n", "c.yaml:1: expect must be ALLOW, DENY or PENDING"),
    ("- {action: a:b}\n", "c.yaml:1: a case needs action and expect"),
    ("- {action: a:b, expect: ALLOW}\n- {action: a:c, expect: DENY, colour: red}\n", "c.yaml:2: unknown key 'colour'"),
    ("[]\n", "c.yaml:1: cases are a non-empty list"),
])
def test_bad_case_files_name_the_line(text: str, start: str) -> None:
    """Each problem in a cases file is reported with its file and line."""
    with pytest.raises(DocumentError) as info:
        parse_cases(text, "c.yaml")
    assert info.value.problems[0].startswith(start), info.value.problems


@pytest.mark.parametrize(("cases", "code"), [
    ("- {action: deploy:staging, expect: ALLOW}\n", 0),
    ("- {action: deploy:staging, expect: DENY}\n", 1),
    ("- {action: deploy:staging}\n", 2),
])
def test_cli_exit_codes(tmp_path: Path, cases: str, code: int) -> None:
    """`claiim policy test` exits 0 when all cases hold, 1 on a mismatch, 2 on an invalid document."""
    (tmp_path / "p.yaml").write_text(POLICY)
    (tmp_path / "c.yaml").write_text(cases)
    out = subprocess.run([CLAIIM, "--env-file", os.devnull, "policy", "test", str(tmp_path / "p.yaml"),
                          str(tmp_path / "c.yaml")], capture_output=True, text=True, timeout=60)
    assert out.returncode == code, out.stdout + out.stderr


def test_a_policy_file_holds_approve_rules_and_a_case_expects_pending() -> None:
    text = ("skill: deploy-v2\nallow: [deploy:staging]\napprove:\n  - {action: deploy:production, ttl: 600, "
            "approver: admins}\n")
    policy = parse_policy(text, "gated.yaml")
    assert policy.document.approve == (Rule(action="deploy:production", ttl=600, approver="admins"),)
    cases = parse_cases("- {action: deploy:production, expect: PENDING, rule: 'approve[0]'}\n"
                        "- {action: deploy:staging, expect: ALLOW}\n", "cases.yaml")
    assert all(r.passed for r in run_cases(policy.label, policy.document, cases))
    with pytest.raises(DocumentError, match=r"gated.yaml:2: allow: only approve rules have a ttl"):
        parse_policy("skill: deploy-v2\nallow: [{action: deploy:staging, ttl: 5}]\n", "gated.yaml")
    with pytest.raises(DocumentError, match="approver is anchor or admins"):
        parse_policy("skill: deploy-v2\napprove: [{action: x, approver: bob}]\n", "gated.yaml")
