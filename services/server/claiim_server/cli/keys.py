"""``claiim keygen`` and ``claiim nats-config``: the keys and NATS configuration a deployment needs.

Every key is written to a new file readable by its owner only (mode 600); what others need (a
verifier or public key) is printed. None of these keys belongs in NATS or PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path
from typing import Any

from claiim.errors import AdminError
from claiim_auth.nkeys import PREFIX_ACCOUNT, KeyPair
from claiim_core.checkpoint import CheckpointError, Signer
from claiim_core.eventauth import GateKey, KeyFormatError
from claiim_core.names import Names
from claiim_runtime.natsconf import Cluster, NatsConfig, render

from claiim_server.servers import new_password

KINDS = {
    "checkpoint": "Chron's checkpoint signing key (CLAIIM_CHECKPOINT_KEY_FILE); prints the verifier key for auditors",
    "control": "the control service's signing key (CLAIIM_CONTROL_KEY_FILE); prints the verifier key every service "
               "trusts (CLAIIM_CONTROL_VERIFIERS)",
    "gate": "a gate's MAC key (CLAIIM_GATE_KEY_FILE); add the same line to Chron's and the OCSF feed's "
            "CLAIIM_GATE_KEYS",
    "nats-issuer": "the auth service's NATS account seed (CLAIIM_NATS_ISSUER_SEED_FILE); prints the public key for "
                   "the server's auth_callout issuer",
    "nats-password": "a NATS password the server's configuration parser reads as a plain string (printed)",
}


def add_commands(sub: Any) -> None:
    keygen = sub.add_parser("keygen", help="make a key (offline): " + ", ".join(KINDS),
                            description="Make a key. " + " ".join(f"{k}: {v}." for k, v in KINDS.items()))
    keygen.add_argument("kind", choices=list(KINDS), help="the key to make (see above)")
    keygen.add_argument("name", nargs="?", default="",
                        help="the key's name (checkpoint, control) or id (gate), e.g. acme-chron, gate-eu-1")
    keygen.add_argument("-o", "--output", type=Path, help="file for the secret key (mode 600; not for nats-password)")
    conf = sub.add_parser("nats-config", help="print the nats-server configuration for claiim (users, permissions, "
                                              "auth callout)")
    conf.add_argument("--namespace", default=os.environ.get("CLAIIM_NAMESPACE") or "claiim",
                      help="claiim's subject and stream prefix (default: CLAIIM_NAMESPACE, else claiim)")
    conf.add_argument("--issuer", default="$NATS_ISSUER",
                      help="the public account key printed by `claiim keygen nats-issuer` (default: $NATS_ISSUER)")
    conf.add_argument("--store-dir", default="/data", help="JetStream's storage directory (default /data)")
    conf.add_argument("--port", type=int, default=4222, help="the client port (default 4222)")
    conf.add_argument("--http-port", type=int, default=8222, help="the monitoring port (default 8222)")
    conf.add_argument("--server-name", default="claiim-nats-1",
                      help="this node's name, or a $VARIABLE (one file for every node of a cluster)")
    conf.add_argument("--cluster", metavar="HOST:PORT,...",
                      help="every node's route address: a cluster node, whose routes log in with "
                           "$CLUSTER_NATS_PASSWORD and whose route URLs come from $NATS_ROUTE_1...")
    conf.add_argument("--cluster-port", type=int, default=6222, help="the route port of a cluster node (default 6222)")


def keygen(args: argparse.Namespace) -> int:
    if args.kind == "nats-password":
        print(new_password())
        return 0
    if args.output is None:
        raise AdminError(f"keygen {args.kind} needs -o FILE for the secret key")
    try:
        secret, public = _make(args.kind, args.name)
    except (CheckpointError, KeyFormatError) as e:
        raise AdminError(str(e)) from e
    try:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise AdminError(f"{args.output} exists: keys are never overwritten") from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{secret}\n")
    print(f"{args.kind} key written to {args.output} (mode 600)")
    if public:
        print(public)
    return 0


def _make(kind: str, name: str) -> tuple[str, str]:
    """The secret key's text, and what to print for others."""
    if kind in ("checkpoint", "control"):
        if not name:
            raise AdminError(f"keygen {kind} needs a NAME")
        signer = Signer.from_seed(name, secrets.token_bytes(32))
        who = "auditors and the admin UI (CLAIIM_CHECKPOINT_VERIFIER)" if kind == "checkpoint" else \
            "every service (CLAIIM_CONTROL_VERIFIERS) and auditors"
        return str(signer), f"verifier key, for {who}: {signer.verifier}"
    if kind == "gate":
        if not name:
            raise AdminError("keygen gate needs an ID")
        return str(GateKey(name, secrets.token_bytes(32))), ("give the same file to Chron and the OCSF feed "
                                                             "(a line of CLAIIM_GATE_KEYS)")
    issuer = KeyPair(PREFIX_ACCOUNT, secrets.token_bytes(32))
    return issuer.seed_text, f"public key, for the NATS server (NATS_ISSUER / auth_callout issuer): {issuer.public_key}"


def nats_config(args: argparse.Namespace) -> int:
    cluster = None
    if args.cluster:
        routes = tuple(r.strip() for r in args.cluster.split(",") if r.strip())
        if len(routes) < 3 or any(":" not in r for r in routes):
            raise AdminError("--cluster lists every node's route address as host:port, at least three "
                             "(JetStream needs a majority to stay writable)")
        cluster = Cluster(routes, port=args.cluster_port)
    print(render(NatsConfig(Names(args.namespace), issuer=args.issuer, store_dir=args.store_dir, port=args.port,
                            http_port=args.http_port, server_name=args.server_name, cluster=cluster)), end="")
    return 0
