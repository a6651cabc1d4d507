"""The nats-server configuration claiim runs with: a user and least permissions per service, and
the auth callout that admits agents and admins by their claiim tokens (pure: text in, text out).

Nothing connects anonymously. The services' users are listed in the server's configuration with
passwords; every other client is handed to the auth service (``claiim serve auth``), which
checks its claiim token against the registry and answers with its permissions
(:mod:`claiim_auth.grants`). ``claiim up`` writes this configuration with generated passwords;
``claiim nats-config`` prints it with ``$<USER>_NATS_PASSWORD`` variables for compose and
clusters (``deploy/nats/nats-auth.conf`` is its output for the namespace ``claiim``).

Each service subscribes to replies under its own prefix (:func:`claiim_core.names.service_inbox`,
``_INBOX_gate``...), so that no service reads another's replies, and may touch only its own
JetStream consumers. ``sys`` (in the system account) lets the auth service find and disconnect the
connections of an agent that is suspended or whose token is rotated or revoked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from claiim_core.names import Names, service_inbox

SERVICE_USERS = ("gate", "control", "chron", "ocsf", "ui", "auth", "siem", "sys")
"""The NATS users of the configuration: the services, the SIEM reader, and the system user."""
MAINTENANCE_USER = "maintenance"
"""A user with every permission of the claiim account (changing stream limits, fault drills),
configured only when its password is given; ``claiim up`` gives none, the test suite does."""
OCSF_DURABLE = "chron-ocsf"
AUTH_CALLOUT_SUBJECT = "$SYS.REQ.USER.AUTH"
KICK_SUBJECT = "$SYS.REQ.SERVER.{}.KICK"
CONNZ_SUBJECT = "$SYS.REQ.SERVER.PING.CONNZ"


@dataclass(frozen=True)
class Rights:
    publish: list[str]
    subscribe: list[str]
    responses: bool = False
    publish_deny: list[str] = field(default_factory=list)


def rights(names: Names) -> dict[str, Rights]:
    """Every user's permissions in the namespace of ``names``."""
    ns = names.namespace
    d, c, p, o = names.decisions_stream, names.control_stream, names.proofs_stream, names.ocsf_stream
    api = "$JS.API"
    create_streams = [f"{api}.STREAM.{op}.{s}" for s in (d, c, p, o) for op in ("CREATE", "INFO")]
    create_streams.append(f"{api}.STREAM.UPDATE.{o}")  # an older claiim's unbounded OCSF stream gets its limits

    def ordered(stream: str) -> list[str]:  # an ordered push consumer, as the registry follower uses
        return [f"{api}.STREAM.INFO.{stream}", f"{api}.CONSUMER.CREATE.{stream}", f"{api}.CONSUMER.CREATE.{stream}.>",
                f"{api}.CONSUMER.DELETE.{stream}.>", f"{api}.CONSUMER.INFO.{stream}.>", f"$JS.FC.{stream}.>"]

    def durable(stream: str, name: str) -> list[str]:  # a durable pull consumer
        return [f"{api}.CONSUMER.CREATE.{stream}.{name}", f"{api}.CONSUMER.CREATE.{stream}.{name}.>",
                f"{api}.CONSUMER.DURABLE.CREATE.{stream}.{name}", f"{api}.CONSUMER.INFO.{stream}.{name}",
                f"{api}.CONSUMER.MSG.NEXT.{stream}.{name}", f"$JS.ACK.{stream}.{name}.>"]

    def inbox(user: str) -> str:
        return f"{service_inbox(user)}.>"

    protected = [f"{api}.CONSUMER.{op}.{stream}.{name}{tail}" for stream, name in
                 ((d, names.chron_durable), (c, names.chron_durable), (d, OCSF_DURABLE),
                  (d, names.approval_notify_durable))
                 for op in ("CREATE", "DELETE", "DURABLE.CREATE") for tail in ("", ".>")]
    readers = [f"{api}.CONSUMER.{op}.{s}{tail}" for s in (d, o) for op in ("CREATE", "DELETE", "INFO", "MSG.NEXT")
               for tail in ("", ".>")] + [f"{api}.{op}.{s}{tail}" for s in (d, o)
                                          for op, tail in (("STREAM.INFO", ""), ("STREAM.MSG.GET", ""),
                                                           ("DIRECT.GET", ""), ("DIRECT.GET", ".>"))]
    readers += [f"$JS.{kind}.{s}.>" for s in (d, o) for kind in ("FC", "ACK")]
    return {
        "gate": Rights([f"{ns}.decision.>", *create_streams, *ordered(c), f"{api}.DIRECT.GET.{d}",
                        f"{api}.DIRECT.GET.{d}.>"],
                       [names.gate_check, names.gate_skills, names.gate_wait, inbox("gate")], responses=True),
        "control": Rights([f"{ns}.control.>", *create_streams, *ordered(c), *ordered(d),
                           *durable(d, names.approval_notify_durable), f"{api}.DIRECT.GET.{d}",
                           f"{api}.DIRECT.GET.{d}.>"], [f"{ns}.admin.>", inbox("control")], responses=True),
        "chron": Rights([names.chron_leaves, names.chron_checkpoint, *create_streams, *ordered(c),
                         *durable(d, names.chron_durable), *durable(c, names.chron_durable),
                         f"{api}.STREAM.MSG.GET.{p}", f"{api}.DIRECT.GET.{p}", f"{api}.DIRECT.GET.{p}.>",
                         f"{api}.STREAM.PURGE.{d}"],  # trimming what is archived
                        [names.chron_query, inbox("chron")], responses=True),
        "ocsf": Rights([f"{ns}.ocsf.>", *create_streams, *durable(d, OCSF_DURABLE)], [inbox("ocsf")]),
        "ui": Rights([f"{ns}.admin.>", names.chron_query, *create_streams, *ordered(d)], [inbox("ui")],
                     publish_deny=protected),
        "auth": Rights([*create_streams, *ordered(c)], [AUTH_CALLOUT_SUBJECT, inbox("auth")], responses=True),
        "siem": Rights(readers, [inbox("siem")], publish_deny=protected),
        "sys": Rights([CONNZ_SUBJECT, KICK_SUBJECT.format("*")], [inbox("sys")]),
    }


