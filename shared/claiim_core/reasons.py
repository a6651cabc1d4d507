"""How a decision says why: ``<category>:<subject> -- <text>`` (``policy:no-prod-v1 -- action explicitly
denied``), and the rule ids that name the step that decided.

The category is machine-readable and stable; the subject names what decided (a policy or skill
version, a token state, a request problem); the text is for people. Metrics, alerts and clients
use :func:`category` and the rule id, never the text.
"""

from __future__ import annotations

from typing import Literal

Category = Literal["policy", "skill", "auth", "agent", "request", "approval", "chron", "gate"]
CATEGORIES: tuple[Category, ...] = ("policy", "skill", "auth", "agent", "request", "approval", "chron", "gate")

# The rule of a decision that no policy rule made: the step that decided.
AUTHENTICATE = "authenticate"
AGENT_ACTIVE = "agent-active"
SKILL = "skill"
POLICY = "policy"
DEFAULT_DENY = "default-deny"
REQUEST = "request"
REQUEST_ID = "request-id"
"""A request id used before for another request."""
INTERNAL = "internal"


def reason(category: Category, subject: str, text: str) -> str:
    """The reason of a decision: ``reason("policy", "no-prod-v1", "action allowed")``."""
    return f"{category}:{subject} -- {text}"


def category(text: str) -> str:
    """The category of a reason (``policy`` of ``policy:no-prod-v1 -- ...``); empty for anything else."""
    head, sep, _ = text.partition(":")
    return head if sep and head in CATEGORIES else ""
