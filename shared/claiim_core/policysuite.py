"""Policy test suites: cases decided as the gate decides them, skills included.

A suite is a YAML mapping; the files it names are relative to it, and the caller reads them (this
module does no I/O)::

    policy: no-prod.yaml            # a policy file (claiim_core.policytest), and/or
    bundle: ../bundle.yaml          # a bundle, with
    agent: deploy-bot               # the bundle's agent whose skills (and policy) are used
    cases:
      - {name: staging is fine, action: deploy:staging, expect: ALLOW}
      - {name: no skill for it, action: pr:merge, expect: DENY,
         reason: "skill:deploy-v2 -- action outside the agent's skills"}

Instead of a bundle, a suite may define skills inline, as a bundle's ``skills:`` entries, with the
agent's skill references (default: every skill it defines, by name)::

    policy: no-prod.yaml
    skills:
      - {name: deploy, version: 2, actions: [deploy:staging, deploy:production, health:check]}
    agent: {skills: [deploy-v2], id: deploy-bot, anchor: s.emp1}

With skills, a case is decided by :func:`claiim_core.decision.evaluate_agent` over a registry built
from those events (the gate's own evaluation: agent, skills, then policy). A policy file given
beside a bundle replaces the agent's policy, published as the next version of its name unless it
pins one. Without skills, only the policy's rules decide (:func:`claiim_core.policytest.run_cases`).

Which rules no case exercised is :func:`uncovered`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from claiim_core.bundle import BundleError, PlanContext, content_hash, parse_bundle, plan_bundle
from claiim_core.conditions import Conditions
from claiim_core.decision import evaluate_agent
from claiim_core.document import PolicyDocument
from claiim_core.events import ControlEvent, PolicyPublished, aggregate
from claiim_core.policy import describe_rule
from claiim_core.policytest import (
    Case,
    CaseResult,
    DocumentError,
    PolicyFile,
    _line,
    _load,
    parse_case_nodes,
    run_cases,
)
from claiim_core.refs import parse_ref
from claiim_core.registry import AgentState, Registry
from claiim_core.sources import locate, yaml_lines

SUITE_KEYS = {"policy", "bundle", "agent", "skills", "cases"}
AGENT_KEYS = {"id", "anchor", "skills"}
ORG = "policy-test"
"""The org of a suite's inline skills (a bundle brings its own)."""
AT = "1970-01-01T00:00:00.000000Z"


@dataclass(frozen=True)
class Suite:
    """A suite file: what it names (paths as written) and its cases."""

    path: str
    cases: list[Case]
    policy: str | None = None
    bundle: str | None = None
    agent: str | None = None
    """With ``bundle``: the bundle's agent to test."""
    skills: list[Any] | None = None
    """Inline skill definitions, as plain data (a bundle's ``skills:`` entries)."""
    agent_skills: tuple[str, ...] = ()
    agent_id: str = ""
    anchor: str = ""
    lines: dict[str, int] = field(default_factory=dict)
    """Each path in the suite file with its line, to place problems."""

    def line(self, key: str) -> int:
        return self.lines.get(key, 1)


@dataclass(frozen=True)
class Subject:
    """What a suite's cases are decided against: a policy alone, or an agent within a registry."""

    label: str
    document: PolicyDocument
    registry: Registry | None = None
    agent: AgentState | None = None


@dataclass(frozen=True)
class SuiteResult:
    path: str
    subject: Subject
    results: list[CaseResult]

    @property
    def failed(self) -> int:
        return sum(not r.passed for r in self.results)


