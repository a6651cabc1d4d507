"""What kind of refusal an answer is, as a stable code beside the text for people.

Every reply of the admin and Chron APIs carries ``ok``, ``code`` and ``error``: ``code`` is one of
:class:`Code` when ``ok`` is false (empty when it is true), and ``error`` says the same for a
person. Clients decide on the code, never on the text; the SDK raises one exception class per
code (:mod:`claiim.errors`).
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    INVALID = "invalid"
    """The request is malformed, or not acceptable as it is (a bundle with problems, a missing argument)."""
    UNAUTHENTICATED = "unauthenticated"
    """The admin token is not valid."""
    FORBIDDEN = "forbidden"
    """The principal may not do this (another org, a read-only role, an operator-only command)."""
    NOT_FOUND = "not-found"
    """What the request names does not exist (an agent, a proposal, a record, a checkpoint)."""
    CONFLICT = "conflict"
    """The state does not allow it now: already so, changed concurrently, a proposal no longer pending."""
    NOT_CHECKPOINTED = "not-checkpointed"
    """The record exists but no signed checkpoint covers it yet: ask again after the next one."""
    UNAVAILABLE = "unavailable"
    """A store the service needs (PostgreSQL, the control stream) did not answer or refused: try again."""
    INTERNAL = "internal"
    """A bug: the service failed and logged it."""


class Refusal(Exception):
    """A request refused: ``code`` says what kind of refusal, the message says why to a person."""

    default_code = Code.INVALID

    def __init__(self, message: str, code: Code | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code
