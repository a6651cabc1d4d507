"""``claiim policy test``: cases pass and fail as they should; bad documents name file and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
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
    label, doc = parse_policy(POLICY, "p.yaml")
    results = run_cases(label, doc, parse_cases(CASES, "c.yaml"))
    assert label == "no-prod-v1"
    assert [r.passed for r in results] == [True, False, True, True]  # reason names the message, not the rule
    assert results[1].rule == "allow[1]: deploy:rollback-*"


def test_a_wrong_expectation_fails() -> None:
    """A case expecting the opposite outcome fails."""
    label, doc = parse_policy(POLICY, "p.yaml")
    [result] = run_cases(label, doc, parse_cases("- {action: deploy:production, expect: ALLOW}", "c.yaml"))
    assert not result.passed and result.outcome == "DENY"


@pytest.mark.parametrize(("text", "expected"), [
    ("skil: deploy-v2\n", ["p.yaml:1: unknown key 'skil'", "p.yaml:1: missing key 'skill'"]),
    ("skill: deploy-v2\nallow:\n  - ok:fine\n  - 'bad action!'\n", ["p.yaml:4: allow: 'bad action!' is not an action"]),
    ("skill: deploy-v2\ndeny: deploy:production\n", ["p.yaml:2: deny must be a list"]),
    ("skill: [a]\n", ["p.yaml:1: skill must be a single value"]),
    ("skill: deploy-v2\nallow: [a:b\n", ["p.yaml:3: not valid YAML"]),
    ("- just a list\n", ["p.yaml:1: a policy is a mapping"]),
    ("", ["p.yaml:1: the document is empty"]),
])
def test_bad_policy_documents_name_the_line(text: str, expected: list[str]) -> None:
    """Each problem in a policy document is reported with its file and line."""
    with pytest.raises(DocumentError) as info:
        parse_policy(text, "p.yaml")
    assert len(info.value.problems) == len(expected)
    for problem, start in zip(info.value.problems, expected, strict=True):
        assert problem.startswith(start), problem


@pytest.mark.parametrize(("text", "start"), [
    ("- {action: a:b, expect: MAYBE}\n", "c.yaml:1: expect must be ALLOW or DENY"),
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
    out = subprocess.run([CLAIIM, "--env-file", str(tmp_path / "none"), "policy", "test", str(tmp_path / "p.yaml"),
                          str(tmp_path / "c.yaml")], capture_output=True, text=True, timeout=60)
    assert out.returncode == code, out.stdout + out.stderr
