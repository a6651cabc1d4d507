"""``claiim policy test``: cases pass and fail as they should, decided as the gate decides them when the
agent's skills are given; suites, names, reports (text, JSON, JUnit), coverage; bad documents name file and
line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from claiim_core.decision import evaluate_agent
from claiim_core.document import Rule
from claiim_core.policysuite import build_subject, parse_suite, run_suite, uncovered
from claiim_core.policytest import CaseResult, DocumentError, parse_cases, parse_policy, run_cases
from claiim_core.schemas import PolicyVersionInfo
from claiim_runtime.conditions import CelConditions
from claiim_server.cli.commands import policy_diff_cmd

from tests.unit.seed import NO_PROD, seed_registry

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
CEL = CelConditions()


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
    ("- {name: [a], action: a:b, expect: ALLOW}\n", "c.yaml:1: a case's name is a non-empty string"),
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


# -- the gate's verdict, skills included; suites, names, reports, coverage ---------------------------

DEMO_BUNDLE = Path(__file__).parents[2] / "services/server/claiim_server/cli/demo-bundle.yaml"
OUTSIDE = "skill:deploy-v2 -- action outside the agent's skills"
BUNDLE_SUITE = f"""\
bundle: {DEMO_BUNDLE}
agent: deploy-bot
cases:
  - {{name: staging deploys, action: deploy:staging, expect: ALLOW, rule: "allow[0]"}}
  - {{name: merging is outside the skills, action: pr:merge, expect: DENY, reason: "{OUTSIDE}"}}
  - {{name: production is denied, action: deploy:production, expect: DENY, rule: "deny[0]"}}
"""
INLINE_SUITE = """\
policy: p.yaml
skills:
  - {name: deploy, version: 1, actions: [deploy:staging, health:check]}
  - {name: deploy, version: 2, actions: [deploy:staging, deploy:production, "deploy:rollback-*", health:check]}
agent: {skills: [deploy-v2], id: deploy-bot, anchor: s.emp1}
cases:
  - {name: rollback allowed, action: deploy:rollback-staging, expect: ALLOW}
  - {name: merge outside, action: pr:merge, expect: DENY, reason: "skill:deploy-v2 -- action outside"}
"""


def _suite(text: str, policy: str | None = None, bundle: tuple[str, str] | None = None,
           conditions: Any = None) -> list[CaseResult]:
    suite = parse_suite(text, "s_test.yaml")
    subject = build_subject(suite, parse_policy(policy, "p.yaml", conditions) if policy else None, bundle, conditions)
    return run_suite(subject, suite.cases, conditions)


def test_a_bundle_agent_case_gets_the_gates_skill_reason() -> None:
    """With the demo bundle's deploy-bot, an action outside its skills is DENY with the gate's own skill reason."""
    results = _suite(BUNDLE_SUITE, bundle=(DEMO_BUNDLE.read_text(), str(DEMO_BUNDLE)))
    assert [(r.passed, r.outcome, r.rule) for r in results] == [
        (True, "ALLOW", "allow[0]: deploy:staging"), (True, "DENY", "skill"),
        (True, "DENY", "deny[0]: deploy:production")]
    assert results[1].reason == OUTSIDE
    # without skills the same case is decided by the policy alone, and does not hold
    [alone] = run_cases("no-prod-v1", NO_PROD, [results[1].case])
    assert not alone.passed and alone.rule == "default-deny"


@pytest.mark.parametrize("action", ["deploy:staging", "deploy:production", "deploy:rollback-production", "pr:merge",
                                    "health:check", "infra:destroy", "x"])
def test_the_runner_agrees_with_the_gate(action: str) -> None:
    """For any action, a bundle suite's verdict is exactly the gate's verdict over the seed registry."""
    registry = seed_registry()
    gate = evaluate_agent(registry, registry.agents[("demo", "deploy-bot")], action, "api")
    text = f"bundle: demo.yaml\nagent: deploy-bot\ncases:\n  - {{action: '{action}', target: api, expect: ALLOW}}\n"
    [result] = _suite(text, bundle=(DEMO_BUNDLE.read_text(), "demo.yaml"))
    assert (result.outcome, result.reason, result.rule) == (gate.outcome, gate.reason, gate.rule)


def test_inline_skills_and_the_agents_references_decide() -> None:
    """Inline skill definitions with the agent's references: the pinned version's actions bound the agent."""
    policy = "name: no-prod\nskill: deploy-v2\nallow: ['deploy:rollback-*', deploy:staging]\n"
    results = _suite(INLINE_SUITE, policy)
    assert [(r.passed, r.outcome) for r in results] == [(True, "ALLOW"), (True, "DENY")]
    pinned = _suite(INLINE_SUITE.replace("skills: [deploy-v2]", "skills: [deploy-v1]"), policy)
    assert pinned[0].reason == "skill:deploy-v1 -- action outside the agent's skills"


def test_without_an_agent_the_suite_agent_has_every_skill_it_defines() -> None:
    """A suite with skills and no agent gives the agent each defined skill, by name (its latest version)."""
    text = INLINE_SUITE.replace("agent: {skills: [deploy-v2], id: deploy-bot, anchor: s.emp1}\n", "")
    assert parse_suite(text, "s_test.yaml").agent_skills == ("deploy",)
    assert [r.passed for r in _suite(text, "skill: deploy\nallow: ['deploy:*']\n")] == [True, True]


def test_a_policy_file_replaces_the_bundle_agents_policy() -> None:
    """Beside a bundle, a policy file is the agent's policy, as the next version of its name."""
    text = BUNDLE_SUITE.replace("agent: deploy-bot", "agent: deploy-bot\npolicy: p.yaml")
    results = _suite(text, "name: no-prod\nskill: deploy-v2\nallow: [deploy:staging, deploy:production]\n",
                     (DEMO_BUNDLE.read_text(), str(DEMO_BUNDLE)))
    assert [r.passed for r in results] == [True, True, False]
    assert results[2].reason == "policy:no-prod-v2 -- action allowed"


