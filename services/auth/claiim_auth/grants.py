"""Who may connect to NATS, and with which permissions (pure).

Agents and admins connect with their claiim tokens as the NATS password (agents with their agent
id as the user); the auth service answers the server's auth callout with :func:`grant`:

| who | may publish | may subscribe |
|---|---|---|
| an active agent, with its current token | ``<ns>.gate.check`` | its own inbox |
| an org admin or auditor | ``<ns>.admin.>``, ``<ns>.chron.query`` | its own inbox |
| the operator | the same, claiim's streams read-only, any subject outside claiim's (*) | its own inbox |

(*) For ``chron replay``, ``export``, ``verify``, ``rebuild`` and ``replay --republish``; never
claiim's event or service subjects, others' inboxes, Chron's consumers, or any call that deletes
or changes a stream (:func:`operator_denied`).

Each one's inbox is :func:`claiim_core.tokens.inbox_prefix` of its token. A suspended agent, a
rotated or revoked token, an unknown name or a bad token gets no connection at all. A token rotated
out with a grace period still connects until the grace ends, with a user JWT that expires then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from claiim_core.access import AccessError, authenticate
from claiim_core.names import Names, service_inbox
from claiim_core.registry import Registry
from claiim_core.tokens import INBOX_ROOT, check_token, inbox_prefix, parse_time, token_org
from claiim_runtime.natsconf import OCSF_DURABLE, SERVICE_USERS

from claiim_auth.jwt import Permissions


class Denied(Exception):
    """No connection; the message says why (it is logged, never a token)."""


@dataclass(frozen=True, slots=True)
class Grant:
    name: str
    """The NATS user name the server shows: ``agent:<org>/<id>``, ``admin:<org>/<name>``, ``operator``."""
    permissions: Permissions
    expires: int | None = None
    """Unix seconds at which the connection's access ends (a token in its grace period), or None."""


def agent_name(org: str, agent_id: str) -> str:
    return f"agent:{org}/{agent_id}"


def admin_name(org: str, name: str) -> str:
    return f"admin:{org}/{name}"


OPERATOR_NAME = "operator"


def grant(registry: Registry, token_secret: bytes, operator_token: str, names: Names, user: str,
          password: str, now: datetime | None = None) -> Grant:
    """The grant of a client presenting ``user`` and ``password`` at ``now`` (None: no agent token's
    grace period holds); raises :class:`Denied`."""
    if not password:
        raise Denied("no token given (the password is the claiim token)")
    if token_org("agent", password) is not None:
        return _agent(registry, token_secret, names, user, password, now)
    try:
        principal = authenticate(registry, token_secret, operator_token, password)
    except AccessError as e:
        raise Denied(str(e)) from None
    inbox = f"{inbox_prefix(password)}.>"
    admin_api = (f"{names.namespace}.admin.>", names.chron_query)
    if principal.org is None:
        return Grant(OPERATOR_NAME, Permissions(publish=(">",), subscribe=(inbox,),
                                                publish_deny=operator_denied(names)))
    return Grant(admin_name(principal.org, principal.name), Permissions(publish=admin_api, subscribe=(inbox,)))


def _agent(registry: Registry, token_secret: bytes, names: Names, user: str, token: str,
           now: datetime | None) -> Grant:
    org = token_org("agent", token)
    agent = registry.agents.get((org or "", user))
    if agent is None:
        raise Denied(f"no agent {user!r} in org {org}")
    status = check_token(token_secret, token, agent.token_hash, agent.retired_tokens, now)
    if status not in ("ok", "grace"):
        raise Denied(f"agent {org}/{user}: {'bad' if status == 'bad' else status} token")
    if agent.status != "active":
        raise Denied(f"agent {org}/{user} is {agent.status}")
    expires = None
    if status == "grace":
        expires = min(int(parse_time(until).timestamp()) for _, _, until in agent.retired_tokens if until)
    return Grant(agent_name(agent.org, agent.agent_id),
                 Permissions(publish=(names.gate_check, names.gate_skills, names.gate_wait),
                             subscribe=(f"{inbox_prefix(token)}.>",)), expires)


def operator_denied(names: Names) -> tuple[str, ...]:
    """What the operator may not publish, although it may publish elsewhere (``chron replay
    --republish``): claiim's events and services' subjects, other clients' inboxes, and the
    JetStream calls that delete or change streams and their messages."""
    ns = names.namespace
    durables = [(names.decisions_stream, names.chron_durable), (names.control_stream, names.chron_durable),
                (names.decisions_stream, OCSF_DURABLE), (names.decisions_stream, names.approval_notify_durable)]
    return (f"{ns}.decision.>", f"{ns}.control.>", f"{ns}.ocsf.>", names.chron_leaves, names.chron_checkpoint,
            names.gate_check, names.gate_skills, names.gate_wait, "$SYS.>", "_INBOX.>", f"{INBOX_ROOT}.>",
            *(f"{service_inbox(user)}.>" for user in SERVICE_USERS),
            "$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.UPDATE.>",
            "$JS.API.STREAM.MSG.DELETE.>", "$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.RESTORE.>",
            "$JS.API.ACCOUNT.PURGE.>", "$JS.API.CONSUMER.DURABLE.CREATE.>",
            *(f"$JS.API.CONSUMER.{op}.{stream}.{durable}{tail}" for stream, durable in durables
              for op in ("CREATE", "DELETE") for tail in ("", ".>")))
