"""Errors raised by the SDK and the CLI.

::

    ClaiimError
    ├── ServiceUnavailableError      a claiim service could not be reached or did not answer in time
    │   └── GateUnavailableError     ... the gate: no decision, so never an ALLOW
    │       └── UnauthorizedError    NATS refused the token: unknown, rotated or revoked, agent suspended
    ├── ActionDenied                 a guarded action was not allowed (``decision`` says why)
    ├── ProtocolError                an answer that does not decode
    └── AdminError                   the admin or Chron API refused a request; ``code`` says how
        ├── InvalidRequestError      invalid: malformed, or not acceptable as it is (``problems`` of a bundle)
        ├── UnauthenticatedError     unauthenticated: not a valid admin token
        ├── ForbiddenError           forbidden: the principal may not do this
        ├── NotFoundError            not-found: no such agent, proposal, record, checkpoint
        ├── ConflictError            conflict: already so, changed concurrently, no longer pending
        ├── NotCheckpointedError     not-checkpointed: no signed checkpoint covers the record yet
        ├── StoreUnavailableError    unavailable: a store the service needs did not answer; try again
        └── InternalServerError      internal: the service failed (a bug, logged there)

Every :class:`AdminError` has ``code``, one of :class:`claiim_core.codes.Code` (``""`` when the
service did not send one), so callers can decide on the code rather than on the text. Every error
has ``diagnostics()``: a short text the CLI prints instead of a traceback.
"""

from __future__ import annotations

from claiim_core.codes import Code
from claiim_core.schemas import DecisionReply


class ClaiimError(Exception):
    def diagnostics(self) -> str:
        return f"error: {self}"


class ServiceUnavailableError(ClaiimError):
    """No answer: NATS could not be reached, or no service answered in time. An admin or Chron
    request that meets an outage raises this; the gate's own is :class:`GateUnavailableError`."""

    def diagnostics(self) -> str:
        return f"service unavailable: {self} (is the stack running? check CLAIIM_URL)"


class GateUnavailableError(ServiceUnavailableError):
    """No decision: the agent must not act (this is never an ALLOW)."""

    def diagnostics(self) -> str:
        return f"gate unavailable: {self} (is the stack running? check CLAIIM_URL)"


class UnauthorizedError(GateUnavailableError):
    """NATS refused to admit this token, so nothing could be asked (never an ALLOW either)."""

    def diagnostics(self) -> str:
        return f"error: {self}"


class ProtocolError(ClaiimError):
    pass


class ActionDenied(ClaiimError):
    """A guard's check did not answer ALLOW, so the guarded code did not run. ``decision`` is the
    gate's answer: its ``reason``, ``rule`` and ``chron_id`` (empty when it could not be recorded)."""

    def __init__(self, action: str, target: str, decision: DecisionReply) -> None:
        self.action, self.target, self.decision = action, target, decision
        on = f" on {target}" if target else ""
        super().__init__(f"{decision.outcome} {action}{on}: {decision.reason} (rule {decision.rule}; chron id "
                         f"{decision.chron_id or 'none'})")


class AdminError(ClaiimError):
    """``problems`` lists each problem of an invalid bundle, with its path in the bundle."""

    code: str = ""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class InvalidRequestError(AdminError):
    code = Code.INVALID


class UnauthenticatedError(AdminError):
    code = Code.UNAUTHENTICATED


class ForbiddenError(AdminError):
    code = Code.FORBIDDEN


class NotFoundError(AdminError):
    code = Code.NOT_FOUND


class ConflictError(AdminError):
    code = Code.CONFLICT


class NotCheckpointedError(AdminError):
    code = Code.NOT_CHECKPOINTED


class StoreUnavailableError(AdminError):
    code = Code.UNAVAILABLE


class InternalServerError(AdminError):
    code = Code.INTERNAL


BY_CODE: dict[str, type[AdminError]] = {cls.code: cls for cls in (
    InvalidRequestError, UnauthenticatedError, ForbiddenError, NotFoundError, ConflictError, NotCheckpointedError,
    StoreUnavailableError, InternalServerError)}


def refusal(code: str, message: str, problems: list[str] | None = None) -> AdminError:
    """The error of ``code``'s class (:class:`AdminError` itself for a code this SDK does not know)."""
    return BY_CODE.get(code, AdminError)(message, problems)