def test_conditions_see_the_agent_and_a_cases_own_facts() -> None:
    """With skills, conditions see the agent's id and anchor unless a case gives its own, and the case's context."""
    policy = ("skill: deploy\nallow:\n  - action: deploy:staging\n    when: anchor == 's.emp1' && "
              "int(context.n) < 5\n")
    text = INLINE_SUITE.split("cases:")[0] + """cases:
  - {action: deploy:staging, context: {n: "1"}, expect: ALLOW}
  - {action: deploy:staging, context: {n: "9"}, expect: DENY, rule: default-deny}
  - {action: deploy:staging, context: {n: "1"}, anchor: j.smith, expect: DENY, rule: default-deny}
  - {action: deploy:staging, expect: DENY, reason: "condition of allow[0] not evaluated"}
"""
    assert all(r.passed for r in _suite(text, policy, conditions=CEL)), _suite(text, policy, conditions=CEL)


def test_cases_have_names_and_a_default_title() -> None:
    """A case's name is its title; without one, its action and target."""
    named, plain = parse_cases("- {name: prod is denied, action: a:b, expect: DENY}\n"
                               "- {action: a:b, target: t, expect: DENY}\n", "c.yaml")
    assert (named.name, named.title, plain.title) == ("prod is denied", "prod is denied", "a:b on t")


@pytest.mark.parametrize(("text", "start"), [
    ("policy: p.yaml\n", "s_test.yaml:1: missing key 'cases'"),
    ("policy: p.yaml\nmode: x\ncases: [{action: a:b, expect: ALLOW}]\n", "s_test.yaml:2: unknown key 'mode'"),
    ("bundle: b.yaml\ncases: [{action: a:b, expect: ALLOW}]\n", "s_test.yaml:1: with a bundle, agent names"),
    ("bundle: b.yaml\nagent: {skills: [x]}\ncases: [{action: a:b, expect: ALLOW}]\n",
     "s_test.yaml:2: with a bundle, agent is the id"),
    ("policy: p.yaml\nagent: {skills: [x]}\ncases: [{action: a:b, expect: ALLOW}]\n",
     "s_test.yaml:2: an agent comes from a bundle"),
    ("policy: p.yaml\nskills: []\nagent: {skills: [x], colour: red}\ncases: [{action: a:b, expect: ALLOW}]\n",
     "s_test.yaml:3: agent: unknown key 'colour'"),
    ("policy: [p.yaml]\ncases: [{action: a:b, expect: ALLOW}]\n", "s_test.yaml:1: policy is a file name"),
    ("policy: p.yaml\ncases:\n  - {action: a:b}\n", "s_test.yaml:3: a case needs action and expect"),
    ("just text\n", "s_test.yaml:1: a suite is a mapping"),
])
def test_bad_suites_name_the_line(text: str, start: str) -> None:
    """Each problem in a suite file is reported with its file and line."""
    with pytest.raises(DocumentError) as info:
        parse_suite(text, "s_test.yaml")
    assert info.value.problems[0].startswith(start), info.value.problems


