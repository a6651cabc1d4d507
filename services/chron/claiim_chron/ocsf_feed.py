"""The OCSF feed: every decision rendered as OCSF API Activity on its own subject.

A durable pull consumer (``chron-ocsf``) reads the decision stream; each decision is published as
OCSF to ``<ns>.ocsf.<org>.<agent>.<allow|deny>`` (stream ``<NS>_OCSF``) with the chron id as
``Nats-Msg-Id``, and the decision is acked only after the PubAck. So the feed misses nothing and
a redelivery is deduplicated. A message that is not a decision, or not authentic (no valid MAC
of a trusted gate key, or replayed on another subject), is acked and skipped, counted and logged
at CRITICAL (Chron parks it): a SIEM reading the OCSF stream never sees a forged decision. It is
its own service (``claiim serve ocsf``), so that publishing a second stream never slows Chron's
ingest down where they run in separate processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from claiim_core.eventauth import AuthError, GateKeyring, open_decision
from claiim_core.names import Names
from claiim_core.ocsf import ocsf_bytes
from claiim_core.schemas import DecisionEvent
from claiim_runtime.natsconf import OCSF_DURABLE
from claiim_runtime.pubacks import AckPipeline, Stored
from claiim_runtime.stopping import Deadline
from claiim_runtime.streams import Puller, durable_pull, hand_back, stream_seq
from nats.aio.client import Client
from nats.aio.msg import Msg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)
_decision = msgspec.json.Decoder(DecisionEvent)

RETRY_DELAY_S = 1.0
ACK_WAIT_S = 5.0
"""How long JetStream waits for the feed's ack before it redelivers."""
STOP_S = 1.5
PUBLISH_TIMEOUT_S = 5.0
"""How long the feed waits for JetStream to store an OCSF event before the decision is handed back."""


class OcsfFeed:
    def __init__(self, nc: Client, names: Names, batch: int, gate_keys: GateKeyring) -> None:
        self._nc = nc
        self._acks = AckPipeline(nc, names.ocsf_stream, PUBLISH_TIMEOUT_S)
        self._names = names
        self._batch = batch
        self._gate_keys = gate_keys
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        """Set by :meth:`stop`: the loop ends on it too, should a fetch swallow the cancellation."""
        self._puller: Puller | None = None
        self._inflight: list[Msg] = []
        self.published = 0
        self.rejected = 0
        self.pending = -1
        """Decisions not yet published, as of the last :meth:`refresh` (-1: not known)."""

    async def refresh(self) -> None:
        """Read the feed's lag to the decision stream from JetStream (before a scrape)."""
        info = await self._nc.jetstream().consumer_info(self._names.decisions_stream, OCSF_DURABLE, timeout=2.0)
        self.pending = (info.num_pending or 0) + (info.num_ack_pending or 0)

    def metrics(self) -> list[Metric]:
        return [CounterMetricFamily("claiim_ocsf_published", "Decisions published as OCSF events", self.published),
                CounterMetricFamily("claiim_ocsf_rejected", "Decisions not published: not authentic", self.rejected),
                GaugeMetricFamily("claiim_ocsf_pending", "Decisions not yet published: the feed's lag (-1: unknown)",
                                  self.pending)]

    async def start(self) -> None:
        await self._acks.start()
        puller = await durable_pull(self._nc, self._names.decisions_stream, OCSF_DURABLE, ACK_WAIT_S)
        self._puller = puller
        self._task = asyncio.create_task(self._run(puller))

    async def stop(self, deadline: Deadline | None = None) -> None:
        """Stop within ``deadline`` (default :data:`STOP_S`), NATS gone or not; what was fetched
        and not published is handed back (nak) for the next feed."""
        deadline = deadline or Deadline(STOP_S)
        fetched = [*self._inflight]  # before a cancelled batch drops it
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=deadline.left())
        if self._puller is not None:
            await deadline.step("OCSF consumer", self._puller.unsubscribe())
            fetched += self._puller.take_rest()
        await hand_back(fetched, deadline.left())
        await deadline.step("OCSF PubAcks", self._acks.stop(wait=0))

    async def _run(self, puller: Puller) -> None:
        while not self._stopping:
            try:
                msgs = await puller.fetch(self._batch, timeout=1)
            except Exception as e:  # NATS down or reconnecting
                log.warning("OCSF feed fetch failed: %r", e)
                await asyncio.sleep(RETRY_DELAY_S)
                continue
            self._inflight = msgs
            try:
                await self._publish(msgs)
            except Exception:  # a bug must not end the feed: what was not acked comes back
                log.exception("publishing %d decisions as OCSF failed; they will be redelivered", len(msgs))
            finally:
                self._inflight = []

    async def _publish(self, msgs: list[Msg]) -> None:
        events = []
        for msg in msgs:
            try:
                event = _decision.decode(msg.data)
                open_decision(event, msg.subject, stream_seq(msg), self._gate_keys, self._names)
            except AuthError as e:
                self.rejected += 1
                log.critical("decision at seq %s on %s is not authentic, not published as OCSF: %s",
                             stream_seq(msg), msg.subject, e)
                await msg.ack()
            except (msgspec.DecodeError, msgspec.ValidationError):
                await msg.ack()
            else:
                events.append((msg, event))
        problems = await self._publish_all([(self._names.ocsf_subject(e.org, e.agent_id, e.outcome), ocsf_bytes(e),
                                             e.chron_id) for _, e in events])
        if problems:  # some were not stored: all come back, duplicates are dropped by Msg-Id
            log.warning("OCSF feed publish failed: %s; %d decisions will be redelivered", problems[0], len(events))
            for msg, _ in events:
                with contextlib.suppress(Exception):
                    await msg.nak(delay=RETRY_DELAY_S)
            return
        for msg, _ in events:
            await msg.ack()
        self.published += len(events)

    async def _publish_all(self, messages: list[tuple[str, bytes, str]]) -> list[str]:
        """Publish ``(subject, payload, msg id)`` all at once; what went wrong once every PubAck came or
        failed (within the PubAck timeout)."""
        problems: list[str] = []
        left = len(messages)
        finished = asyncio.Event()

        async def done(stored: Stored) -> None:
            nonlocal left
            if stored.problem is not None:
                problems.append(stored.problem)
            left -= 1
            if left == 0:
                finished.set()

        for subject, payload, msg_id in messages:
            await self._acks.publish(subject, payload, msg_id, done)
        if messages:
            await finished.wait()
        return problems
