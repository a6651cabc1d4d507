"""Policy documents as stored in control events: the skill they govern and their rules.

Evaluation lives in :mod:`claiim_core.policy`; this module only holds the data, so that wire
schemas can carry documents without importing the evaluator.
"""

from __future__ import annotations

from typing import Literal

from msgspec import UNSET, Struct, UnsetType

MAX_TARGET_PATTERN = 256
"""The longest target pattern a rule may have (targets themselves are at most 256 characters)."""
MAX_DESCRIPTION = 512
"""The longest description a rule may have."""
MAX_CONDITION = 1024
"""The longest condition (``when``) a rule may have."""
DEFAULT_APPROVAL_TTL_S = 300
"""How long an approval waits for its approver when its rule names no ``ttl``."""
MAX_APPROVAL_TTL_S = 7 * 24 * 3600


class Rule(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A rule with a target pattern, a description or a condition; a bare string rule is just ``action``."""

    action: str
    target: str | None = None
    description: str = ""
    when: str | None = None
    """A CEL expression over the request (:mod:`claiim_core.conditions`): the rule applies only when it
    is true."""
    ttl: int = 0
    """``approve`` rules only: seconds an approval waits (0: :data:`DEFAULT_APPROVAL_TTL_S`)."""
    approver: Literal["", "anchor", "admins"] = ""
    """``approve`` rules only: who approves, the agent's ``anchor`` (the default) or the org's ``admins``."""


RuleLike = str | Rule


class PolicyDocument(Struct, frozen=True, forbid_unknown_fields=True):
    skill: str
    allow: tuple[RuleLike, ...] = ()
    deny: tuple[RuleLike, ...] = ()
    approve: tuple[RuleLike, ...] | UnsetType = UNSET
    """Rules whose actions wait for a person's approval (deny, then approve, then allow). Left out of
    the encoding when absent, so that every earlier document keeps its bytes and signatures."""
