"""What the benchmarks share: a stack's settings with fresh keys, on a nats-server running claiim's
configuration (every party its own NATS user, agents admitted by the auth service), as ``claiim up``
runs it, plus an all-permissions maintenance user for the benchmark's own probes."""

from __future__ import annotations

import secrets
from typing import Any

import nats
from claiim_core.checkpoint import Signer
from claiim_core.eventauth import GateKey
from claiim_core.names import service_inbox
from claiim_runtime.natsconf import MAINTENANCE_USER
from claiim_runtime.settings import Settings
from claiim_server.servers import NatsCredentials, new_password
from nats.aio.client import Client


def credentials() -> NatsCredentials:
    generated = NatsCredentials.generate()
    return NatsCredentials({**generated.passwords, MAINTENANCE_USER: new_password()}, generated.issuer_seed)


def settings(url: str, database_url: str | None, nats: NatsCredentials, **extra: Any) -> Settings:
    """Settings of a stack on ``url`` with new token secret, operator token and keys."""
    control = Signer.from_seed("bench-control", secrets.token_bytes(32))
    gate = GateKey("bench-gate", secrets.token_bytes(32))
    return Settings(url=url, database_url=database_url, token_secret=secrets.token_urlsafe(32),
                    admin_token="adm_" + secrets.token_hex(8),
                    checkpoint_key=str(Signer.from_seed("bench-chron", secrets.token_bytes(32))),
                    control_key=str(control), control_verifiers=str(control.verifier), gate_key=str(gate),
                    gate_keys=str(gate), nats_passwords=nats.passwords_setting, nats_issuer_seed=nats.issuer_seed,
                    **extra)


async def maintenance(url: str, nats_credentials: NatsCredentials) -> Client:
    """A connection as the maintenance user (the benchmark's probes: stream info, raw publishing)."""
    return await nats.connect(url, name="bench-probe", user=MAINTENANCE_USER,
                              password=nats_credentials.passwords[MAINTENANCE_USER],
                              inbox_prefix=service_inbox(MAINTENANCE_USER))
