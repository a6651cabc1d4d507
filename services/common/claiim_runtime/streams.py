"""Connecting to NATS and creating the JetStream streams claiim uses."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import nats
from claiim_core.names import Names
from claiim_core.urls import nats_servers
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StoreCompression,
    StreamConfig,
)
from nats.js.errors import APIError, ServiceUnavailableError

from claiim_runtime.settings import ConfigError, Settings

DUPLICATE_WINDOW_S = 120.0
log = logging.getLogger("claiim.nats")


async def connect(url: str, name: str, first_wait: float = 30.0, inbox_prefix: str = "_INBOX",
                  user: str | None = None, password: str | None = None) -> Client:
    """Connect with reconnects that go on for ever once connected (services ride out a NATS
    restart), but give up on the first connection after ``first_wait`` seconds with the last
    error: a server that never comes up, or refuses our credentials, must not hang a start.
    ``user`` and ``password`` log in as a service's NATS user (None: as the URL says)."""
    errors: list[Exception] = []

    async def record(e: Exception) -> None:
        errors.append(e)
        log.warning("NATS connection: %r", e)

    try:
        return await asyncio.wait_for(nats.connect(
            nats_servers(url), name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
            connect_timeout=2, allow_reconnect=True, error_cb=record, inbox_prefix=inbox_prefix,
            user=user if password else None, password=password,
        ), timeout=first_wait)
    except TimeoutError:
        where = urlsplit(url)
        last = f": {errors[-1]!r}" if errors else ""
        raise ConnectionError(f"cannot connect to NATS at {where.hostname}:{where.port} "
                              f"within {first_wait:g} s{last}") from None


@dataclass(frozen=True)
class StreamOptions:
    """How claiim's streams are stored: copies, compression, and the OCSF stream's limits."""

    replicas: int = 1
    compression: Literal["none", "s2"] = "s2"
    ocsf_max_age: float = 0.0
    """Seconds (0: for ever)."""
    ocsf_max_bytes: int = -1
    """-1: no limit."""

    @classmethod
    def of(cls, settings: Settings) -> StreamOptions:
        return cls(settings.stream_replicas, settings.stream_compression, settings.ocsf_max_age,
                   settings.ocsf_max_bytes)


async def ensure_streams(js: JetStreamContext, names: Names, options: StreamOptions | None = None,
                         wait: float = 20.0) -> None:
    """Create claiim's streams if they do not exist (idempotent): decisions, control events,
    Chron's proofs feed (leaf batches and signed checkpoints) and the OCSF rendering of decisions,
    each with ``options.replicas`` copies (3 on a NATS cluster: a majority of nodes must store a
    message before its PubAck) and its compression.

    The decision, control and proofs streams keep everything: Chron can always be rebuilt from them,
    and its checkpoints and leaves checked against them (docs/chron.md says what a rebuild needs).
    The OCSF stream is derived from Chron's data and keeps ``ocsf_max_age`` seconds and
    ``ocsf_max_bytes`` (docs/operations.md); an OCSF stream made without limits by an older claiim
    gets them. Any other existing stream with other limits (an operator's choice) is kept as it is,
    but not with other replicas than asked: raises :class:`StreamReplicasError`. A JetStream that is
    not ready yet (a cluster electing its first leader) gets ``wait`` seconds.
    """
    options = options or StreamOptions()
    replicas = options.replicas
    loop = asyncio.get_running_loop()
    until = loop.time() + wait
    for stream, subjects in (
        (names.decisions_stream, [names.decisions_wildcard]),
        (names.control_stream, [names.control_wildcard]),
        (names.proofs_stream, [names.chron_leaves, names.chron_checkpoint]),
        (names.ocsf_stream, [names.ocsf_wildcard]),
    ):
        ocsf = stream == names.ocsf_stream
        window = min(DUPLICATE_WINDOW_S, options.ocsf_max_age) if ocsf and options.ocsf_max_age else DUPLICATE_WINDOW_S
        config = StreamConfig(
            name=stream, subjects=subjects, retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE, discard=DiscardPolicy.OLD,
            duplicate_window=window, allow_direct=True, num_replicas=replicas,
            compression=StoreCompression(options.compression),
            max_age=options.ocsf_max_age if ocsf else None, max_bytes=options.ocsf_max_bytes if ocsf else None,
        )
        while True:
            try:
                await js.add_stream(config)
            except (ServiceUnavailableError, NatsTimeoutError, NoRespondersError) as e:
                if loop.time() > until:
                    raise ConnectionError(f"JetStream did not become ready within {wait:g} s: {e!r}") from None
                log.info("JetStream not ready (%r); trying again", e)
                await asyncio.sleep(0.5)
                continue
            except APIError as e:
                await _check_existing(js, e, stream, replicas)
                if ocsf:
                    await _limit_ocsf(js, stream, options)
            break


async def _limit_ocsf(js: JetStreamContext, stream: str, options: StreamOptions) -> None:
    """Give an OCSF stream that keeps everything (made by an older claiim) the configured limits."""
    config = (await js.stream_info(stream)).config
    if (config.max_age or 0) == 0 and (config.max_bytes or -1) == -1 and (options.ocsf_max_age or
                                                                          options.ocsf_max_bytes != -1):
        config.max_age = options.ocsf_max_age
        config.max_bytes = options.ocsf_max_bytes
        if options.ocsf_max_age:
            config.duplicate_window = min(config.duplicate_window or DUPLICATE_WINDOW_S, options.ocsf_max_age)
        await js.update_stream(config)
        log.info("stream %s now keeps %s s and %s bytes", stream, options.ocsf_max_age or "unlimited",
                 options.ocsf_max_bytes if options.ocsf_max_bytes != -1 else "unlimited")