def parse_suite(text: str, path: str) -> Suite:
    """The suite in ``text``: a mapping as in the module docstring, or a bare list of cases (a cases
    file). Raises DocumentError listing every problem."""
    root = _load(text, path)
    if isinstance(root, yaml.SequenceNode):
        return Suite(path, parse_case_nodes(root, path))
    if not isinstance(root, yaml.MappingNode):
        raise DocumentError([f"{path}:{_line(root)}: a suite is a mapping with policy or bundle, and cases"])
    problems: list[str] = []
    nodes = {key.value: value for key, value in root.value}
    for key, _ in root.value:
        if key.value not in SUITE_KEYS:
            problems.append(f"{path}:{_line(key)}: unknown key {key.value!r} (expected one of "
                            f"{', '.join(sorted(SUITE_KEYS))})")
    names = {k: str(nodes[k].value) for k in ("policy", "bundle")
             if k in nodes and _scalar(nodes[k], k, path, problems)}
    data = yaml.safe_load(text)
    skills = data.get("skills") if "skills" in nodes else None
    if skills is not None and "bundle" in nodes:
        problems.append(f"{path}:{_line(nodes['skills'])}: skills are defined inline or come from a bundle, not both")
    agent = _agent(nodes.get("agent"), data.get("agent"), path, bundle="bundle" in nodes, problems=problems)
    if "agent" in nodes and not {"bundle", "skills"} & nodes.keys():
        problems.append(f"{path}:{_line(nodes['agent'])}: an agent comes from a bundle (bundle:) or has the "
                        "suite's skills (skills:)")
    if "bundle" in nodes and agent is None and "agent" not in nodes:
        problems.append(f"{path}:{_line(nodes['bundle'])}: with a bundle, agent names the bundle's agent to test")
    cases: list[Case] = []
    if "cases" not in nodes:
        problems.append(f"{path}:{_line(root)}: missing key 'cases'")
    else:
        try:
            cases = parse_case_nodes(nodes["cases"], path)
        except DocumentError as e:
            problems += e.problems
    if problems:
        raise DocumentError(problems)
    id_, anchor, refs = agent if isinstance(agent, tuple) else ("", "", ())
    if isinstance(skills, list) and not refs:
        refs = tuple(dict.fromkeys(str(s.get("name", "")) for s in skills if isinstance(s, dict)))
    return Suite(path, cases, names.get("policy"), names.get("bundle"), agent if isinstance(agent, str) else None,
                 skills, refs, id_, anchor, yaml_lines(text))


def _scalar(node: yaml.Node, key: str, path: str, problems: list[str]) -> bool:
    if isinstance(node, yaml.ScalarNode) and str(node.value):
        return True
    problems.append(f"{path}:{_line(node)}: {key} is a file name")
    return False


def _agent(node: yaml.Node | None, data: Any, path: str, *, bundle: bool,
           problems: list[str]) -> str | tuple[str, str, tuple[str, ...]] | None:
    """A bundle's agent id, or an inline agent's id, anchor and skill references."""
    if node is None:
        return None
    if bundle:
        if isinstance(node, yaml.ScalarNode) and str(node.value):
            return str(node.value)
        problems.append(f"{path}:{_line(node)}: with a bundle, agent is the id of one of its agents")
        return None
    if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
        problems.append(f"{path}:{_line(node)}: agent is a mapping with skills (references), id and anchor")
        return None
    bad = [f"{path}:{_line(k)}: agent: unknown key {k.value!r}" for k, _ in node.value if k.value not in AGENT_KEYS]
    refs = data.get("skills", [])
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        bad.append(f"{path}:{_line(node)}: agent: skills is a list of skill references (NAME or NAME-vN)")
    if bad:
        problems += bad
        return None
    return str(data.get("id", "")), str(data.get("anchor", "")), tuple(refs)


def build_subject(suite: Suite, policy: PolicyFile | None, bundle: tuple[str, str] | None,
                  conditions: Conditions | None = None) -> Subject:
    """What ``suite``'s cases are decided against, given its policy file and its bundle's text and
    path, both already read. Raises DocumentError (bundle problems placed in the bundle file)."""
    if bundle is None:
        if policy is None:
            raise DocumentError([f"{suite.path}:1: a suite names its policy file (policy:), a bundle (bundle:) "
                                 "or both"])
        if suite.skills is None:
            return Subject(policy.label, policy.document)
    if bundle is not None:
        registry, agent = _bundle_agent(suite, *bundle, conditions)
    else:
        registry, agent = _inline_agent(suite, conditions)
    if policy is not None:
        governed = parse_ref(policy.document.skill)[0]
        if governed not in {parse_ref(ref)[0] for ref in agent.skills}:
            raise DocumentError([f"{suite.path}:{suite.line('policy')}: the policy governs skill "
                                 f"{policy.document.skill}, which the agent does not have ({', '.join(agent.skills)})"
                                 " -- `claiim apply` would refuse to bind it"])
        agent = replace(agent, policy=_publish(registry, agent.org, policy))
    found = registry.resolve_policy(agent.org, agent.policy)
    if found is None:
        raise DocumentError([f"{suite.path}:{suite.line('agent')}: the agent's policy {agent.policy} is not found"])
    return Subject(found.label, found.document, registry, agent)


