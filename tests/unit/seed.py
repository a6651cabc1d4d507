"""A registry built the way the gate builds it: by folding control events in, one at a time.

The content mirrors the seed's demo org (skill deploy-v2, policy no-prod-v1, agent deploy-bot)
so that the unit decision table can be read next to the integration one.
"""

from __future__ import annotations

import hashlib

from claiim_core.document import PolicyDocument
from claiim_core.events import (
    AgentRegistered,
    AgentUpdated,
    ControlEvent,
    OrgCreated,
    PolicyPublished,
    SkillPublished,
    aggregate,
)
from claiim_core.names import Names
from claiim_core.registry import Registry
from claiim_core.tokens import hash_token

SECRET = b"unit-test-token-secret"
ORG = "demo"
AT = "2026-01-02T03:04:05.000000Z"
DEPLOY_TOKEN = "clm_demo.deploy-bot-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
DEPLOY_V1 = ("deploy:staging", "health:check")
DEPLOY_V2 = ("deploy:staging", "deploy:production", "deploy:rollback-staging", "deploy:rollback-production",
             "health:check")
NO_PROD = PolicyDocument(skill="deploy-v2", allow=("deploy:staging", "deploy:rollback-staging", "health:check"),
                         deny=("deploy:production", "deploy:rollback-production", "infra:destroy"))

_counter = iter(range(1, 1_000_000))


def _base(org: str = ORG) -> dict[str, str]:
    return {"event_id": f"chr_test{next(_counter):022d}", "at": AT, "actor": "admin", "org": org}


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def org(name: str = ORG) -> OrgCreated:
    return OrgCreated(**_base(name))


def skill(name: str, version: int, actions: tuple[str, ...], org: str = ORG) -> SkillPublished:
    return SkillPublished(name=name, version=version, description="", actions=actions,
                          content_hash=_digest(f"{name}{version}{actions}"), **_base(org))


def policy(name: str, version: int, doc: PolicyDocument, org: str = ORG) -> PolicyPublished:
    return PolicyPublished(name=name, version=version, description="", document=doc,
                           content_hash=_digest(f"{name}{version}{doc}"), **_base(org))


def agent(agent_id: str, token: str, skills: tuple[str, ...], policy: str, org: str = ORG,
          anchor: str = "s.emp1") -> AgentRegistered:
    return AgentRegistered(agent_id=agent_id, anchor=anchor, description="", skills=skills, policy=policy,
                           token_hash=hash_token(SECRET, token), **_base(org))


def agent_update(agent_id: str, skills: tuple[str, ...], policy: str, org: str = ORG,
                 anchor: str = "s.emp1") -> AgentUpdated:
    return AgentUpdated(agent_id=agent_id, anchor=anchor, description="", skills=skills, policy=policy,
                        **_base(org))


def apply_all(registry: Registry, events: list[ControlEvent]) -> Registry:
    """Fold ``events`` in at the next control-stream sequences, on their control subjects."""
    names = Names()
    for event in events:
        kind, name = aggregate(event)
        registry.apply(registry.last_seq + 1, names.control_subject(event.org, kind, name), event)
    return registry


def seed_events() -> list[ControlEvent]:
    return [
        org(),
        skill("deploy", 1, DEPLOY_V1),
        skill("deploy", 2, DEPLOY_V2),
        policy("no-prod", 1, NO_PROD),
        agent("deploy-bot", DEPLOY_TOKEN, ("deploy-v2",), "no-prod-v1"),
    ]


def seed_registry() -> Registry:
    return apply_all(Registry(), seed_events())
