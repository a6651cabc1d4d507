"""The live decision feed: one ordered JetStream consumer on the decision stream, starting an hour
back so that the overview chart is full at once, fanned out per org to the pages that listen.

Only decisions are shown here, and only those JetStream has stored (the gate's replies wait for
the same PubAck), so the feed never shows a decision that is not on its way to Chron.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
from claiim_core.names import Names
from claiim_core.schemas import DecisionEvent
from claiim_runtime.streams import stream_seq
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from claiim_admin.stats import MINUTES, DecisionStats, Snapshot

log = logging.getLogger("claiim.admin.feed")
_decode = msgspec.json.Decoder(DecisionEvent).decode
QUEUE_LIMIT = 1000
"""Decisions a slow browser may fall behind by; beyond that its page skips the oldest (search has them all)."""


def feed_row(e: DecisionEvent) -> dict[str, str]:
    return {"chron_id": e.chron_id, "decided_at": e.decided_at, "outcome": e.outcome, "agent_id": e.agent_id,
            "action": e.action, "target": e.target, "anchor": e.anchor, "policy": e.policy, "reason": e.reason}


class DecisionFeed:
    def __init__(self, js: JetStreamContext, names: Names, clock: Callable[[], float] = time.time) -> None:
        self._js, self._names, self._clock = js, names, clock
        self.stats = DecisionStats()
        self.seen = 0
        """The decision stream's sequence of the last decision received."""
        self.lag = -1
        """Decisions in the stream not yet received, as of the last :meth:`refresh` (-1: not known)."""
        self._listeners: dict[str, set[asyncio.Queue[dict[str, str] | None]]] = {}
        self._sub: JetStreamContext.PushSubscription | None = None

    async def start(self) -> None:
        since = datetime.fromtimestamp(self._clock(), UTC) - timedelta(minutes=MINUTES)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME,
                                opt_start_time=since)
        self._sub = await self._js.subscribe(self._names.decisions_wildcard, stream=self._names.decisions_stream,
                                             cb=self._on_msg,
                                             ordered_consumer=True, config=config,
                                             pending_msgs_limit=100_000)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        for queues in self._listeners.values():
            for q in queues:
                q.put_nowait(None)

    async def refresh(self) -> None:
        """Read how far behind the decision stream the feed is (before a scrape)."""
        info = await self._js.stream_info(self._names.decisions_stream)
        self.lag = max(0, (info.state.last_seq or 0) - self.seen)

    async def _on_msg(self, msg: Msg) -> None:
        self.seen = max(self.seen, stream_seq(msg))
        try:
            event = _decode(msg.data)
            at = datetime.fromisoformat(event.decided_at).timestamp()
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
            log.warning("skipping a decision message that does not decode: %s", e)
            return
        row = feed_row(event)
        self.stats.add(event.org, at, event.outcome == "ALLOW", row, self._clock())
        for q in self._listeners.get(event.org, ()):
            if q.full():
                q.get_nowait()
            q.put_nowait(row)

    def listen(self, org: str) -> asyncio.Queue[dict[str, str] | None]:
        """A queue of the org's new decisions (``None``: the feed stopped); call :meth:`forget` after."""
        q: asyncio.Queue[dict[str, str] | None] = asyncio.Queue(QUEUE_LIMIT)
        self._listeners.setdefault(org, set()).add(q)
        return q

    def forget(self, org: str, q: asyncio.Queue[dict[str, str] | None]) -> None:
        self._listeners.get(org, set()).discard(q)

    def snapshot(self, org: str) -> Snapshot:
        return self.stats.snapshot(org, self._clock())

    def recent(self, org: str) -> list[dict[str, str]]:
        return self.stats.recent(org)