@pytest.mark.parametrize(("suite", "bundle", "start"), [
    ("policy: p.yaml\nskills:\n  - {name: deploy, actions: ['bad one']}\ncases: [{action: a:b, expect: ALLOW}]\n",
     None, "s_test.yaml:3: skills[0] (deploy).actions[0]: 'bad one' is not an action pattern"),
    ("policy: p.yaml\nskills: [{name: deploy, actions: [a:b]}]\nagent:\n  skills: [deploy-v4]\n"
     "cases: [{action: a:b, expect: ALLOW}]\n", None, "s_test.yaml:4: agent: no skill deploy-v4 among"),
    ("bundle: b.yaml\nagent: nobody\ncases: [{action: a:b, expect: ALLOW}]\n", "demo",
     "s_test.yaml:2: the bundle b.yaml has no agent 'nobody' (its agents: deploy-bot, review-bot)"),
    ("bundle: b.yaml\nagent: x\ncases: [{action: a:b, expect: ALLOW}]\n",
     "org: demo\nskills:\n  - {name: s, actions: ['bad x']}\n", "b.yaml:3: skills[0] (s).actions[0]: 'bad x'"),
    ("bundle: b.yaml\nagent: review-bot\npolicy: p.yaml\ncases: [{action: a:b, expect: ALLOW}]\n", "demo",
     "s_test.yaml:3: the policy governs skill deploy, which the agent does not have (review-v1)"),
])
def test_unusable_skills_and_bundles_name_the_line(suite: str, bundle: str | None, start: str) -> None:
    """Problems with a suite's skills, its agent or its bundle name the file and line they are in."""
    text = DEMO_BUNDLE.read_text() if bundle == "demo" else bundle
    with pytest.raises(DocumentError) as info:
        _suite(suite, "skill: deploy\nallow: [a:b]\n", (text, "b.yaml") if text else None)
    assert info.value.problems[0].startswith(start), info.value.problems


def test_coverage_names_the_rules_no_case_was_decided_by() -> None:
    """Rules that decided no case are listed by index and text; rules that decided one are not."""
    policy = parse_policy(POLICY, "p.yaml")
    results = run_cases(policy.label, policy.document, parse_cases(CASES, "c.yaml"))
    assert uncovered(policy.document, results) == ["deny[0]: deploy:production never decided a case"]
    assert uncovered(policy.document, []) == [
        "deny[0]: deploy:production never decided a case", "deny[1]: deploy:rollback-production never decided a case",
        "allow[0]: deploy:staging never decided a case", "allow[1]: deploy:rollback-* never decided a case"]


# -- through the real command ----------------------------------------------------------------------------


def _claiim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLAIIM, "--env-file", os.devnull, "policy", "test", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


@pytest.fixture
def suites(tmp_path: Path) -> Path:
    """A directory of two suites (one below), a policy file and a YAML file that is no suite."""
    (tmp_path / "no-prod.yaml").write_text(POLICY)
    (tmp_path / "policy_test.yaml").write_text("policy: no-prod.yaml\ncases:\n"
                                               "  - {name: staging ok, action: deploy:staging, expect: ALLOW}\n"
                                               "  - {name: prod allowed, action: deploy:production, expect: ALLOW, "
                                               "rule: 'allow[0]'}\n")
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "deploy_bot_test.yaml").write_text(BUNDLE_SUITE)
    (tmp_path / "agents" / "notes.yaml").write_text("not: a suite\n")
    return tmp_path


def test_cli_runs_every_suite_in_a_directory_and_prints_expected_and_got(suites: Path) -> None:
    """`claiim policy test DIR` runs each *_test.yaml below DIR; a failure shows expected and actual outcome,
    reason and rule."""
    out = _claiim(str(suites))
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "PASS: 4 / FAIL: 1"
    fail = lines.index(f"FAIL  {suites}/policy_test.yaml:4  prod allowed (deploy:production)")
    assert lines[fail + 1:fail + 3] == [
        '      expected: ALLOW, rule containing "allow[0]"',
        '      got:      DENY, reason "policy:no-prod-v1 -- action explicitly denied", '
        'rule "deny[0]: deploy:production"']
    assert f"PASS  {suites}/agents/deploy_bot_test.yaml:5  merging is outside the skills (pr:merge): DENY [skill]" \
        in lines


