"""``claiim up``: the whole stack on one machine, for newcomers, demos and tests.

It starts nats-server (JetStream, data in DIR/nats; with ``--nats-cluster 3`` a cluster of three,
data in DIR/nats-cluster, every stream with three replicas) and PostgreSQL (pgserver, data in
DIR/pg) unless URLs of existing servers are given, then control, Chron and the auth service in
this process with the admin web UI (``--ui-port``, default 8480), the gate as ``--gate-workers``
processes of its own and the OCSF feed as one more (:mod:`claiim_server.workers`), applies the demo
bundle, and writes:

- ``DIR/env``: ``CLAIIM_URL``, ``CLAIIM_STREAM_REPLICAS``, ``CLAIIM_ADMIN_TOKEN`` (the operator
  token), ``CLAIIM_DATABASE_URL``, ``CLAIIM_NAMESPACE``, ``CLAIIM_UI_URL``, the base URL of each
  process's metrics and health (``CLAIIM_HTTP_GATE``, one per gate worker, comma-separated;
  ``CLAIIM_HTTP_OCSF``; ``CLAIIM_HTTP_CONTROL``, ``CLAIIM_HTTP_CHRON`` and ``CLAIIM_HTTP_ADMIN``, which
  are this process) and, with the demo, ``CLAIIM_ORG=demo`` (source it, or let the CLI read it from
  ``./.claiim/env``);
- ``DIR/demo-tokens.json``: agent id to token, mode 600;
- ``DIR/demo-admins.json``: the demo org's admins (alice, bob) and auditor (audrey) to their
  tokens, mode 600;
- ``DIR/secrets.json``: the token secret and operator token of this dev stack, mode 600;
- ``DIR/checkpoint.key`` (mode 600) and ``DIR/checkpoint.pub``: Chron's checkpoint signing key
  and its verifier key (also ``CLAIIM_CHECKPOINT_VERIFIER`` in ``DIR/env``); checkpoints and
  leaf batches are mirrored to ``DIR/chron-mirror``.

All data stays across restarts. This dev mode is the only place claiim makes up its own secrets.

On SIGINT or SIGTERM (to it or to its whole process group, as a terminal's Ctrl-C sends) it stops
the services (at most 1.5 s), then its nats-servers and PostgreSQL, which run in sessions of their own
so that they outlive the signal until then. Servers that a killed ``claiim up`` left running on DIR
are stopped (nats-server) or taken over (PostgreSQL) by the next one.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import psutil
import yaml
from claiim import AsyncAdmin
from claiim_core.checkpoint import Signer
from claiim_core.eventauth import GateKey
from claiim_core.names import Names
from claiim_runtime.logs import configure
from claiim_runtime.natsconf import Cluster
from claiim_runtime.settings import ConfigError, Settings
from claiim_runtime.stopping import run_until_signalled

from claiim_server.bootstrap import BACKEND, RunningServices, start_services
from claiim_server.servers import (
    NatsCredentials,
    NatsProcess,
    StackError,
    ensure_database,
    free_port,
    new_password,
    port_free,
    start_nats,
    start_postgres,
    stop_postgres,
)
from claiim_server.workers import Workers, default_workers


@dataclass(frozen=True)
class UpOptions:
    data_dir: Path
    nats_port: int = 4222
    nats_url: str | None = None
    database_url: str | None = None
    demo: bool = True
    ui_port: int = 8480
    """The admin web UI's port on 127.0.0.1 (0: any free port)."""
    nats_cluster: int = 1
    """How many nats-server nodes to start (1, or a cluster of 3 or 5 on ports ``nats_port`` and up,
    every stream with as many replicas)."""
    gate_workers: int = field(default_factory=default_workers)
    """How many gate processes to run (:mod:`claiim_server.workers`)."""


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (mode 600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def load_checkpoint_key(data_dir: Path) -> Signer:
    """This dev stack's checkpoint signing key (DIR/checkpoint.key, mode 600), made on first start.

    Its verifier key goes to DIR/checkpoint.pub. The key never goes to PostgreSQL.
    """
    path = data_dir / "checkpoint.key"
    if path.exists():
        return Signer.parse(path.read_text())
    signer = Signer.from_seed("claiim-dev", secrets.token_bytes(32))
    write_private(path, f"{signer}\n")
    (data_dir / "checkpoint.pub").write_text(f"{signer.verifier}\n")
    return signer


def load_event_keys(data_dir: Path) -> tuple[Path, Path, Path]:
    """This dev stack's event keys, made on first start (mode 600, never in NATS or PostgreSQL):
    DIR/control.key signs control events (its verifier key in DIR/control.pub), DIR/gate.key
    authenticates decisions (and is the one-key gate keyring Chron and the OCSF feed use)."""
    control, control_pub, gate = data_dir / "control.key", data_dir / "control.pub", data_dir / "gate.key"
    if not control.exists():
        signer = Signer.from_seed("claiim-control", secrets.token_bytes(32))
        write_private(control, f"{signer}\n")
        control_pub.write_text(f"{signer.verifier}\n")
    if not gate.exists():
        write_private(gate, f"{GateKey('embedded', secrets.token_bytes(32))}\n")
    return control, control_pub, gate


def load_secrets(data_dir: Path) -> dict[str, Any]:
    """This dev stack's token secret, operator token and NATS credentials (its users' passwords, the
    auth service's account seed, the cluster's route password) in DIR/secrets.json (mode 600), made
    on first start; NATS credentials are added to a file that lacks them."""
    path = data_dir / "secrets.json"
    values: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {
        "token_secret": secrets.token_urlsafe(32), "admin_token": "adm_" + secrets.token_urlsafe(32)}
    missing = {}
    if "nats_passwords" not in values:
        credentials = NatsCredentials.generate()
        missing = {"nats_passwords": credentials.passwords, "nats_issuer_seed": credentials.issuer_seed}
    if "nats_route_password" not in values:
        missing["nats_route_password"] = new_password()
    if missing:
        values |= missing
        write_private(path, json.dumps(values, indent=2) + "\n")
    return values


def demo_bundle() -> dict[str, Any]:
    text = resources.files("claiim_server.cli").joinpath("demo-bundle.yaml").read_text()
    return dict(yaml.safe_load(text))


async def run_up(opts: UpOptions, stop: asyncio.Event, say: Any = print) -> None:
    """Start the stack, announce it, and run until ``stop`` is set."""
    started = time.monotonic()
    if opts.ui_port and not port_free(opts.ui_port):
        raise StackError(f"port {opts.ui_port} is already in use on 127.0.0.1 (another claiim up?); choose another "
                         f"port for the admin UI with --ui-port")
    data_dir = opts.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    keys = load_secrets(data_dir)
    signer = load_checkpoint_key(data_dir)
    control_key, control_pub, gate_key = load_event_keys(data_dir)
    nats: list[NatsProcess] = []
    pg: Any = None
    running = None
    workers: list[Workers] = []
    own_nats = NatsCredentials(keys["nats_passwords"], keys["nats_issuer_seed"])
    try:
        if opts.nats_url:
            nats_url = opts.nats_url
            given = Settings()  # an existing server: its claiim credentials, if any, come from the environment
            passwords = given.nats_passwords.get_secret_value() if given.nats_passwords else None
            issuer = given.nats_issuer_seed.get_secret_value() if given.nats_issuer_seed else None
        else:
            nats = await asyncio.to_thread(start_local_nats, opts, data_dir, own_nats, keys["nats_route_password"])
            nats_url = ",".join(node.url for node in nats)
            passwords, issuer = own_nats.passwords_setting, own_nats.issuer_seed
        if opts.database_url:
            db_url = opts.database_url
        else:
            pg, server_url = await asyncio.to_thread(start_postgres, data_dir / "pg")
            db_url = await ensure_database(server_url, "claiim")
        settings = Settings(url=nats_url, database_url=db_url, namespace=NAMESPACE, token_secret=keys["token_secret"],
                            admin_token=keys["admin_token"], checkpoint_key_file=data_dir / "checkpoint.key",
                            checkpoint_dir=data_dir / "chron-mirror", checkpoint_verifier=str(signer.verifier),
                            ui_port=opts.ui_port, control_key_file=control_key, control_verifiers_file=control_pub,
                            gate_key_file=gate_key, gate_keys_file=gate_key, nats_passwords=passwords,
                            nats_issuer_seed=issuer, stream_replicas=opts.nats_cluster if nats else 1,
                            http_port=free_port())
        which: tuple[str, ...] = tuple(s for s in (*BACKEND, "admin") if s not in ("gate", "ocsf"))
        if not issuer:
            which = tuple(s for s in which if s != "auth")
            say(f"warning: no CLAIIM_NATS_ISSUER_SEED for the NATS server at {nats_url}: services connect as that "
                "URL says, and no auth service admits agents (docs/security.md)")
        try:
            running = await start_services(settings, which, instance="embedded")
        except ConfigError as e:
            raise StackError(str(e)) from None
        for service, count in (("gate", opts.gate_workers), ("ocsf", 1)):
            workers.append(Workers(settings, service, count, [free_port() for _ in range(count)]))
            await workers[-1].start()
        _warn_refused(running, data_dir, say)
        assert running.admin is not None and running.http is not None
        ui_url, here = running.admin.url, running.http.url
        gates, ocsf = workers
        env = (f"CLAIIM_URL={nats_url}\nCLAIIM_STREAM_REPLICAS={settings.stream_replicas}\n"
               f"CLAIIM_ADMIN_TOKEN={keys['admin_token']}\n"
               f"CLAIIM_DATABASE_URL={db_url}\nCLAIIM_NAMESPACE={settings.namespace}\n"
               f"CLAIIM_CHECKPOINT_VERIFIER={signer.verifier}\nCLAIIM_CHECKPOINT_DIR={data_dir / 'chron-mirror'}\n"
               f"CLAIIM_CONTROL_VERIFIERS={control_pub.read_text().strip()}\nCLAIIM_GATE_KEYS_FILE={gate_key}\n"
               f"CLAIIM_UI_URL={ui_url}\n"
               f"CLAIIM_HTTP_GATE={','.join(gates.http_urls)}\nCLAIIM_HTTP_OCSF={ocsf.http_urls[0]}\n"
               f"CLAIIM_HTTP_CONTROL={here}\nCLAIIM_HTTP_CHRON={here}\nCLAIIM_HTTP_ADMIN={here}\n"
               + (f"CLAIIM_ORG={DEMO_ORG}\n" if opts.demo else ""))
        write_private(data_dir / "env", env)
        if opts.demo:
            await load_demo(nats_url, keys["admin_token"], data_dir, say)
        say(f"claiim ready at {nats_url} in {time.monotonic() - started:.1f}s "
            f"(data in {data_dir}; for the CLI elsewhere: `claiim --data-dir {data_dir} ...`, "
            f"or `set -a; . {data_dir}/env; set +a`)")
        say(f"admin UI at {ui_url} (log in with a token from {data_dir / 'demo-admins.json'} or the operator "
            f"token CLAIIM_ADMIN_TOKEN in {data_dir / 'env'})")
        waiting = asyncio.create_task(stop.wait())
        watching = asyncio.create_task(_servers_gone(nats, data_dir / "pg" if pg is not None else None, say))
        await asyncio.wait([waiting, watching], return_when=asyncio.FIRST_COMPLETED)
        for task in (waiting, watching):
            task.cancel()
        if not stop.is_set() and watching.done() and not watching.cancelled():
            raise StackError(f"{watching.result()}: claiim up stops")
        say("claiim stopping")
    finally:
        # In order: the services (bounded), then the servers they use.
        for group in reversed(workers):
            await group.stop()
        if running is not None:
            await running.stop()
        for node in nats:
            await asyncio.to_thread(node.stop)
        if pg is not None:
            await asyncio.to_thread(stop_postgres, pg)


WATCH_S = 1.0
"""How often ``claiim up`` looks whether the servers it started still run."""


async def _servers_gone(nats: list[NatsProcess], pg_dir: Path | None, say: Any) -> str:
    """Return why the stack cannot go on: its only nats-server, a majority of its cluster, or its
    PostgreSQL exited. A cluster node that exits while a majority runs is reported once and the stack
    goes on (restarting ``claiim up`` brings the node back)."""
    reported: set[int] = set()
    pg_pid = _postmaster_pid(pg_dir) if pg_dir is not None else None
    while True:
        await asyncio.sleep(WATCH_S)
        gone = [node for node in nats if node.process.poll() is not None]
        for node in gone:
            if node.port not in reported:
                reported.add(node.port)
                if len(nats) > 1 and len(nats) - len(gone) > len(nats) // 2:
                    say(f"warning: nats-server on port {node.port} exited (code {node.process.returncode}); the "
                        f"cluster goes on with {len(nats) - len(gone)} of {len(nats)} nodes (see {node.log_file}; "
                        "restart claiim up to bring it back)")
        if gone and len(nats) - len(gone) <= len(nats) // 2:
            node = gone[0]
            return (f"nats-server on port {node.port} exited (code {node.process.returncode}; see {node.log_file})"
                    if len(nats) == 1 else f"{len(gone)} of {len(nats)} nats-servers exited: the cluster has no "
                    "majority")
        if pg_pid is not None and not _running(pg_pid):
            return f"PostgreSQL (pid {pg_pid}) exited (see {pg_dir})"


def _postmaster_pid(pg_dir: Path) -> int | None:
    """The pid of the PostgreSQL serving ``pg_dir``, from its ``postmaster.pid``."""
    try:
        return int((pg_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_local_nats(opts: UpOptions, data_dir: Path, credentials: NatsCredentials,
                     route_password: str) -> list[NatsProcess]:
    """This stack's nats-server, or its cluster of ``opts.nats_cluster`` nodes on 127.0.0.1 (client
    ports from ``opts.nats_port`` up, route ports free ones). A data directory keeps the layout it was
    made with: a single server's store is not a cluster's."""
    single, cluster_dir = data_dir / "nats", data_dir / "nats-cluster"
    count = opts.nats_cluster
    if count == 1 and _has_store(cluster_dir):
        raise StackError(f"{data_dir} holds a NATS cluster's data: start it with --nats-cluster "
                         f"{len(list(cluster_dir.glob('n*')))}, or choose another --data-dir")
    if count > 1 and _has_store(single):
        raise StackError(f"{data_dir} holds a single NATS server's data: start it without --nats-cluster, "
                         "or choose another --data-dir")
    names = Names(NAMESPACE)
    if count == 1:
        return [start_nats(opts.nats_port, single, credentials=credentials, names=names)]
    routes = tuple(f"127.0.0.1:{free_port()}" for _ in range(count))
    nodes: list[NatsProcess] = []
    try:
        for i, route in enumerate(routes, 1):
            cluster = Cluster(routes, port=int(route.rsplit(":", 1)[1]), password=route_password)
            nodes.append(start_nats(opts.nats_port + i - 1, cluster_dir / f"n{i}", credentials=credentials,
                                    names=names, cluster=cluster, server_name=f"claiim-n{i}"))
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def _has_store(path: Path) -> bool:
    return any(path.rglob("jetstream"))


def _warn_refused(running: RunningServices, data_dir: Path, say: Any) -> None:
    refused = max((f.rejected for f in running.followers), default=0)
    if refused:
        say(f"warning: {refused} control events in {data_dir} are not signed by this stack's control key and were "
            "not applied: the data directory was made by a claiim without event authentication, or its keys were "
            "replaced. Start afresh with another --data-dir.")


NAMESPACE = "claiim"
DEMO_ORG = "demo"
DEMO_ADMINS: tuple[tuple[str, Literal["admin", "auditor"]], ...] = (
    ("alice", "admin"), ("bob", "admin"), ("audrey", "auditor"))
"""Two admins (two-person control needs a second one) and a read-only auditor of the demo org."""


async def load_demo(url: str, admin_token: str, data_dir: Path, say: Any) -> None:
    """Apply the demo bundle and enrol the demo admins; tokens go to files readable by the owner only."""
    admin = AsyncAdmin(url, admin_token, org=DEMO_ORG)
    try:
        reply = await admin.apply(demo_bundle())
        enrolled = {a.name for a in await admin.admins()}
        admin_tokens = {name: await admin.enrol_admin(name, role) for name, role in DEMO_ADMINS
                        if name not in enrolled}
    finally:
        await admin.close()
    tokens_path = data_dir / "demo-tokens.json"
    admins_path = data_dir / "demo-admins.json"
    for path, new in ((tokens_path, reply.tokens), (admins_path, admin_tokens)):
        saved = json.loads(path.read_text()) if path.exists() else {}
        if new:
            write_private(path, json.dumps(saved | new, indent=2) + "\n")
    say("demo bundle: " + ("; ".join(str(c) for c in reply.changed if c.op != "unchanged")
                           or "unchanged"))
    say(f"demo agents: tokens in {tokens_path}; demo admins {', '.join(n for n, _ in DEMO_ADMINS)}: "
        f"tokens in {admins_path}")


def main_up(opts: UpOptions) -> None:
    settings = Settings()  # CLAIIM_LOG_FORMAT and CLAIIM_LOG_LEVEL; warnings and worse unless a level is set
    configure(settings if "CLAIIM_LOG_LEVEL" in os.environ else settings.model_copy(update={"log_level": "WARNING"}),
              "up")
    run_until_signalled(lambda stop: run_up(opts, stop, lambda line: print(line, flush=True)))