async def _check_existing(js: JetStreamContext, e: APIError, stream: str, replicas: int) -> None:
    """Raise unless ``e`` says the stream exists, with other limits but the replicas asked for."""
    if e.err_code == 10074:  # insufficient resources: fewer servers than replicas
        raise StreamReplicasError(
            f"cannot create stream {stream} with {replicas} replicas: the NATS server is not a cluster of "
            f"{replicas} or more nodes (set CLAIIM_STREAM_REPLICAS to the copies it can hold)") from None
    if e.err_code != 10058:  # stream name already in use with a different configuration
        raise e
    existing = (await js.stream_info(stream)).config.num_replicas or 1
    if existing != replicas:
        raise StreamReplicasError(
            f"stream {stream} exists with {existing} replica(s) but CLAIIM_STREAM_REPLICAS asks for {replicas}: "
            f"set CLAIIM_STREAM_REPLICAS={existing}, or change the stream's replicas first "
            f"(`nats stream edit {stream} --replicas {replicas}` as a JetStream admin)") from None


class StreamReplicasError(ConfigError):
    """A stream cannot have, or does not have, the replicas the settings ask for."""


async def durable_pull(nc: Client, stream: str, durable: str, ack_wait: float) -> Puller:
    """A :class:`Puller` of the durable consumer ``durable`` of ``stream``, which gets every message
    from the first one, acknowledged one by one, redelivered without limit ``ack_wait`` seconds after
    a consumer that fetched it went quiet. The consumer is created, or updated when it exists with
    another ``ack_wait`` (one made by an older claiim), first."""
    config = ConsumerConfig(name=durable, durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
                            deliver_policy=DeliverPolicy.ALL, max_ack_pending=50_000, ack_wait=ack_wait,
                            max_deliver=-1)
    await nc.jetstream().add_consumer(stream, config)
    puller = Puller(nc, stream, durable)
    await puller.start()
    return puller


class Puller:
    """Batches from a durable pull consumer: one pull request per batch, every message collected by one
    subscription callback. (nats-py's ``fetch`` awaits each message with a task and a timer of its own,
    which cost Chron more than storing the message.)

    :meth:`fetch` first asks for what is there (``no_wait``); when nothing is, it asks again and waits
    up to ``timeout`` for the first message. Such a request lingers on the server until it has
    delivered its batch or expires, and what it delivers later is kept for the next fetch. A fetch
    that returns a full batch (a backlog) asks for the next one at once, without waiting for it: it
    arrives while the caller stores this one (:meth:`waiting` lists what has arrived)."""

    def __init__(self, nc: Client, stream: str, durable: str, api_prefix: str = "$JS.API") -> None:
        self._nc = nc
        self._next = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._ids = itertools.count()
        self._ready: list[Msg] = []
        """Delivered, not yet fetched."""
        self._current: str | None = None
        """The reply subject of the request being waited for."""
        self._need = 1
        self._wake = asyncio.Event()
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox + ".*", cb=self._on_msg, pending_msgs_limit=200_000,
                                             pending_bytes_limit=256 * 1024 * 1024)

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self._ready.append(msg)
            if len(self._ready) >= self._need:
                self._wake.set()
        elif status != "100" and msg.subject == self._current:  # 404, 408, 409: the request is over
            self._wake.set()

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages; none when none came within ``timeout`` seconds."""
        if not self._ready:
            await self._pull({"batch": batch, "no_wait": True}, batch, timeout)
        if not self._ready:
            await self._pull({"batch": batch, "expires": int(timeout * 1e9)}, 1, timeout)
        msgs, self._ready = self._ready[:batch], self._ready[batch:]
        if len(msgs) == batch and len(self._ready) < batch:  # a backlog: ask for the next batch now
            await self._nc.publish(self._next, json.dumps({"batch": batch, "no_wait": True}).encode(),
                                   reply=f"{self._inbox}.{next(self._ids)}")
        return msgs

    def waiting(self) -> list[Msg]:
        """What was delivered and not fetched yet."""
        return list(self._ready)

    async def _pull(self, request: dict[str, object], need: int, timeout: float) -> None:
        """Send ``request`` and wait until ``need`` messages are ready or it is over (or ``timeout``)."""
        reply = f"{self._inbox}.{next(self._ids)}"
        self._current, self._need = reply, need
        self._wake.clear()
        try:
            await self._nc.publish(self._next, json.dumps(request).encode(), reply=reply)
            if len(self._ready) < need:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            self._current = None

    def take_rest(self) -> list[Msg]:
        """What was delivered and not fetched (a stopping consumer hands it back)."""
        msgs, self._ready = self._ready, []
        return msgs

    async def unsubscribe(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()


def stream_seq(msg: Msg) -> int:
    """The stream sequence of a message a JetStream consumer delivered, read from its reply subject
    (``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...``, or the longer form with a domain
    and an account hash) without nats-py's ``metadata``, which also builds a datetime and two
    dataclasses per message."""
    tokens = (msg.reply or "").split(".")
    if not (len(tokens) == 9 or len(tokens) >= 11) or tokens[0] != "$JS" or tokens[1] != "ACK":
        raise ValueError(f"not a JetStream delivery: reply subject {msg.reply!r}")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])


async def hand_back(msgs: list[Msg], seconds: float) -> None:
    """Nak ``msgs`` (a stopping consumer's fetched but unfinished batch) so that JetStream
    redelivers them at once rather than after ``ack_wait``; waits at most ``seconds``, and leaves
    alone what was acked meanwhile."""
    async def nak(msg: Msg) -> None:
        with contextlib.suppress(Exception):
            await msg.nak()

    if msgs:
        await asyncio.wait([asyncio.ensure_future(nak(m)) for m in msgs], timeout=seconds)
