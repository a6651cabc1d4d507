"""The registry projection: the state that control events build, as the gate sees it.

:meth:`Registry.apply` folds one control event in. The same sequence of events always gives the
same registry, so any replica started later rebuilds exactly what the others hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeVar

from claiim_core.events import (
    AgentRegistered,
    AgentUpdated,
    ControlEvent,
    OrgCreated,
    PolicyPublished,
    SkillPublished,
)
from claiim_core.policy import PolicyDocument, label, parse_ref


@dataclass(frozen=True, slots=True)
class SkillVersion:
    org: str
    name: str
    version: int
    description: str
    actions: tuple[str, ...]
    content_hash: str

    @property
    def label(self) -> str:
        return label(self.name, self.version)


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    org: str
    name: str
    version: int
    description: str
    document: PolicyDocument
    content_hash: str

    @property
    def label(self) -> str:
        return label(self.name, self.version)


@dataclass(frozen=True, slots=True)
class AgentState:
    org: str
    agent_id: str
    anchor: str
    description: str
    skills: tuple[str, ...]
    policy: str
    token_hash: str
    status: Literal["active", "suspended"] = "active"


@dataclass
class Registry:
    """Orgs, versioned skills and policies, and agents, at control-stream sequence ``last_seq``."""

    orgs: set[str] = field(default_factory=set)
    skills: dict[tuple[str, str], list[SkillVersion]] = field(default_factory=dict)
    policies: dict[tuple[str, str], list[PolicyVersion]] = field(default_factory=dict)
    agents: dict[str, AgentState] = field(default_factory=dict)
    last_seq: int = 0
    subject_seq: dict[str, int] = field(default_factory=dict)

    def apply(self, seq: int, subject: str, event: ControlEvent) -> None:
        """Fold in the event stored at control-stream sequence ``seq`` on ``subject``."""
        match event:
            case OrgCreated():
                self.orgs.add(event.org)
            case SkillPublished():
                self.skills.setdefault((event.org, event.name), []).append(
                    SkillVersion(event.org, event.name, event.version, event.description,
                                 event.actions, event.content_hash)
                )
            case PolicyPublished():
                self.policies.setdefault((event.org, event.name), []).append(
                    PolicyVersion(event.org, event.name, event.version, event.description,
                                  event.document, event.content_hash)
                )
            case AgentRegistered():
                self.agents[event.agent_id] = AgentState(
                    event.org, event.agent_id, event.anchor, event.description,
                    event.skills, event.policy, event.token_hash,
                )
            case AgentUpdated():
                old = self.agents[event.agent_id]
                self.agents[event.agent_id] = AgentState(
                    old.org, old.agent_id, event.anchor, event.description,
                    event.skills, event.policy, old.token_hash, old.status,
                )
        self.last_seq = seq
        self.subject_seq[subject] = seq

    def resolve_skill(self, org: str, ref: str) -> SkillVersion | None:
        """The skill version ``ref`` names in ``org`` now (a bare name means the latest)."""
        return _resolve(self.skills, org, ref)

    def resolve_policy(self, org: str, ref: str) -> PolicyVersion | None:
        return _resolve(self.policies, org, ref)


V = TypeVar("V", SkillVersion, PolicyVersion)


def _resolve(
    table: dict[tuple[str, str], list[V]], org: str, ref: str
) -> V | None:
    try:
        name, version = parse_ref(ref)
    except ValueError:
        return None
    versions = table.get((org, name))
    if not versions:
        return None
    if version is None:
        return versions[-1]
    return versions[version - 1] if version <= len(versions) else None
