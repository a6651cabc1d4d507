"""Connecting to NATS and creating the JetStream streams claiim uses."""

from __future__ import annotations

import nats
from claiim_core.names import Names
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

DUPLICATE_WINDOW_S = 120.0


async def connect(url: str, name: str) -> Client:
    """Connect with reconnects that go on for ever (services) and a short first attempt."""
    return await nats.connect(
        url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
        connect_timeout=2, allow_reconnect=True,
    )


async def ensure_streams(js: JetStreamContext, names: Names) -> None:
    """Create claiim's streams if they do not exist (idempotent): decisions, control events,
    Chron's proofs feed (leaf batches and signed checkpoints) and the OCSF rendering of decisions.

    Retention is unlimited: Chron can always be rebuilt from the streams, and its checkpoints and
    leaves checked against them (docs/chron.md says what a rebuild needs).
    """
    for stream, subjects in (
        (names.decisions_stream, [names.decisions_wildcard]),
        (names.control_stream, [names.control_wildcard]),
        (names.proofs_stream, [names.chron_leaves, names.chron_checkpoint]),
        (names.ocsf_stream, [names.ocsf_wildcard]),
    ):
        config = StreamConfig(
            name=stream, subjects=subjects, retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE, discard=DiscardPolicy.OLD,
            duplicate_window=DUPLICATE_WINDOW_S, allow_direct=True,
        )
        try:
            await js.add_stream(config)
        except BadRequestError as e:
            # An existing stream with other limits (an operator's choice) is kept as it is.
            if e.err_code != 10058:  # stream name already in use with a different configuration
                raise
