"""The composition root: connect, create streams, and start the gate, control handler, Chron,
the OCSF feed, the auth service and the admin web UI.

``claiim serve`` (one service per process, as in compose) and ``claiim up`` (all in one process)
both start services through :func:`start_services`. Every service has its own NATS connection as
its own NATS user (``CLAIIM_NATS_PASSWORDS``; claiim_runtime/natsconf.py gives each its
permissions) with its own reply prefix (``_INBOX_<service>``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from claiim_admin.service import AdminUI
from claiim_auth.nkeys import PREFIX_ACCOUNT, KeyPair, NkeyError
from claiim_auth.service import AuthService
from claiim_chron.archive import ArchiveError, Archiver, Trimmer, place_of
from claiim_chron.metrics import ChronMetrics
from claiim_chron.ocsf_feed import OcsfFeed
from claiim_chron.service import ChronService
from claiim_chron.store import ChronStore
from claiim_control.service import ControlService
from claiim_core.eventauth import seal_decision
from claiim_core.names import service_inbox
from claiim_gate.metrics import GateMetrics
from claiim_gate.service import GateService
from claiim_gate.tracing import GateSpans
from claiim_runtime.follower import RegistryFollower
from claiim_runtime.observe import HealthServer, Reading, nats_check
from claiim_runtime.settings import ConfigError, Settings
from claiim_runtime.stopping import Deadline
from claiim_runtime.streams import StreamOptions, connect, ensure_streams
from nats.aio.client import Client
from prometheus_client import CollectorRegistry

BACKEND = ("gate", "control", "chron", "ocsf", "auth")
"""What :func:`start_services` starts unless told otherwise: everything but the web UI."""
SERVICES = (*BACKEND, "admin")
STOP_S = 1.5
"""The longest a stop of all services takes, NATS and PostgreSQL gone or not: the rest of the 2 s a
``claiim serve`` process has after SIGTERM is for the process's own exit."""


@dataclass
class RunningServices:
    connections: dict[str, Client] = field(default_factory=dict)
    """Each service's NATS connection, by NATS user (``sys``: the auth service's system user)."""
    gates: list[GateService] = field(default_factory=list)
    control: ControlService | None = None
    chron: ChronService | None = None
    ocsf: OcsfFeed | None = None
    auth: AuthService | None = None
    admin: AdminUI | None = None
    followers: list[RegistryFollower] = field(default_factory=list)
    http: HealthServer | None = None
    """This process's /metrics, /healthz and /readyz (with ``CLAIIM_HTTP_PORT``)."""

    async def stop(self, seconds: float = STOP_S) -> None:
        """Stop every service, then close the connections, all within ``seconds``: each step gets
        what is left of one deadline, so that a dependency that is gone (NATS, PostgreSQL) cannot
        hold a stop up."""
        deadline = Deadline(seconds)
        if self.http is not None:
            await deadline.step("metrics endpoint", self.http.stop())
        if self.admin is not None:
            await deadline.step("admin UI", self.admin.stop())
        for gate in self.gates:
            await deadline.step("gate", gate.stop(deadline))
        if self.control is not None:
            await deadline.step("control", self.control.stop())
        if self.auth is not None:
            await deadline.step("auth", self.auth.stop())
        if self.ocsf is not None:
            await deadline.step("OCSF feed", self.ocsf.stop(deadline))
        if self.chron is not None:
            await deadline.step("chron", self.chron.stop(deadline))
            await deadline.step("chron store", self.chron.store.close())
        for follower in self.followers:
            await deadline.step("registry follower", follower.stop())
        # close writes what is still buffered; no flush first, whose PING waits until the deadline once NATS is gone
        for nc in self.connections.values():
            await deadline.step("NATS close", nc.close())


