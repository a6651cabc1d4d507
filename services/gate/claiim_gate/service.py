"""The gate's NATS adapter: a queue-group subscriber on the check subject.

Per request: decide (pure), publish the decision event to JetStream and await its PubAck, and
only then reply. Each request runs in its own task so that many PubAcks are awaited at once. If
the event cannot be recorded the reply is DENY ``chron:unavailable -- ...``; if anything else
fails the reply is still a DENY: no request is left without an answer.

The hot path uses nats-py directly rather than a FastStream handler: ``bench/hotpaths.py``
measures both side by side. The publish-and-await step dominates; this class is the one adapter
to change when that path is optimised.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import msgspec
from claiim_core.canonical import canonical_bytes
from claiim_core.names import Names
from claiim_core.policy import deny
from claiim_core.schemas import DecisionEvent, DecisionReply, reply_for
from claiim_runtime.follower import RegistryFollower
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from claiim_gate.decide import Moment, decide, event_for

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode


def now() -> Moment:
    return Moment(time.time_ns() // 1000, os.urandom(10))


class GateService:
    def __init__(self, nc: Client, js: JetStreamContext, names: Names, follower: RegistryFollower,
                 token_secret: bytes, instance: str, publish_timeout: float) -> None:
        self._nc = nc
        self._js = js
        self._names = names
        self._follower = follower
        self._secret = token_secret
        self.instance = instance
        self._timeout = publish_timeout
        self._sub: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(
            self._names.gate_check, queue=self._names.gate_queue, cb=self._on_request,
            pending_msgs_limit=100_000,
        )

    async def stop(self) -> None:
        """Stop taking requests and finish the ones in flight."""
        if self._sub is not None:
            await self._sub.unsubscribe()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._timeout + 1)

    async def _on_request(self, msg: Msg) -> None:
        task = asyncio.create_task(self._handle(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, msg: Msg) -> None:
        moment = now()
        try:
            event = decide(msg.data, self._follower.registry, self._secret, self.instance, moment)
        except Exception as e:  # an evaluator bug must still be answered, and recorded
            log.exception("internal error while deciding")
            verdict = deny(f"gate:internal-error -- {type(e).__name__}", "internal")
            event = event_for(verdict, None, self._follower.registry.last_seq, self.instance, moment)
        reply = await self.record(event)
        if msg.reply:
            try:
                await msg.respond(_encode(reply))
            except Exception:
                log.exception("could not send the reply for %s", event.chron_id)

    async def record(self, event: DecisionEvent) -> DecisionReply:
        """Publish ``event`` and wait for JetStream to store it; DENY if it could not."""
        subject = self._names.decision_subject(event.org, event.agent_id, event.outcome)
        try:
            await self._js.publish(
                subject, canonical_bytes(event), timeout=self._timeout,
                stream=self._names.decisions_stream, headers={"Nats-Msg-Id": event.chron_id},
            )
        except Exception as e:
            log.warning("decision %s not recorded: %r", event.chron_id, e)
            return DecisionReply(
                outcome="DENY",
                reason=f"chron:unavailable -- the decision could not be recorded ({type(e).__name__})",
                rule="record", chron_id="", policy=event.policy, skill=event.skill,
                anchor=event.anchor, agent_id=event.agent_id, decided_at=event.decided_at,
            )
        return reply_for(event)
