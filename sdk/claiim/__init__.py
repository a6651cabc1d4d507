"""claiim: the agent SDK (``Gate``, ``AsyncGate``) and the admin client (``Admin``, ``AsyncAdmin``).

::

    from claiim import Gate

    gate = Gate(agent_id="deploy-bot", token="...")
    result = gate.check(action="deploy:staging", target="api-v2")
    if result.outcome == "ALLOW":
        ...
"""

from claiim_core.schemas import SkillsReply

from claiim._admin import Admin, AsyncAdmin
from claiim._gate import AsyncGate, CheckResult, Gate
from claiim.errors import (
    ActionDenied,
    AdminError,
    ClaiimError,
    ConflictError,
    ForbiddenError,
    GateUnavailableError,
    InternalServerError,
    InvalidRequestError,
    NotCheckpointedError,
    NotFoundError,
    ProtocolError,
    ServiceUnavailableError,
    StoreUnavailableError,
    UnauthenticatedError,
    UnauthorizedError,
)
from claiim.transport import Transport

__all__ = [
    "ActionDenied",
    "Admin",
    "AdminError",
    "AsyncAdmin",
    "AsyncGate",
    "CheckResult",
    "ClaiimError",
    "ConflictError",
    "ForbiddenError",
    "Gate",
    "GateUnavailableError",
    "InternalServerError",
    "InvalidRequestError",
    "NotCheckpointedError",
    "NotFoundError",
    "ProtocolError",
    "ServiceUnavailableError",
    "SkillsReply",
    "StoreUnavailableError",
    "Transport",
    "UnauthenticatedError",
    "UnauthorizedError",
]
