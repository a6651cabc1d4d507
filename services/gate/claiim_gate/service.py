"""The gate's NATS adapter: a queue-group subscriber on the check subject.

Per request: decide (pure), authenticate the decision event with the gate's key
(:func:`claiim_core.eventauth.seal_decision`), publish it to JetStream, and reply only when its
PubAck arrives (:class:`~claiim_runtime.pubacks.AckPipeline` keeps many in flight without a task or
a future per request). If the event cannot be recorded the reply is DENY
``chron:unavailable -- ...``; if anything else fails the reply is still a DENY: no request is left
without an answer. A request id recorded before, by this replica or another, is answered with
the decision stored then (:mod:`claiim_gate.requestids`). The trace id of a ``traceparent``
header goes into the decision (:mod:`claiim_core.tracecontext`). On ``<ns>.gate.skills`` an agent
learns what its skills cover (an MCP gateway lists only those tools); that is no decision. A
PENDING decision (an ``approve`` rule) is published on its approval's subject, and on
``<ns>.gate.wait`` the agent collects the approval's outcome (:mod:`claiim_gate.approvals`).

The hot path uses nats-py directly rather than a FastStream handler: ``bench/hotpaths.py``
measures both side by side. The publish-and-await step dominates; this class is the one adapter
to change when that path is optimised.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from claiim_core.codes import Code
from claiim_core.decision import Verdict, authenticate_agent, deny, skill_actions
from claiim_core.eventauth import GateKeyring, decision_subject
from claiim_core.names import Names
from claiim_core.reasons import INTERNAL, REQUEST_ID, reason
from claiim_core.schemas import DecisionEvent, DecisionReply, SkillsReply, SkillsRequest, reply_for
from claiim_core.tracecontext import TRACEPARENT, trace_id_of
from claiim_runtime.conditions import CelConditions
from claiim_runtime.follower import RegistryFollower
from claiim_runtime.pubacks import AckPipeline, Stored
from claiim_runtime.stopping import Deadline
from msgspec.structs import replace
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from claiim_gate.approvals import ApprovalDesk
from claiim_gate.decide import Moment, decide, event_for
from claiim_gate.metrics import GateMetrics
from claiim_gate.requestids import claims_request_id, fingerprint, msg_id
from claiim_gate.tracing import GateSpans

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode
_event = msgspec.json.Decoder(DecisionEvent)
_skills_request = msgspec.json.Decoder(SkillsRequest)


Seal = Callable[[DecisionEvent], bytes]
"""Turns a decision into the bytes published: ``functools.partial(seal_decision, key=...)``."""


def now() -> Moment:
    return Moment(time.time_ns() // 1000, os.urandom(10))


class GateService:
    def __init__(self, nc: Client, names: Names, follower: RegistryFollower, token_secret: bytes,
                 instance: str, publish_timeout: float, seal: Seal, keyring: GateKeyring,
                 metrics: GateMetrics | None = None, spans: GateSpans | None = None) -> None:
        self._nc = nc
        self._metrics = metrics
        self._spans = spans
        self._conditions = CelConditions()
        self._names = names
        self._follower = follower
        self._secret = token_secret
        self._seal = seal
        self.instance = instance
        self._recorder = AckPipeline(nc, names.decisions_stream, publish_timeout)
        self._recorder_timeout = publish_timeout
        self._js = nc.jetstream()
        self._sub: Subscription | None = None
        self._skills_sub: Subscription | None = None
        self._wait_sub: Subscription | None = None
        self.approvals = ApprovalDesk(nc, names, follower, token_secret, keyring, seal, self._conditions, instance,
                                      publish_timeout, now)

    async def start(self) -> None:
        await self._recorder.start()
        self._sub = await self._nc.subscribe(
            self._names.gate_check, queue=self._names.gate_queue, cb=self._on_request,
            pending_msgs_limit=100_000,
        )
        self._skills_sub = await self._nc.subscribe(self._names.gate_skills, queue=self._names.gate_queue,
                                                    cb=self._on_skills)
        self._wait_sub = await self._nc.subscribe(self._names.gate_wait, queue=self._names.gate_queue,
                                                  cb=self.approvals.on_wait)

    async def stop(self, deadline: Deadline | None = None) -> None:
        """Stop taking requests and answer the ones in flight (those whose PubAck has not come by
        the deadline get DENY ``chron:unavailable``)."""
        deadline = deadline or Deadline(self._recorder_timeout)
        for sub in (self._sub, self._skills_sub, self._wait_sub):
            if sub is not None:
                await deadline.step("gate subscription", sub.unsubscribe())
        await deadline.step("approval waits", self.approvals.stop())
        await self._recorder.stop(wait=max(0.0, deadline.left() - 0.2))
        if self._spans is not None:
            await self._spans.shutdown(max(0.1, deadline.left() - 0.1))

    async def _on_request(self, msg: Msg) -> None:
        request = _Request(msg.reply, time.perf_counter(),
                           None if self._spans is None else self._spans.start(msg.headers))
        if self._metrics is not None:
            self._metrics.in_flight.inc()
        moment = now()
        trace = trace_id_of(msg.headers.get(TRACEPARENT)) if msg.headers else None
        try:
            event = decide(msg.data, self._follower.registry, self._secret, self.instance, moment, trace,
                           self._conditions)
        except Exception as e:  # an evaluator bug must still be answered, and recorded
            log.exception("internal error while deciding")
            verdict = deny(reason("gate", "internal-error", type(e).__name__), INTERNAL)
            event = event_for(verdict, None, self._follower.registry.last_seq, self.instance, moment, trace)
        await self._record(event, request, first_attempt=True)

    async def _on_skills(self, msg: Msg) -> None:
        """What the agent's skills cover (:class:`SkillsReply`), for its token only; nothing is recorded."""
        try:
            request = _skills_request.decode(msg.data)
        except msgspec.DecodeError as e:  # ValidationError included
            reply = SkillsReply(ok=False, code=Code.INVALID, error=f"malformed request: {e}")
        else:
            registry = self._follower.registry
            agent = authenticate_agent(registry, request.agent_id, request.token, self._secret, now=now().at)
            if isinstance(agent, Verdict):
                reply = SkillsReply(ok=False, code=Code.UNAUTHENTICATED, error=agent.reason)
            else:
                skills, actions = skill_actions(registry, agent)
                reply = SkillsReply(ok=True, status=agent.status, skills=skills, actions=actions)
        if msg.reply:
            try:
                await self._nc.publish(msg.reply, _encode(reply))
            except Exception:
                log.exception("could not send a skills reply")

    async def _record(self, event: DecisionEvent, request: _Request, *, first_attempt: bool) -> None:
        """Publish ``event`` and answer ``request`` once JetStream has it. A request id already
        recorded (a retry, to this replica or another) is answered from the stored decision."""

        async def stored(result: Stored) -> None:
            if self._metrics is not None:
                if result.problem is None:
                    self._metrics.puback.observe(time.perf_counter() - sent)
                else:
                    self._metrics.puback_failures.labels("timeout" if result.timed_out else "error").inc()
            if result.problem is not None:
                log.warning("decision %s not recorded: %s", event.chron_id, result.problem,
                            extra={"org": event.org, "agent": event.agent_id, "chron_id": event.chron_id})
                await self._answer(request, _unavailable(event, result.problem), event.org)
            elif result.duplicate and first_attempt and claims_request_id(event):
                await self._answer_retry(event, result.seq, request)
            else:
                await self._answer(request, reply_for(event), event.org)

        subject = decision_subject(self._names, event)
        sent = time.perf_counter()
        await self._recorder.publish(subject, self._seal(event), msg_id(event), stored)

    async def _answer_retry(self, event: DecisionEvent, seq: int, request: _Request) -> None:
        """The request id was recorded before (at ``seq``): the first answer for the same request,
        a recorded DENY ``request:replayed`` for another."""
        try:
            first = _event.decode((await self._js.get_msg(self._names.decisions_stream, seq, direct=True)).data or b"")
        except Exception as e:  # NATS trouble: the agent retries, and gets the first answer then
            await self._answer(request, _unavailable(event, f"the first answer cannot be read ({type(e).__name__})"),
                               event.org)
            return
        if fingerprint(first) == fingerprint(event):
            await self._answer(request, reply_for(first), first.org)
            return
        refused = replace(event, outcome="DENY", rule=REQUEST_ID,
                          reason=reason("request", "replayed",
                                        f"request id {event.request_id!r} was already used for another request"))
        await self._record(refused, request, first_attempt=False)

    async def _answer(self, request: _Request, reply: DecisionReply, org: str) -> None:
        """Send the reply; every request ends here exactly once."""
        if self._metrics is not None:
            m = self._metrics
            m.decisions.labels(org, reply.outcome, reply.category).inc()
            m.latency.observe(time.perf_counter() - request.started)
            m.in_flight.dec()
        if request.reply_to:
            try:
                await self._nc.publish(request.reply_to, _encode(reply))
            except Exception:
                log.exception("could not send the reply for %s", reply.chron_id or "an unrecorded decision")
        if request.span is not None and self._spans is not None:
            self._spans.end(request.span, reply, org)


@dataclass(slots=True)
class _Request:
    """A request in flight: where its reply goes, when it arrived, and its span (when spans are exported)."""

    reply_to: str
    started: float
    span: Any


def _unavailable(event: DecisionEvent, problem: str) -> DecisionReply:
    """DENY ``chron:unavailable``: the decision could not be recorded, so the agent must not act."""
    return DecisionReply(
        outcome="DENY", reason=reason("chron", "unavailable", f"the decision could not be recorded: {problem}"),
        rule="record", chron_id="", policy=event.policy, skill=event.skill, anchor=event.anchor,
        agent_id=event.agent_id, decided_at=event.decided_at,
    )
