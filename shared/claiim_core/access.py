"""Who is asking, and what they may do: admin authentication and authorization.

Four kinds of principal:

- an org **admin** reads and changes everything in its own org;
- an org **auditor** reads everything in its own org and changes nothing;
- an org **anchor** decides the approvals of the agents it anchors (whose ``anchor`` is its name)
  and reads those agents' records (:mod:`claiim_core.approvals`); nothing else;
- the **operator** (the installation's bootstrap token, ``CLAIIM_ADMIN_TOKEN``) creates orgs and
  may act in any org. It is the break-glass path for an org that has lost its admins; everything
  it does is recorded with ``actor: operator``.

An org principal asking about another org is refused with the same message whether that org
exists or not, so nothing of another org can be learnt, not even its existence.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from claiim_core.codes import Code, Refusal
from claiim_core.registry import Registry
from claiim_core.tokens import hash_token, token_org

OPERATOR = "operator"
Role = Literal["operator", "admin", "auditor", "anchor"]


class AccessError(Refusal):
    """The principal may not do this; the message says why without revealing other orgs."""

    default_code = Code.FORBIDDEN


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role
    org: str | None
    """The principal's org; None for the operator, who may act in every org."""

    def __str__(self) -> str:
        return OPERATOR if self.org is None else f"{self.role} {self.name} of org {self.org}"


def authenticate(registry: Registry, token_secret: bytes, operator_token: str, presented: str) -> Principal:
    """The principal ``presented`` belongs to; raises :class:`AccessError` for any other token."""
    if operator_token and hmac.compare_digest(presented.encode(), operator_token.encode()):
        return Principal(OPERATOR, "operator", None)
    org = token_org("admin", presented)
    key = registry.admin_tokens.get(hash_token(token_secret, presented)) if org else None
    # The index is keyed by an HMAC of the token, which a caller cannot steer without the secret.
    if key is None or key[0] != org:
        raise AccessError("unauthorized: not a valid admin token", Code.UNAUTHENTICATED)
    admin = registry.admins[key]
    return Principal(admin.name, admin.role, admin.org)


def scope(principal: Principal, org: str, *, write: bool) -> str:
    """The org a request acts in: ``org`` if given, else the principal's own.

    Raises :class:`AccessError` when the principal may not read (or, with ``write``, change) it. An
    anchor may do neither: it reaches only its agents' approvals and records, which check it themselves.
    """
    if principal.role == "anchor":
        raise AccessError(f"forbidden: {principal} decides the approvals of the agents it anchors and reads "
                          "their records, nothing else")
    if principal.org is None:
        if not org:
            raise AccessError("the operator acts in every org: name the org (--org)", Code.INVALID)
        return org
    if org and org != principal.org:
        raise AccessError(f"forbidden: {principal} cannot act in org {org}")
    if write and principal.role != "admin":
        raise AccessError(f"forbidden: {principal} is read-only")
    return principal.org


def visible_orgs(principal: Principal, registry: Registry) -> list[str]:
    """The orgs a principal can see: all for the operator, its own for the others."""
    return sorted(registry.orgs) if principal.org is None else [principal.org]