def _plan(data: Any, lines: dict[str, int], path: str, conditions: Conditions | None) -> Registry:
    """The registry that applying the bundle ``data`` to an empty one gives; problems placed by ``lines``."""
    ctx = PlanContext("policy-test", AT, _ids(), _token, b"policy-test", conditions)
    try:
        plan = plan_bundle(Registry(), parse_bundle(data), ctx)
    except BundleError as e:
        raise DocumentError([locate(p, lines, path) for p in e.problems]) from e
    registry = Registry()
    for event in plan.events:
        _apply(registry, event)
    return registry


def _apply(registry: Registry, event: ControlEvent) -> None:
    registry.apply(registry.last_seq + 1, "/".join(aggregate(event)), event)


def _ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"chr_policytest{next(counter):018d}"


def _token(kind: str, org: str) -> str:
    return f"clm_{org}.policy-test"


def _bundle_agent(suite: Suite, text: str, path: str,
                  conditions: Conditions | None) -> tuple[Registry, AgentState]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DocumentError([f"{path}:{mark.line + 1 if mark else 1}: not valid YAML"]) from e
    registry = _plan(data, yaml_lines(text), path, conditions)
    agent = registry.agents.get((data["org"], suite.agent or ""))
    if agent is None:
        known = ", ".join(a for _, a in registry.agents) or "none"
        raise DocumentError([f"{suite.path}:{suite.line('agent')}: the bundle {path} has no agent "
                             f"{suite.agent!r} (its agents: {known})"])
    return registry, agent


def _inline_agent(suite: Suite, conditions: Conditions | None) -> tuple[Registry, AgentState]:
    registry = _plan({"org": ORG, "skills": suite.skills}, suite.lines, suite.path, conditions)
    where = "agent.skills" if "agent.skills" in suite.lines else "skills"
    missing = [f"{suite.path}:{suite.lines.get(f'{where}[{i}]', suite.line(where))}: agent: no skill {ref} "
               "among the suite's skills" for i, ref in enumerate(suite.agent_skills)
               if registry.resolve_skill(ORG, ref) is None]
    if missing or not suite.agent_skills:
        raise DocumentError(missing or [f"{suite.path}:{suite.line(where)}: the agent has no skills"])
    return registry, AgentState(ORG, suite.agent_id, suite.anchor, "", suite.agent_skills, "", "")


def _publish(registry: Registry, org: str, policy: PolicyFile) -> str:
    """Put ``policy`` in the registry as the version of its name that publishing would make (or the
    version it pins), in place of that name's other versions; the reference that resolves to it."""
    version = policy.version or len(registry.policies.get((org, policy.name), [])) + 1
    registry.policies.pop((org, policy.name), None)
    digest = content_hash({"document": policy.document, "description": policy.description})
    _apply(registry, PolicyPublished(event_id=_ids()(), at=AT, actor="policy-test", org=org, name=policy.name,
                                     version=version, description=policy.description, document=policy.document,
                                     content_hash=digest))
    return policy.name


def run_suite(subject: Subject, cases: list[Case], conditions: Conditions | None = None) -> list[CaseResult]:
    """Each case's verdict: the gate's (agent, skills, policy) when the subject has an agent, else the
    policy's rules'. A case's ``agent`` and ``anchor``, when given, are what conditions see instead
    of the agent's."""
    if subject.registry is None or subject.agent is None:
        return run_cases(subject.label, subject.document, cases, conditions)
    results = []
    for case in cases:
        agent = replace(subject.agent, agent_id=case.agent or subject.agent.agent_id,
                        anchor=case.anchor or subject.agent.anchor)
        verdict = evaluate_agent(subject.registry, agent, case.action, case.target, context=case.context,
                                 now=case.time, conditions=conditions)
        results.append(CaseResult(case, verdict.outcome, verdict.reason, verdict.rule))
    return results


def uncovered(document: PolicyDocument, results: list[CaseResult]) -> list[str]:
    """The policy's rules that decided none of ``results``: ``allow[2]: deploy:rollback-* never decided a case``."""
    decided = {r.rule for r in results}
    rules = (("deny", document.deny), ("approve", document.approve or ()), ("allow", document.allow))
    return [f"{name} never decided a case" for kind, listed in rules
            for name in (describe_rule(kind, i, rule) for i, rule in enumerate(listed)) if name not in decided]