@dataclass(frozen=True)
class Cluster:
    """The cluster block of one node. ``routes`` are every node's route address (``host:port``,
    this node's own included: a server skips the route to itself). Routes log in as the user
    ``route``: with ``password`` None the file names ``$CLUSTER_NATS_PASSWORD`` and reads each
    route's URL, password included, from ``$NATS_ROUTE_1``... (nats-server substitutes no
    variable inside a string)."""

    routes: tuple[str, ...]
    port: int = 6222
    host: str | None = None
    """The route listener's address (None: the server's ``host``)."""
    name: str = "claiim"
    password: str | None = None


@dataclass(frozen=True)
class NatsConfig:
    """One nats-server's configuration. ``passwords`` of None writes ``$<USER>_NATS_PASSWORD``
    variables (nats-server reads them from its environment); ``issuer`` is the public account key
    (``A...``) of the auth service's seed, or a ``$VARIABLE``."""

    names: Names
    issuer: str
    passwords: Mapping[str, str] | None = None
    store_dir: str = "/data"
    host: str = "0.0.0.0"
    port: int = 4222
    http_port: int | None = None
    server_name: str = "claiim-nats-1"
    sync_always: bool = True
    cluster: Cluster | None = None
    """Routes to the other nodes of a NATS cluster (None: a single server)."""


CLUSTER_PASSWORD_VARIABLE = "CLUSTER_NATS_PASSWORD"


def password_variable(user: str) -> str:
    return f"{user.upper()}_NATS_PASSWORD"


def _value(text: str) -> str:
    return text if text.startswith("$") else json.dumps(text)


