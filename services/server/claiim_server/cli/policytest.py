"""``claiim policy test``: find and read the suite files, decide their cases
(:mod:`claiim_core.policysuite`) and report them as text, JSON or JUnit XML.

Exit 0 when every case holds, 1 when one does not, 2 when a file cannot be used (every problem on
stderr as ``FILE:LINE: message``) or when ``--run`` leaves no case to run.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claiim_core.conditions import Conditions
from claiim_core.policysuite import Subject, SuiteResult, build_subject, parse_suite, run_suite, uncovered
from claiim_core.policytest import Case, CaseResult, DocumentError, PolicyFile, parse_policy

SUITE_GLOB = "*_test.yaml"
FORMATS = ("text", "json", "junit")


@dataclass(frozen=True)
class Ran:
    """A suite's results, with the seconds each case took (JUnit reports them)."""

    result: SuiteResult
    seconds: list[float]


def policy_test(target: Path, cases_file: Path | None = None, *, run: str | None = None, fmt: str = "text",
                coverage: bool = False) -> int:
    """Run the suites ``target`` names (a directory of ``*_test.yaml`` suites, one suite, or a policy
    file whose cases are ``cases_file``) and print the report; the exit code."""
    from claiim_runtime.conditions import CelConditions  # here: the CEL library is not loaded by every command

    conditions = CelConditions()
    try:
        pattern = re.compile(run) if run else None
    except re.error as e:
        print(f"error: --run {run!r} is not a regular expression: {e}", file=sys.stderr)
        return 2
    problems: list[str] = []
    loaded = []
    for path, policy_path in _suite_files(target, cases_file, problems):
        try:
            loaded.append(_load(path, policy_path, conditions))
        except DocumentError as e:
            problems += e.problems
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    ran = [_run(path, subject, [c for c in cases if pattern is None or pattern.search(c.title)], conditions)
           for path, subject, cases in loaded]
    ran = [r for r in ran if r.result.results]
    if not ran:
        print(f"error: no case's name matches --run {run!r}", file=sys.stderr)
        return 2
    print(REPORTS[fmt](ran, coverage))
    return 1 if any(r.result.failed for r in ran) else 0


def _suite_files(target: Path, cases_file: Path | None, problems: list[str]) -> list[tuple[Path, Path | None]]:
    """Each suite file to run, with the policy file the command line gives for it."""
    if cases_file is not None:
        return [(cases_file, target)]
    if not target.is_dir():
        return [(target, None)]
    found = sorted(target.rglob(SUITE_GLOB))
    if not found:
        problems.append(f"{target}: no {SUITE_GLOB} suite in this directory or below")
    return [(path, None) for path in found]


def _load(path: Path, policy_path: Path | None, conditions: Conditions) -> tuple[str, Subject, list[Case]]:
    suite = parse_suite(path.read_text(), str(path))
    if policy_path is not None and suite.policy is not None:
        raise DocumentError([f"{path}:{suite.line('policy')}: the policy file is given on the command line "
                             f"({policy_path}); the cases file cannot name another"])
    policy: PolicyFile | None = None
    if policy_path is not None:
        policy = parse_policy(policy_path.read_text(), str(policy_path), conditions)
    elif suite.policy is not None:
        named = _beside(path, suite.policy)
        policy = parse_policy(_read(named, path, suite.line("policy")), named, conditions)
    bundle = None
    if suite.bundle is not None:
        named = _beside(path, suite.bundle)
        bundle = (_read(named, path, suite.line("bundle")), named)
    return str(path), build_subject(suite, policy, bundle, conditions), suite.cases


def _beside(suite: Path, name: str) -> str:
    """A file a suite names, relative to the suite's directory."""
    return os.path.normpath(suite.parent / name)


def _read(name: str, suite: Path, line: int) -> str:
    try:
        return Path(name).read_text()
    except OSError as e:
        raise DocumentError([f"{suite}:{line}: cannot read {name}: {e.strerror or e}"]) from e


def _run(path: str, subject: Subject, cases: list[Case], conditions: Conditions) -> Ran:
    results, seconds = [], []
    for case in cases:
        start = time.perf_counter()
        results += run_suite(subject, [case], conditions)
        seconds.append(time.perf_counter() - start)
    return Ran(SuiteResult(path, subject, results), seconds)


def expected(case: Case) -> str:
    """``DENY, reason containing "explicitly denied", rule containing "deny[0]"``."""
    parts = [case.expect]
    if case.reason is not None:
        parts.append(f"reason containing {json.dumps(case.reason)}")
    if case.rule is not None:
        parts.append(f"rule containing {json.dumps(case.rule)}")
    return ", ".join(parts)


