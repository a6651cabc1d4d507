"""Errors raised by the SDK and the CLI.

::

    ClaiimError
    ├── GateUnavailableError     the gate could not be reached or did not answer in time
    │   └── UnauthorizedError    NATS refused the token: unknown, rotated or revoked, agent suspended
    ├── ProtocolError            an answer that does not decode
    └── AdminError               the admin or Chron API refused a command (the reply says why)

Every error has ``diagnostics()``: a short text the CLI prints instead of a traceback.
"""

from __future__ import annotations


class ClaiimError(Exception):
    def diagnostics(self) -> str:
        return f"error: {self}"


class GateUnavailableError(ClaiimError):
    """No decision: the agent must not act (this is never an ALLOW)."""

    def diagnostics(self) -> str:
        return f"gate unavailable: {self} (is the stack running? check CLAIIM_URL)"


class UnauthorizedError(GateUnavailableError):
    """NATS refused to admit this token, so nothing could be asked (never an ALLOW either)."""

    def diagnostics(self) -> str:
        return f"error: {self}"


class ProtocolError(ClaiimError):
    pass


class AdminError(ClaiimError):
    """``problems`` lists each problem of an invalid bundle, with its path in the bundle."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []
