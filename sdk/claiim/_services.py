"""The composition root: connect, create streams, and start the gate, control handler, Chron,
the OCSF feed and the admin web UI.

``claiim serve`` (one service per process, as in compose) and ``claiim up`` (all in one process)
both start services through :func:`start_services`.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta

from claiim_admin.service import AdminUI
from claiim_chron.ocsf_feed import OcsfFeed
from claiim_chron.service import ChronService
from claiim_chron.store import ChronStore
from claiim_control.service import ControlService
from claiim_gate.service import GateService
from claiim_runtime.follower import RegistryFollower
from claiim_runtime.settings import Settings
from claiim_runtime.streams import connect, ensure_streams
from nats.aio.client import Client
from nats.js import JetStreamContext

BACKEND = ("gate", "control", "chron", "ocsf")
"""What :func:`start_services` starts unless told otherwise: everything but the web UI."""
SERVICES = (*BACKEND, "admin")


@dataclass
class RunningServices:
    nc: Client
    js: JetStreamContext
    gates: list[GateService] = field(default_factory=list)
    control: ControlService | None = None
    chron: ChronService | None = None
    ocsf: OcsfFeed | None = None
    admin: AdminUI | None = None
    followers: list[RegistryFollower] = field(default_factory=list)

    async def stop(self) -> None:
        if self.admin is not None:
            await self.admin.stop()
        for gate in self.gates:
            await gate.stop()
        if self.control is not None:
            await self.control.stop()
        if self.ocsf is not None:
            await self.ocsf.stop()
        if self.chron is not None:
            await self.chron.stop()
            await self.chron.store.close()
        for follower in self.followers:
            await follower.stop()
        await self.nc.flush()
        await self.nc.close()


async def start_services(settings: Settings, which: tuple[str, ...] = BACKEND,
                         instance: str | None = None) -> RunningServices:
    """Start the named services on one NATS connection; the caller stops them."""
    unknown = set(which) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; choose from {SERVICES}")
    names = settings.names
    secret = settings.require_token_secret() if {"gate", "control", "chron"} & set(which) else b""
    admin_token = settings.require_admin_token() if {"control", "chron"} & set(which) else ""
    db_url = settings.require_database_url() if "chron" in which else ""
    signer = settings.require_checkpoint_signer() if "chron" in which else None
    verifier = settings.require_checkpoint_verifier() if "admin" in which else None
    instance = instance or f"{socket.gethostname()}-{os.getpid()}"
    nc = await connect(settings.url, name=f"claiim-{'+'.join(which)}-{instance}",
                     first_wait=settings.connect_wait, inbox_prefix=settings.inbox_prefix)
    js = nc.jetstream()
    running = RunningServices(nc, js)
    try:
        await ensure_streams(js, names)
        if "chron" in which:
            store = await ChronStore.open(db_url)
            follower = RegistryFollower(js, names)
            await follower.start()
            running.followers.append(follower)
            assert signer is not None
            running.chron = ChronService(nc, js, names, store, follower, secret, admin_token, settings.chron_batch,
                                         signer, settings.origin, settings.checkpoint_interval,
                                         settings.checkpoint_dir)
            await running.chron.start()
        if "ocsf" in which:
            running.ocsf = OcsfFeed(js, names, settings.chron_batch)
            await running.ocsf.start()
        if "control" in which:
            follower = RegistryFollower(js, names)
            await follower.start()
            running.followers.append(follower)
            running.control = ControlService(nc, js, names, follower, secret, admin_token,
                                             timedelta(seconds=settings.proposal_ttl))
            await running.control.start()
        if "gate" in which:
            follower = RegistryFollower(js, names)
            await follower.start()
            running.followers.append(follower)
            gate = GateService(nc, names, follower, secret, instance, settings.publish_timeout)
            await gate.start()
            running.gates.append(gate)
        if "admin" in which:
            assert verifier is not None
            running.admin = AdminUI(nc, names, settings.url, verifier, host=settings.ui_host, port=settings.ui_port,
                                    secure_cookies=settings.ui_secure_cookies, session_idle=settings.ui_session_idle)
            await running.admin.start()
    except BaseException:
        await running.stop()
        raise
    return running