def test_cli_run_filters_cases_by_name(suites: Path) -> None:
    """--run keeps the cases whose name the regular expression matches; no match at all is exit 2."""
    out = _claiim(str(suites), "--run", "^(staging ok|merging)")
    assert (out.returncode, out.stdout.splitlines()[-1]) == (0, "PASS: 2 / FAIL: 0"), out.stdout + out.stderr
    out = _claiim(str(suites), "--run", "nothing-like-this")
    assert (out.returncode, out.stderr.strip()) == (2, "error: no case's name matches --run 'nothing-like-this'")
    assert _claiim(str(suites), "--run", "(").returncode == 2


def test_cli_json_report(suites: Path) -> None:
    """--json (the same as --format json) gives totals and, per suite, each case's expected and actual verdict."""
    out = _claiim(str(suites), "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report == json.loads(_claiim(str(suites), "--format", "json").stdout)
    assert (report["passed"], report["failed"]) == (4, 1)
    bundle_suite, policy_suite = report["suites"]
    assert (bundle_suite["policy"], bundle_suite["agent"], policy_suite["agent"]) == ("no-prod-v1", "deploy-bot", None)
    failed = next(c for c in policy_suite["cases"] if not c["passed"])
    assert failed["expected"] == {"outcome": "ALLOW", "reason": None, "rule": "allow[0]"}
    assert failed["got"] == {"outcome": "DENY", "reason": "policy:no-prod-v1 -- action explicitly denied",
                             "rule": "deny[0]: deploy:production"}
    assert _claiim(str(suites), "--json", "--format", "junit").returncode == 2


def test_cli_junit_report_is_well_formed(suites: Path) -> None:
    """--format junit is JUnit XML: a testsuite per suite file, a testcase per case, a failure with expected vs got."""
    out = _claiim(str(suites), "--format", "junit", "--coverage")
    assert out.returncode == 1
    root = ET.fromstring(out.stdout)
    assert (root.tag, root.get("tests"), root.get("failures")) == ("testsuites", "5", "1")
    by_name = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(by_name) == {f"{suites}/policy_test.yaml", f"{suites}/agents/deploy_bot_test.yaml"}
    policy_suite = by_name[f"{suites}/policy_test.yaml"]
    assert (policy_suite.get("tests"), policy_suite.get("failures")) == ("2", "1")
    cases = policy_suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["staging ok", "prod allowed"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and failure.text is not None
    assert failure.get("message", "").startswith('expected ALLOW, rule containing "allow[0]"; got DENY')
    assert failure.text.splitlines() == ['expected: ALLOW, rule containing "allow[0]"', 'got:      DENY, reason '
                                         '"policy:no-prod-v1 -- action explicitly denied", rule "deny[0]: '
                                         'deploy:production"']
    coverage = policy_suite.findtext("system-out") or ""
    assert "deny[1]: deploy:rollback-production never decided a case" in coverage


def test_cli_coverage(suites: Path) -> None:
    """--coverage reports, per suite, how many of the policy's rules decided a case and which did not."""
    out = _claiim(str(suites / "policy_test.yaml"), "--coverage")
    assert out.stdout.splitlines()[-4:] == [
        "PASS: 1 / FAIL: 1",
        f"coverage of no-prod-v1 by {suites}/policy_test.yaml: 2 of 4 rules decided a case",
        "  deny[1]: deploy:rollback-production never decided a case",
        "  allow[1]: deploy:rollback-* never decided a case"], out.stdout


@pytest.mark.parametrize(("suite", "code", "stderr"), [
    ("policy: no-prod.yaml\ncases: [{action: deploy:staging, expect: ALLOW}]\n", 0, ""),
    ("policy: no-prod.yaml\ncases: [{action: deploy:staging, expect: DENY}]\n", 1, ""),
    ("policy: missing.yaml\ncases: [{action: deploy:staging, expect: DENY}]\n", 2,
     "{dir}/x_test.yaml:1: cannot read {dir}/missing.yaml: No such file or directory"),
    ("policy: no-prod.yaml\ncases:\n  - {action: deploy:staging, expect: MAYBE}\n", 2,
     "{dir}/x_test.yaml:3: expect must be ALLOW, DENY or PENDING, not 'MAYBE'"),
])
def test_cli_suite_exit_codes(tmp_path: Path, suite: str, code: int, stderr: str) -> None:
    """A suite's run exits 0 when all cases hold, 1 on a mismatch, 2 with FILE:LINE problems when a file is unusable."""
    (tmp_path / "no-prod.yaml").write_text(POLICY)
    (tmp_path / "x_test.yaml").write_text(suite)
    out = _claiim(str(tmp_path))
    assert (out.returncode, out.stderr.strip()) == (code, stderr.format(dir=tmp_path)), out.stdout


def test_cli_two_argument_form_takes_a_cases_suite_with_a_bundle(tmp_path: Path) -> None:
    """`claiim policy test POLICY CASES` still works, and the cases file may bring the bundle agent's skills."""
    (tmp_path / "p.yaml").write_text("name: no-prod\nskill: deploy-v2\nallow: [deploy:staging]\n")
    (tmp_path / "c.yaml").write_text(f"bundle: {DEMO_BUNDLE}\nagent: deploy-bot\ncases:\n"
                                     f"  - {{action: pr:merge, expect: DENY, reason: \"{OUTSIDE}\"}}\n"
                                     "  - {action: deploy:rollback-staging, expect: DENY, reason: no-prod-v2}\n")
    out = _claiim(str(tmp_path / "p.yaml"), str(tmp_path / "c.yaml"))
    assert (out.returncode, out.stdout.splitlines()[-1]) == (0, "PASS: 2 / FAIL: 0"), out.stdout + out.stderr
    (tmp_path / "c.yaml").write_text("policy: other.yaml\ncases: [{action: a:b, expect: DENY}]\n")
    assert _claiim(str(tmp_path / "p.yaml"), str(tmp_path / "c.yaml")).returncode == 2


def test_cli_help_lists_the_options_with_examples() -> None:
    """`claiim policy test --help` has a help line for each option; the command's examples show a suite."""
    out = subprocess.run([CLAIIM, "policy", "test", "--help"], capture_output=True, text=True, timeout=60)
    for option in ("--run REGEX", "--format {text,json,junit}", "--coverage", "--json", "DIR|SUITE|POLICY"):
        assert option in out.stdout, option
    examples = out.stdout.split("examples:", 1)[1]
    assert "--format junit" in examples and "agent: deploy-bot" in examples
    diff = subprocess.run([CLAIIM, "policy", "diff", "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "--json" in diff.split("examples:", 1)[1]


def test_policy_diff_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`claiim policy diff NAME V1 V2 --json` prints the removed and added lines as JSON; without it, the text."""
    def version(n: int, allow: tuple[str, ...]) -> PolicyVersionInfo:
        return PolicyVersionInfo(label=f"p-v{n}", name="p", version=n, description="", skill="s", allow=allow,
                                 deny=(), content_hash=f"sha256:{n}")

    class Admin:
        async def policy_versions(self, name: str) -> list[PolicyVersionInfo]:
            return [version(1, ("a:b",)), version(2, ("a:c",))]

    args = argparse.Namespace(name="p", v1=1, v2=2, json=True)
    assert asyncio.run(policy_diff_cmd(Admin(), args)) == 0  # type: ignore[arg-type]
    assert json.loads(capsys.readouterr().out) == {
        "name": "p", "from": {"label": "p-v1", "content_hash": "sha256:1"},
        "to": {"label": "p-v2", "content_hash": "sha256:2"}, "removed": ["allow: a:b"], "added": ["allow: a:c"]}
    asyncio.run(policy_diff_cmd(Admin(), argparse.Namespace(name="p", v1=1, v2=2, json=False)))  # type: ignore[arg-type]
    assert capsys.readouterr().out.splitlines()[2:] == ["- allow: a:b", "+ allow: a:c"]


def test_the_example_suite_fails_exactly_its_one_case_meant_to_fail() -> None:
    """examples/policy-tests (shown in the docs) holds for the demo bundle except its case marked to fail."""
    path = Path(__file__).parents[2] / "examples/policy-tests/deploy_bot_test.yaml"
    suite = parse_suite(path.read_text(), str(path))
    assert suite.bundle is not None
    bundle = path.parent / suite.bundle
    results = run_suite(build_subject(suite, None, (bundle.read_text(), str(bundle)), CEL), suite.cases, CEL)
    assert [r.case.name for r in results if not r.passed] == ["production rollbacks are allowed (fails on purpose)"]
