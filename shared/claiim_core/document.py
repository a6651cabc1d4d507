"""Policy documents as stored in control events: the skill they govern and their rules.

Evaluation lives in :mod:`claiim_core.policy`; this module only holds the data, so that wire
schemas can carry documents without importing the evaluator.
"""

from __future__ import annotations

from msgspec import Struct

MAX_TARGET_PATTERN = 256
"""The longest target pattern a rule may have (targets themselves are at most 256 characters)."""
MAX_DESCRIPTION = 512
"""The longest description a rule may have."""
MAX_CONDITION = 1024
"""The longest condition (``when``) a rule may have."""


class Rule(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A rule with a target pattern, a description or a condition; a bare string rule is just ``action``."""

    action: str
    target: str | None = None
    description: str = ""
    when: str | None = None
    """A CEL expression over the request (:mod:`claiim_core.conditions`): the rule applies only when it
    is true."""


RuleLike = str | Rule


class PolicyDocument(Struct, frozen=True, forbid_unknown_fields=True):
    skill: str
    allow: tuple[RuleLike, ...] = ()
    deny: tuple[RuleLike, ...] = ()
