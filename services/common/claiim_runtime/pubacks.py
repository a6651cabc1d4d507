"""Pipelined JetStream publishing: many messages in flight, each finished on its PubAck (the gate's
decisions, the OCSF feed's events).

Instead of one request (a future, a task) per message, every message is published with
a reply subject under one inbox that this recorder subscribes to. When JetStream's PubAck arrives
there, the waiting continuation runs. A sweeper fails every publish whose PubAck has not come
within the timeout, so a lost ack (a NATS restart, a missing stream) turns into an explicit
failure, never a silent wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class Stored:
    """What became of one publish: ``problem`` None when JetStream stored it (at ``seq``; with
    ``duplicate``, the message stored earlier under the same ``Nats-Msg-Id`` is at ``seq``)."""

    problem: str | None
    seq: int = 0
    duplicate: bool = False
    timed_out: bool = False
    """No PubAck came in time (rather than a refusal or a failed publish)."""


Done = Callable[[Stored], Awaitable[None]]
"""Called once per publish with what became of it."""


class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


_ack = msgspec.json.Decoder(_PubAck)


@dataclass(slots=True)
class _Pending:
    deadline: float
    done: Done


class AckPipeline:
    def __init__(self, nc: Client, stream: str, timeout: float) -> None:
        self._nc = nc
        self._stream = stream
        self._timeout = timeout
        self._prefix = nc.new_inbox() + "."
        self._ids = itertools.count()
        self._pending: dict[str, _Pending] = {}
        self._sub: Subscription | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._prefix + "*", cb=self._on_ack, pending_msgs_limit=100_000)
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self, wait: float | None = None) -> None:
        """Wait (up to ``wait``, default the PubAck timeout) for publishes in flight, then fail what
        is left."""
        deadline = time.monotonic() + (self._timeout if wait is None else min(wait, self._timeout))
        while self._pending and time.monotonic() < deadline:  # noqa: ASYNC110 (shutdown only, polling is fine)
            await asyncio.sleep(0.01)
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self._fail_older_than(float("inf"), "stopping")
        if self._sub is not None:
            with contextlib.suppress(Exception):  # NATS gone: nothing to unsubscribe from
                await asyncio.wait_for(self._sub.unsubscribe(), 0.5)

    async def publish(self, subject: str, payload: bytes, msg_id: str, done: Done) -> None:
        """Publish; ``done`` runs when JetStream has stored the message or it is known to fail."""
        token = str(next(self._ids))
        self._pending[token] = _Pending(time.monotonic() + self._timeout, done)
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + token,
                                   headers={"Nats-Msg-Id": msg_id, "Nats-Expected-Stream": self._stream})
        except Exception as e:
            if (pending := self._pending.pop(token, None)) is not None:
                await pending.done(Stored(f"publish failed ({type(e).__name__})"))

    async def _on_ack(self, msg: Msg) -> None:
        pending = self._pending.pop(msg.subject[len(self._prefix):], None)
        if pending is None:
            return  # already failed by the sweeper: the caller was told DENY
        await pending.done(_stored(msg))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(0.05, self._timeout / 4))
            await self._fail_older_than(time.monotonic(), "no PubAck in time")

    async def _fail_older_than(self, now: float, why: str) -> None:
        expired = [token for token, p in self._pending.items() if p.deadline <= now]
        for token in expired:
            if (pending := self._pending.pop(token, None)) is not None:
                try:
                    await pending.done(Stored(why, timed_out=True))
                except Exception:
                    log.exception("failing a publish")


NO_LEADER = "JetStream has no stream leader for this subject (503): a cluster electing one, or no stream"


def _stored(msg: Msg) -> Stored:
    """What a PubAck says: stored (where, and whether as a duplicate), or what went wrong."""
    if msg.headers and msg.headers.get("Status") == "503":
        return Stored(NO_LEADER)
    try:
        ack = _ack.decode(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return Stored("unreadable PubAck")
    if ack.error is not None:
        return Stored(f"JetStream refused: {ack.error.description} ({ack.error.err_code})")
    if ack.seq <= 0:
        return Stored("PubAck without a sequence")
    return Stored(None, ack.seq, ack.duplicate)
