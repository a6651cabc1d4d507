"""The gate's NATS adapter: a queue-group subscriber on the check subject.

Per request: decide (pure), authenticate the decision event with the gate's key
(:func:`claiim_core.eventauth.seal_decision`), publish it to JetStream, and reply only when its
PubAck arrives (:class:`~claiim_gate.recorder.AckPipeline` keeps many in flight without a task or
a future per request). If the event cannot be recorded the reply is DENY
``chron:unavailable -- ...``; if anything else fails the reply is still a DENY: no request is left
without an answer.

The hot path uses nats-py directly rather than a FastStream handler: ``bench/hotpaths.py``
measures both side by side. The publish-and-await step dominates; this class is the one adapter
to change when that path is optimised.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import msgspec
from claiim_core.names import Names
from claiim_core.policy import deny
from claiim_core.schemas import DecisionEvent, DecisionReply, reply_for
from claiim_runtime.follower import RegistryFollower
from msgspec.structs import replace
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from claiim_gate.decide import Moment, decide, event_for
from claiim_gate.recorder import AckPipeline
from claiim_gate.replay import ReplayCache, fingerprint, key_of

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode


Seal = Callable[[DecisionEvent], bytes]
"""Turns a decision into the bytes published: ``functools.partial(seal_decision, key=...)``."""


def now() -> Moment:
    return Moment(time.time_ns() // 1000, os.urandom(10))


class GateService:
    def __init__(self, nc: Client, names: Names, follower: RegistryFollower, token_secret: bytes,
                 instance: str, publish_timeout: float, seal: Seal) -> None:
        self._nc = nc
        self._names = names
        self._follower = follower
        self._secret = token_secret
        self._seal = seal
        self.instance = instance
        self._recorder = AckPipeline(nc, names.decisions_stream, publish_timeout)
        self._replays = ReplayCache()
        self._sub: Subscription | None = None

    async def start(self) -> None:
        await self._recorder.start()
        self._sub = await self._nc.subscribe(
            self._names.gate_check, queue=self._names.gate_queue, cb=self._on_request,
            pending_msgs_limit=100_000,
        )

    async def stop(self) -> None:
        """Stop taking requests and answer the ones in flight."""
        if self._sub is not None:
            await self._sub.unsubscribe()
        await self._recorder.stop()

    async def _on_request(self, msg: Msg) -> None:
        moment = now()
        try:
            event = decide(msg.data, self._follower.registry, self._secret, self.instance, moment)
        except Exception as e:  # an evaluator bug must still be answered, and recorded
            log.exception("internal error while deciding")
            verdict = deny(f"gate:internal-error -- {type(e).__name__}", "internal")
            event = event_for(verdict, None, self._follower.registry.last_seq, self.instance, moment)
        key = key_of(event)
        seen = self._replays.get(key, time.monotonic()) if key else None
        if seen is not None:
            if seen.fingerprint == fingerprint(event):  # a retry: the first answer, nothing recorded again
                if msg.reply:
                    await self._nc.publish(msg.reply, seen.reply)
                return
            event = replace(event, outcome="DENY", rule="request-id",
                            reason=f"request:replayed -- request id {event.request_id!r} was already used for "
                                   "another request")
        subject = self._names.decision_subject(event.org, event.agent_id, event.outcome)

        async def answer(problem: str | None) -> None:
            if problem is not None:
                log.warning("decision %s not recorded: %s", event.chron_id, problem)
            reply = _encode(_reply(event, problem))
            if problem is None and key is not None and seen is None:
                self._replays.remember(key, event, reply, time.monotonic())
            if msg.reply:
                try:
                    await self._nc.publish(msg.reply, reply)
                except Exception:
                    log.exception("could not send the reply for %s", event.chron_id)

        await self._recorder.publish(subject, self._seal(event), event.chron_id, answer)


def _reply(event: DecisionEvent, problem: str | None) -> DecisionReply:
    """The reply for a recorded event, or DENY ``chron:unavailable`` when it was not recorded."""
    if problem is None:
        return reply_for(event)
    return DecisionReply(
        outcome="DENY", reason=f"chron:unavailable -- the decision could not be recorded: {problem}",
        rule="record", chron_id="", policy=event.policy, skill=event.skill, anchor=event.anchor,
        agent_id=event.agent_id, decided_at=event.decided_at,
    )