def got(result: CaseResult) -> str:
    """``DENY, reason "policy:no-prod-v1 -- action explicitly denied", rule "deny[0]: deploy:production"``."""
    return f"{result.outcome}, reason {json.dumps(result.reason)}, rule {json.dumps(result.rule)}"


def _rules(subject: Subject) -> int:
    doc = subject.document
    return len(doc.deny) + len(doc.approve or ()) + len(doc.allow)


def _coverage_lines(ran: Ran) -> list[str]:
    missed = uncovered(ran.result.subject.document, ran.result.results)
    total = _rules(ran.result.subject)
    head = f"coverage of {ran.result.subject.label} by {ran.result.path}: {total - len(missed)} of {total} rules " \
           "decided a case"
    return [head, *(f"  {line}" for line in missed)]


def _what(case: Case) -> str:
    on = f" on {case.target}" if case.target else ""
    return f"{case.name} ({case.action}{on})" if case.name else case.title


def text_report(ran: list[Ran], coverage: bool) -> str:
    """A line per passing case; a failing one with what was expected and what came; the totals."""
    lines = []
    for each in ran:
        for r in each.result.results:
            where = f"{each.result.path}:{r.case.line}"
            if r.passed:
                lines.append(f"PASS  {where}  {_what(r.case)}: {r.outcome} [{r.rule}]")
            else:
                lines += [f"FAIL  {where}  {_what(r.case)}", f"      expected: {expected(r.case)}",
                          f"      got:      {got(r)}"]
    failed = sum(each.result.failed for each in ran)
    total = sum(len(each.result.results) for each in ran)
    lines.append(f"PASS: {total - failed} / FAIL: {failed}")
    if coverage:
        lines += [line for each in ran for line in _coverage_lines(each)]
    return "\n".join(lines)


def _case_json(r: CaseResult) -> dict[str, Any]:
    case = r.case
    return {"name": case.title, "line": case.line, "action": case.action, "target": case.target,
            "passed": r.passed, "expected": {"outcome": case.expect, "reason": case.reason, "rule": case.rule},
            "got": {"outcome": r.outcome, "reason": r.reason, "rule": r.rule}}


def json_report(ran: list[Ran], coverage: bool) -> str:
    """One object: totals, and per suite its file, policy, agent and cases (expected and got)."""
    suites = []
    for each in ran:
        result = each.result
        agent = result.subject.agent
        suite: dict[str, Any] = {"file": result.path, "policy": result.subject.label,
                                 "agent": agent.agent_id if agent else None,
                                 "passed": len(result.results) - result.failed, "failed": result.failed,
                                 "cases": [_case_json(r) for r in result.results]}
        if coverage:
            suite["uncovered"] = uncovered(result.subject.document, result.results)
        suites.append(suite)
    failed = sum(s["failed"] for s in suites)
    return json.dumps({"passed": sum(s["passed"] for s in suites), "failed": failed, "suites": suites}, indent=1)


def junit_report(ran: list[Ran], coverage: bool) -> str:
    """JUnit XML as CI systems read it: a testsuite per suite file, a testcase per case, a failure
    element with what was expected and what came."""
    root = ET.Element("testsuites", name="claiim policy test")
    for each in ran:
        result = each.result
        suite = ET.SubElement(root, "testsuite", name=result.path, tests=str(len(result.results)),
                              failures=str(result.failed), errors="0", skipped="0",
                              time=f"{sum(each.seconds):.6f}")
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="policy", value=result.subject.label)
        if result.subject.agent is not None:
            ET.SubElement(props, "property", name="agent", value=result.subject.agent.agent_id)
        for r, seconds in zip(result.results, each.seconds, strict=True):
            case = ET.SubElement(suite, "testcase", name=r.case.title, classname=result.path, file=result.path,
                                 line=str(r.case.line), time=f"{seconds:.6f}")
            if not r.passed:
                failure = ET.SubElement(case, "failure", type="mismatch",
                                        message=f"expected {expected(r.case)}; got {got(r)}")
                failure.text = f"expected: {expected(r.case)}\ngot:      {got(r)}\n"
        if coverage:
            ET.SubElement(suite, "system-out").text = "\n".join(_coverage_lines(each)) + "\n"
    root.set("tests", str(sum(len(each.result.results) for each in ran)))
    root.set("failures", str(sum(each.result.failed for each in ran)))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


REPORTS: dict[str, Callable[[list[Ran], bool], str]] = {"text": text_report, "json": json_report,
                                                        "junit": junit_report}