async def start_services(settings: Settings, which: tuple[str, ...] = BACKEND,
                         instance: str | None = None) -> RunningServices:
    """Start the named services, each on its own NATS connection; the caller stops them."""
    unknown = set(which) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; choose from {SERVICES}")
    names = settings.names
    needs = set(which)
    secret = settings.require_token_secret() if needs & {"gate", "control", "chron", "auth"} else b""
    admin_token = settings.require_admin_token() if needs & {"control", "chron", "auth"} else ""
    db_url = settings.require_database_url() if "chron" in which else ""
    signer = settings.require_checkpoint_signer() if "chron" in which else None
    verifier = settings.require_checkpoint_verifier() if "admin" in which else None
    control_keys = settings.require_control_keyring() if needs & {"gate", "control", "chron", "auth"} else None
    control_signer = settings.require_control_signer() if "control" in which else None
    if control_signer is not None and control_keys is not None and control_signer.verifier not in control_keys:
        raise ConfigError(f"CLAIIM_CONTROL_VERIFIERS does not list this control key's verifier "
                          f"{control_signer.verifier}: every service would refuse its events")
    gate_key = settings.require_gate_key() if "gate" in which else None
    gate_keys = settings.require_gate_keyring() if needs & {"chron", "ocsf"} else None
    issuer = _issuer(settings) if "auth" in which else None
    instance = instance or f"{socket.gethostname()}-{os.getpid()}"
    running = RunningServices()
    http = None if settings.http_port is None else HealthServer(CollectorRegistry(), settings.http_host,
                                                                 settings.http_port)
    streams = (names.decisions_stream, names.control_stream, names.proofs_stream, names.ocsf_stream)

    async def connection(user: str) -> Client:
        nc = await connect(settings.url, name=f"claiim-{user}-{instance}", first_wait=settings.connect_wait,
                           inbox_prefix=service_inbox(user), user=user, password=settings.nats_password(user))
        running.connections[user] = nc
        if user != "sys":
            await ensure_streams(nc.jetstream(), names, StreamOptions.of(settings))
            if http is not None:
                http.checks.append(nats_check(user, nc, names, streams))
        return nc

    try:
        if "chron" in which:
            assert signer is not None and gate_keys is not None and control_keys is not None
            nc = await connection("chron")
            store = await ChronStore.open(db_url, packing=settings.chron_packing == "zstd")
            follower = RegistryFollower(nc.jetstream(), names, control_keys, keep_rejections=True)
            await follower.start()
            running.followers.append(follower)
            archiver = trimmer = None
            if settings.archive:
                try:
                    place = place_of(settings.archive, settings.archive_endpoint)
                except ArchiveError as e:
                    raise ConfigError(f"CLAIIM_ARCHIVE: {e}") from e
                archiver = Archiver(store, place, settings.archive_segment, settings.origin)
                if settings.archive_trim:
                    trimmer = Trimmer(nc.jetstream(), names, store, settings.decisions_keep)
            running.chron = ChronService(nc, nc.jetstream(), names, store, follower, gate_keys, secret, admin_token,
                                         settings.chron_batch, signer, settings.origin, settings.checkpoint_interval,
                                         settings.checkpoint_dir,
                                         None if http is None else ChronMetrics(
                                             http.registry, (names.decisions_stream, names.control_stream)),
                                         archiver, trimmer)
            await running.chron.start()
            if http is not None:
                http.refresh.append(running.chron.refresh_metrics)
                http.checks.append(running.chron.readiness)
        if "ocsf" in which:
            assert gate_keys is not None
            nc = await connection("ocsf")
            running.ocsf = OcsfFeed(nc, names, settings.chron_batch, gate_keys)
            await running.ocsf.start()
            if http is not None:
                http.registry.register(Reading(running.ocsf.metrics))
                http.refresh.append(running.ocsf.refresh)
        if "auth" in which:
            assert control_keys is not None and issuer is not None
            nc = await connection("auth")
            sys_nc = await connection("sys") if settings.nats_password("sys") else None
            follower = RegistryFollower(nc.jetstream(), names, control_keys)
            running.auth = AuthService(nc, sys_nc, names, follower, secret, admin_token, issuer)
            await follower.start()
            running.followers.append(follower)
            await running.auth.start()
        if "control" in which:
            assert control_keys is not None and control_signer is not None
            nc = await connection("control")
            follower = RegistryFollower(nc.jetstream(), names, control_keys)
            await follower.start()
            running.followers.append(follower)
            running.control = ControlService(nc, nc.jetstream(), names, follower, secret, admin_token,
                                             control_signer, timedelta(seconds=settings.proposal_ttl))
            await running.control.start()
            if http is not None:
                http.registry.register(Reading(running.control.metrics))
        if "gate" in which:
            assert control_keys is not None and gate_key is not None
            nc = await connection("gate")
            follower = RegistryFollower(nc.jetstream(), names, control_keys)
            await follower.start()
            running.followers.append(follower)
            metrics = None if http is None else GateMetrics(http.registry)
            spans = None if settings.otlp_endpoint is None else GateSpans(settings.otlp_endpoint, instance)
            gate = GateService(nc, names, follower, secret, instance, settings.publish_timeout,
                               partial(seal_decision, key=gate_key), settings.gate_keyring_with(gate_key), metrics,
                               spans)
            await gate.start()
            running.gates.append(gate)
            if http is not None and metrics is not None:
                http.refresh.append(_registry_lag(metrics, follower, nc, names.control_stream))
        if "admin" in which:
            assert verifier is not None
            nc = await connection("ui")
            running.admin = AdminUI(nc, names, settings.url, verifier, host=settings.ui_host, port=settings.ui_port,
                                    secure_cookies=settings.ui_secure_cookies, session_idle=settings.ui_session_idle)
            await running.admin.start()
            if http is not None:
                http.registry.register(Reading(running.admin.metrics))
                http.refresh.append(running.admin.refresh)
        if http is not None:
            await http.start()
            running.http = http
    except BaseException:
        await running.stop()
        raise
    return running


def _registry_lag(metrics: GateMetrics, follower: RegistryFollower, nc: Client,
                  control_stream: str) -> Callable[[], Awaitable[None]]:
    async def refresh() -> None:
        applied = follower.registry.last_seq
        metrics.control_seq.set(applied)
        info = await nc.jetstream().stream_info(control_stream)
        metrics.control_lag.set(max(0, (info.state.last_seq or 0) - applied))

    return refresh


def _issuer(settings: Settings) -> KeyPair:
    try:
        issuer = KeyPair.from_seed(settings.require_nats_issuer_seed())
    except NkeyError as e:
        raise ConfigError(f"CLAIIM_NATS_ISSUER_SEED is not an nkey seed: {e}") from None
    if issuer.prefix != PREFIX_ACCOUNT:
        raise ConfigError("CLAIIM_NATS_ISSUER_SEED must be an account seed (SA...): `claiim keygen nats-issuer`")
    return issuer
