"""Bundles: a YAML description of an org's skills, policies and agents, and the plan that turns
one into control events.

Applying is idempotent: an entry whose content equals what is registered produces no event.
A skill or policy entry may pin ``version: N``; then version N must either exist with exactly
this content (versions are immutable) or be the next version. Without ``version`` a new version
is published when the content differs from the latest one.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from claiim_core.bundlecheck import bundle_problems
from claiim_core.canonical import canonical_bytes
from claiim_core.codes import Code, Refusal
from claiim_core.conditions import ConditionError, Conditions
from claiim_core.document import PolicyDocument, Rule, RuleLike
from claiim_core.events import (
    AgentRegistered,
    AgentUpdated,
    ChangeEvent,
    OrgCreated,
    PolicyPublished,
    SkillPublished,
    aggregate,
)
from claiim_core.names import TOKEN_RE
from claiim_core.policy import check_pattern, check_rule
from claiim_core.refs import NAME_PATTERN, parse_ref
from claiim_core.registry import Registry
from claiim_core.schemas import Change
from claiim_core.tokens import Kind, hash_token

Name = Annotated[str, Meta(max_length=63, pattern=rf"^{NAME_PATTERN}\Z")]
Id = Annotated[str, Meta(pattern=TOKEN_RE.pattern)]


class SkillSpec(Struct, forbid_unknown_fields=True):
    name: Name
    actions: list[str]
    description: str = ""
    version: Annotated[int, Meta(ge=1)] | None = None


class PolicySpec(Struct, forbid_unknown_fields=True):
    name: Name
    skill: str
    allow: list[RuleLike] = []
    deny: list[RuleLike] = []
    approve: list[RuleLike] = []
    description: str = ""
    version: Annotated[int, Meta(ge=1)] | None = None


class AgentSpec(Struct, forbid_unknown_fields=True):
    id: Id
    anchor: Annotated[str, Meta(min_length=1, max_length=128)]
    skills: list[str]
    policy: str
    description: str = ""


class Bundle(Struct, forbid_unknown_fields=True):
    org: Id
    skills: list[SkillSpec] = []
    policies: list[PolicySpec] = []
    agents: list[AgentSpec] = []


class BundleError(Refusal):
    """A bundle that cannot be applied; ``problems`` lists each one with where it is."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems), Code.INVALID)
        self.problems = problems


def parse_bundle(data: Any) -> Bundle:
    """Validate the shape of a bundle already loaded from YAML or JSON into plain data.

    A bundle that does not decode is refused with every problem in words, the values' too
    (:func:`claiim_core.bundlecheck.bundle_problems`). One that decodes is returned even when an
    action pattern or a reference is malformed: :func:`plan_bundle` reports those together with
    the references that do not resolve.
    """
    try:
        return msgspec.convert(data, Bundle)
    except msgspec.ValidationError as e:
        raise BundleError(bundle_problems(data) or [str(e)]) from e


@dataclass
class Plan:
    """The events a bundle needs, what each entry came to, and the tokens of new agents."""

    events: list[ChangeEvent] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    """One per entry of the bundle; those that are not ``unchanged`` match ``events`` one to one."""
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def unchanged(self) -> bool:
        return not self.events


@dataclass(frozen=True)
class PlanContext:
    """What planning needs from outside: who, when, and sources of ids and tokens."""

    actor: str
    now: str
    new_id: Callable[[], str]
    new_token: Callable[[Kind, str], str]
    """Makes a token of a kind (agent, admin) for an org."""
    token_secret: bytes
    conditions: Conditions | None = None
    """Checks rules' conditions when a policy is published; without it, a policy with one is refused."""


def content_hash(value: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_bytes(value)).hexdigest()


