"""Read models for admins: the registry of one org as the admin API returns it."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from claiim_core.registry import AgentState, PolicyVersion, ProposalState, Registry, SkillVersion
from claiim_core.schemas import (
    AdminInfo,
    AgentInfo,
    ApprovalInfo,
    OrgInfo,
    PolicyVersionInfo,
    ProposalInfo,
    SkillVersionInfo,
)


def org_info(registry: Registry, org: str) -> OrgInfo:
    def count(keys: Iterable[tuple[str, str]]) -> int:
        return sum(1 for key in keys if key[0] == org)

    return OrgInfo(name=org, description=registry.orgs.get(org, ""), agents=count(registry.agents),
                   skills=count(registry.skills), policies=count(registry.policies),
                   admins=count(registry.admins))


def agent_info(registry: Registry, agent: AgentState) -> AgentInfo:
    skills = [registry.resolve_skill(agent.org, ref) for ref in agent.skills]
    policy = registry.resolve_policy(agent.org, agent.policy) if agent.policy else None
    return AgentInfo(org=agent.org, agent_id=agent.agent_id, anchor=agent.anchor, description=agent.description,
                     status=agent.status, skills=agent.skills,
                     skill_versions=tuple(s.label if s else "" for s in skills), policy=agent.policy,
                     policy_version=policy.label if policy else "", has_token=bool(agent.token_hash),
                     retired_tokens=len(agent.retired_tokens), shadow=agent.shadow,
                     grace_until=next((until for _, _, until in agent.retired_tokens if until), ""))


def agent_infos(registry: Registry, org: str) -> list[AgentInfo]:
    return [agent_info(registry, a) for key, a in sorted(registry.agents.items()) if key[0] == org]


def skill_info(v: SkillVersion) -> SkillVersionInfo:
    return SkillVersionInfo(label=v.label, name=v.name, version=v.version, description=v.description,
                            actions=v.actions, content_hash=v.content_hash)


def policy_info(v: PolicyVersion) -> PolicyVersionInfo:
    d = v.document
    return PolicyVersionInfo(label=v.label, name=v.name, version=v.version, description=v.description,
                             skill=d.skill, allow=d.allow, deny=d.deny, content_hash=v.content_hash,
                             approve=d.approve or ())


def latest_skills(registry: Registry, org: str) -> list[SkillVersionInfo]:
    return [skill_info(vs[-1]) for key, vs in sorted(registry.skills.items()) if key[0] == org]


def latest_policies(registry: Registry, org: str) -> list[PolicyVersionInfo]:
    return [policy_info(vs[-1]) for key, vs in sorted(registry.policies.items()) if key[0] == org]


def admin_infos(registry: Registry, org: str) -> list[AdminInfo]:
    return [AdminInfo(org=a.org, name=a.name, role=a.role)
            for key, a in sorted(registry.admins.items()) if key[0] == org]


def proposal_info(p: ProposalState) -> ProposalInfo:
    c = p.created
    return ProposalInfo(proposal_id=c.proposal_id, org=c.org, proposer=c.actor, created_at=c.at,
                        expires_at=c.expires_at, status=p.status, summary=list(c.summary), change_hash=c.change_hash,
                        approvals_required=c.approvals_required,
                        approvals=[ApprovalInfo(admin=a, at=at, reason=r) for a, at, r in p.approvals],
                        closed_by=p.closed_by, closed_at=p.closed_at, reason=p.reason,
                        events=[msgspec.to_builtins(e) for e in c.events])


def proposal_infos(registry: Registry, org: str, status: str = "") -> list[ProposalInfo]:
    """The org's proposals, newest first (only those with ``status`` when given)."""
    found = [p for key, p in registry.proposals.items() if key[0] == org and (not status or p.status == status)]
    return [proposal_info(p) for p in sorted(found, key=lambda p: p.created.at, reverse=True)]