def _list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def render(cfg: NatsConfig) -> str:
    """The configuration file's text."""
    lines = [
        "# nats-server for claiim (generated by `claiim nats-config`; see claiim_runtime/natsconf.py).",
        "# Services log in with their users below; agents and admins with their claiim tokens, checked",
        "# by the auth service through the auth callout. Nothing connects anonymously.",
    ]
    if cfg.passwords is None:
        lines += ["# nats-server reads the passwords from its environment (`claiim keygen nats-password` makes one):",
                  "#   " + " ".join(f"${password_variable(u)}" for u in SERVICE_USERS)]
    lines += [
        f"server_name: {_value(cfg.server_name)}",
        f"host: {json.dumps(cfg.host)}",
        f"port: {cfg.port}",
    ]
    if cfg.http_port is not None:
        lines.append(f"http_port: {cfg.http_port}")
    lines += [
        "max_payload: 1MB",
        "",
        "jetstream {",
        f"  store_dir: {json.dumps(cfg.store_dir)}",
    ]
    if cfg.sync_always:
        lines.append("  # fsync before every PubAck: an acknowledged decision survives a power cut (README)")
        lines.append("  sync_interval: always")
    lines += ["}", ""]
    if cfg.cluster is not None:
        lines += _cluster(cfg.cluster, cfg.host)
    lines += [ "accounts {", "  SYS: {", "    users: [", _user(cfg, "sys", "      "), "    ]", "  }", "}",
              "system_account: SYS", "", "authorization {",
              "  # also how long the auth service may take to answer a callout", "  timeout: 2", "  users: ["]
    lines += [_user(cfg, user, "    ") for user in SERVICE_USERS if user != "sys"]
    users = list(SERVICE_USERS)
    if cfg.passwords is not None and MAINTENANCE_USER in cfg.passwords:
        lines.append(f"    {{user: {MAINTENANCE_USER}, password: {_value(cfg.passwords[MAINTENANCE_USER])}}}")
        users.append(MAINTENANCE_USER)
    lines += [
        "  ]",
        "  auth_callout {",
        f"    issuer: {_value(cfg.issuer)}",
        f"    auth_users: {_list(users)}",
        "  }",
        "}",
        "",
    ]
    return "\n".join(lines)


def _cluster(cluster: Cluster, host: str) -> list[str]:
    if cluster.password is None:
        password = f"${CLUSTER_PASSWORD_VARIABLE}"
        routes = [f"$NATS_ROUTE_{i}" for i in range(1, len(cluster.routes) + 1)]
        comment = ["  # Each $NATS_ROUTE_<n> is nats-route://route:<the cluster password>@<node n's route address>:",
                   "  #   " + ", ".join(cluster.routes)]
    else:
        password = json.dumps(cluster.password)
        routes = [json.dumps(f"nats-route://route:{cluster.password}@{route}") for route in cluster.routes]
        comment = []
    return [
        "# Routes to the other nodes; they log in as `route`, so nobody else can join the cluster.",
        "cluster {",
        f"  name: {json.dumps(cluster.name)}",
        f"  host: {json.dumps(cluster.host or host)}",
        f"  port: {cluster.port}",
        f"  authorization {{ user: route, password: {password}, timeout: 2 }}",
        *comment,
        f"  routes: [{', '.join(routes)}]",
        "}",
        "",
    ]


def _user(cfg: NatsConfig, user: str, indent: str) -> str:
    r = rights(cfg.names)[user]
    password = f"${password_variable(user)}" if cfg.passwords is None else cfg.passwords[user]
    publish = f"allow: {_list(r.publish)}" + (f", deny: {_list(r.publish_deny)}" if r.publish_deny else "")
    permissions = f"publish: {{{publish}}}, subscribe: {{allow: {_list(r.subscribe)}}}"
    if r.responses:
        permissions += ", allow_responses: true"
    return f"{indent}{{user: {user}, password: {_value(password)}, permissions: {{{permissions}}}}}"