def plan_bundle(registry: Registry, bundle: Bundle, ctx: PlanContext) -> Plan:
    """Work out the control events that make the registry match ``bundle``.

    Raises :class:`BundleError` listing every problem; then nothing is to be applied.
    """
    work = copy.deepcopy(registry)
    plan = Plan()
    problems: list[str] = []
    org = bundle.org

    def emit(event: ChangeEvent, change: Change) -> None:
        work.apply(work.last_seq, "/".join(aggregate(event)), event)
        plan.events.append(event)
        plan.changes.append(change)

    base: dict[str, Any] = {"at": ctx.now, "actor": ctx.actor, "org": org}
    if org not in work.orgs:
        emit(OrgCreated(event_id=ctx.new_id(), **base), Change(op="created", kind="org", name=org))

    for i, s in enumerate(bundle.skills):
        where = f"skills[{i}] ({s.name})"
        bad = _bad_patterns(s.actions, f"{where}.actions")
        if bad:
            problems += bad
            continue
        digest = content_hash({"actions": s.actions, "description": s.description})
        versions = work.skills.get((org, s.name), [])
        version = _next_version(where, s.version, [v.content_hash for v in versions], digest, problems)
        if version is None:
            plan.changes.append(Change(op="unchanged", kind="skill", name=s.name, version=s.version or len(versions)))
            continue
        if version > 0:
            emit(SkillPublished(event_id=ctx.new_id(), name=s.name, version=version,
                                description=s.description, actions=tuple(s.actions),
                                content_hash=digest, **base),
                 Change(op="published", kind="skill", name=s.name, version=version))

    for i, p in enumerate(bundle.policies):
        where = f"policies[{i}] ({p.name})"
        bad = []
        allow = _checked_rules(p.allow, f"{where}.allow", bad, ctx.conditions)
        deny = _checked_rules(p.deny, f"{where}.deny", bad, ctx.conditions)
        approve = _checked_rules(p.approve, f"{where}.approve", bad, ctx.conditions, approve=True)
        _resolve_or_report(work.resolve_skill, org, p.skill, f"{where}.skill", "skill", bad)
        if bad:
            problems += bad
            continue
        doc = PolicyDocument(skill=p.skill, allow=allow, deny=deny, **({"approve": approve} if approve else {}))
        digest = content_hash({"document": doc, "description": p.description})
        pversions = work.policies.get((org, p.name), [])
        version = _next_version(where, p.version, [v.content_hash for v in pversions], digest, problems)
        if version is None:
            plan.changes.append(Change(op="unchanged", kind="policy", name=p.name,
                                       version=p.version or len(pversions)))
            continue
        if version > 0:
            emit(PolicyPublished(event_id=ctx.new_id(), name=p.name, version=version,
                                 description=p.description, document=doc, content_hash=digest,
                                 **base),
                 Change(op="published", kind="policy", name=p.name, version=version))

    for i, a in enumerate(bundle.agents):
        where = f"agents[{i}] ({a.id})"
        bad = []
        for j, ref in enumerate(a.skills):
            _resolve_or_report(work.resolve_skill, org, ref, f"{where}.skills[{j}]", "skill", bad)
        policy = _resolve_or_report(work.resolve_policy, org, a.policy, f"{where}.policy", "policy", bad)
        if policy is not None and not bad:
            governed = parse_ref(policy.document.skill)[0]
            if governed not in {parse_ref(ref)[0] for ref in a.skills}:
                bad.append(f"{where}.policy: {a.policy} governs skill {policy.document.skill}, "
                           f"which the agent does not have")
        existing = work.agents.get((org, a.id))
        if bad:
            problems += bad
            continue
        spec = (a.anchor, a.description, tuple(a.skills), a.policy)
        if existing is None:
            token = ctx.new_token("agent", org)
            plan.tokens[a.id] = token
            emit(AgentRegistered(event_id=ctx.new_id(), agent_id=a.id, anchor=a.anchor,
                                 description=a.description, skills=tuple(a.skills),
                                 policy=a.policy, token_hash=hash_token(ctx.token_secret, token),
                                 **base),
                 Change(op="registered", kind="agent", name=a.id))
        elif spec != (existing.anchor, existing.description, existing.skills, existing.policy):
            emit(AgentUpdated(event_id=ctx.new_id(), agent_id=a.id, anchor=a.anchor,
                              description=a.description, skills=tuple(a.skills), policy=a.policy,
                              **base),
                 Change(op="updated", kind="agent", name=a.id))
        else:
            plan.changes.append(Change(op="unchanged", kind="agent", name=a.id))

    if problems:
        raise BundleError(problems)
    return plan


def _bad_patterns(patterns: list[str], where: str) -> list[str]:
    bad: list[str] = []
    for j, pattern in enumerate(patterns):
        try:
            check_pattern(pattern)
        except ValueError as e:
            bad.append(f"{where}[{j}]: {e}")
    return bad


def _checked_rules(rules: list[RuleLike], where: str, problems: list[str],
                   conditions: Conditions | None, *, approve: bool = False) -> tuple[RuleLike, ...]:
    """The rules in their stored form; each problem (its pattern, its condition) goes to ``problems``."""
    checked = []
    for j, rule in enumerate(rules):
        try:
            checked.append(check_rule(rule, approve=approve))
        except ValueError as e:
            problems.append(f"{where}[{j}]: {e}")
            continue
        if isinstance(rule, Rule) and rule.when is not None:
            try:
                if conditions is None:
                    raise ConditionError("conditions cannot be checked here")
                conditions.check(rule.when)
            except ConditionError as e:
                problems.append(f"{where}[{j}].when: {e}")
    return tuple(checked)


def _resolve_or_report(resolve: Callable[[str, str], Any], org: str, ref: str, where: str,
                       kind: str, problems: list[str]) -> Any:
    try:
        parse_ref(ref)
    except ValueError as e:
        problems.append(f"{where}: {e}")
        return None
    found = resolve(org, ref)
    if found is None:
        problems.append(f"{where}: no {kind} {ref} in org {org}")
    return found


def _next_version(where: str, pinned: int | None, hashes: list[str], digest: str,
                  problems: list[str]) -> int | None:
    """The version to publish; None when nothing changes; 0 after reporting a problem."""
    latest = len(hashes)
    if pinned is None:
        return None if hashes and hashes[-1] == digest else latest + 1
    if pinned <= latest:
        if hashes[pinned - 1] == digest:
            return None
        problems.append(f"{where}.version: version {pinned} is already published with other "
                        f"content, and versions are immutable; publish version {latest + 1}")
        return 0
    if pinned == latest + 1:
        return pinned
    problems.append(f"{where}.version: version {pinned} would skip versions; the next is {latest + 1}")
    return 0
