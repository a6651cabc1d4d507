"""Waiting for approvals (``<ns>.gate.wait``): the agent collects the outcome of its PENDING decision.

The approval's state is in JetStream, not in this process (:mod:`claiim_core.approvals`): the
PENDING decision is the last message on the approval's subject until the ALLOW or DENY that ends it
is published there, and grants, refusals and expiries reach every gate's registry as control
events. A wait request is answered

- at once with the recorded end of the approval, when there is one and this is the same wait
  retried (same request id); a wait with another request id gets DENY ``approval:used``, recorded;
- when the registry shows a grant, refusal or expiry, or the approval's time is up: the ALLOW or
  DENY that ends it (:func:`claiim_core.approvals.conclude`), published expecting the PENDING as the
  subject's last message, so that of two replicas (or two waits) ending it at once one records the
  end and the other answers with it;
- after the wait's time with the PENDING decision again, nothing recorded.

A wait that names no approval of the agent (a bad token, an unknown id, a PENDING decision whose
MAC does not verify) is refused without a record: no action was decided.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

import msgspec
from claiim_core.approvals import conclude
from claiim_core.conditions import Conditions
from claiim_core.decision import Verdict, authenticate_agent
from claiim_core.eventauth import AuthError, GateKeyring, check_decision
from claiim_core.events import ApprovalExpired, ApprovalGranted, ApprovalRefused, ControlEvent
from claiim_core.ids import chron_id, rfc3339
from claiim_core.names import Names
from claiim_core.reasons import reason
from claiim_core.schemas import Approval, DecisionEvent, DecisionReply, WaitRequest, reply_for
from claiim_runtime.follower import RegistryFollower
from msgspec.structs import replace
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import APIError, NotFoundError

from claiim_gate.decide import Moment

log = logging.getLogger(__name__)
WRONG_LAST_SEQUENCE = 10071
MAX_WAITING = 10_000
"""Wait requests held at once by one gate; more are answered at once with the PENDING decision."""
_encode = msgspec.json.Encoder().encode
_event = msgspec.json.Decoder(DecisionEvent)
_wait = msgspec.json.Decoder(WaitRequest)

Seal = Callable[[DecisionEvent], bytes]


class Unanswerable(Exception):
    """The wait names no approval this agent can collect; the message says why."""


class ApprovalDesk:
    def __init__(self, nc: Client, names: Names, follower: RegistryFollower, token_secret: bytes,
                 keyring: GateKeyring, seal: Seal, conditions: Conditions, instance: str,
                 publish_timeout: float, now: Callable[[], Moment]) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._names = names
        self._follower = follower
        self._secret = token_secret
        self._keyring = keyring
        self._seal = seal
        self._conditions = conditions
        self._instance = instance
        self._timeout = publish_timeout
        self._now = now
        self._changed: dict[tuple[str, str], asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        follower.listen(self._on_control)

    async def stop(self) -> None:
        """Hold no more waits: each held one is answered with its PENDING decision at once, so that its
        agent asks again (another replica) instead of waiting out its request's timeout."""
        self._stopping = True
        for changed in self._changed.values():
            changed.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=0.5)
        for task in list(self._tasks):
            task.cancel()

    def _on_control(self, seq: int, event: ControlEvent) -> None:
        if isinstance(event, ApprovalGranted | ApprovalRefused | ApprovalExpired):
            changed = self._changed.get((event.org, event.approval_id))
            if changed is not None:
                changed.set()

    async def on_wait(self, msg: Msg) -> None:
        """The subscription's callback: each wait is answered by its own task, so one held wait does
        not hold up the others."""
        if len(self._tasks) >= MAX_WAITING:
            await self._reply(msg, await self._answer(msg.data, hold=False))
            return
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        await self._reply(msg, await self._answer(msg.data, hold=True))

    async def _reply(self, msg: Msg, reply: DecisionReply) -> None:
        if msg.reply:
            try:
                await self._nc.publish(msg.reply, _encode(reply))
            except Exception:
                log.exception("could not send a wait reply")

    async def _answer(self, data: bytes, *, hold: bool) -> DecisionReply:
        try:
            request = _wait.decode(data)
        except msgspec.DecodeError as e:  # ValidationError included
            return _refusal("request", "malformed", str(e))
        try:
            return await self._collect(request, hold)
        except Unanswerable as e:
            return _refusal("approval", "unknown", str(e))
        except Exception as e:
            log.exception("wait for approval %s failed", request.approval_id)
            return _refusal("chron", "unavailable", f"the approval cannot be read or ended now ({type(e).__name__})")

    async def _collect(self, request: WaitRequest, hold: bool) -> DecisionReply:
        agent = authenticate_agent(self._follower.registry, request.agent_id, request.token, self._secret,
                                   now=self._now().at)
        if isinstance(agent, Verdict):
            raise Unanswerable(agent.reason)
        subject = self._names.approval_subject(agent.org, agent.agent_id, request.approval_id)
        deadline = time.monotonic() + (request.wait if hold else 0.0)
        key = (agent.org, request.approval_id)
        changed = self._changed.setdefault(key, asyncio.Event())
        try:
            while True:
                changed.clear()
                last, seq = await self._last(subject)
                if last.outcome != "PENDING" or not last.approval:
                    return await self._ended(last, request)
                moment = self._now()
                now = moment.at
                registry = self._follower.registry
                ending = conclude(registry, agent, last, now, self._conditions)
                if ending is not None:
                    return await self._end(last, seq, ending[0], ending[1], request, moment)
                left = min(deadline - time.monotonic(),
                           (datetime.fromisoformat(last.approval.expires_at) - now).total_seconds() + 0.05)
                if left <= 0 or self._stopping:
                    return reply_for(last)
                try:
                    await asyncio.wait_for(changed.wait(), left)
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        return reply_for(last)
        finally:
            self._changed.pop(key, None)

    async def _last(self, subject: str) -> tuple[DecisionEvent, int]:
        try:
            msg = await self._js.get_last_msg(self._names.decisions_stream, subject, direct=True)
        except NotFoundError:
            raise Unanswerable("no such approval for this agent") from None
        try:
            event = _event.decode(msg.data or b"")
            check_decision(event, self._keyring, msg.seq)
        except (msgspec.DecodeError, AuthError) as e:
            log.critical("approval record at seq %s on %s refused: %s", msg.seq, subject, e)
            raise Unanswerable(f"the approval's record does not verify: {e}") from None
        return event, msg.seq or 0

    async def _ended(self, final: DecisionEvent, request: WaitRequest) -> DecisionReply:
        """The approval has ended: its end again for the same wait retried, else ``approval:used``."""
        if final.request_id == request.request_id:
            return reply_for(final)
        assert final.approval
        used = replace(final, outcome="DENY", request_id=request.request_id,
                       reason=reason("approval", "used", f"approval {final.approval.id} already ended "
                                     f"({final.outcome}, {final.chron_id})"),
                       approval=msgspec.UNSET, shadow=msgspec.UNSET)
        moment = self._now()
        used = replace(used, chron_id=chron_id(moment.unix_us // 1000, moment.randomness),
                       decided_at=rfc3339(moment.unix_us), gate=self._instance,
                       control_seq=self._follower.registry.last_seq)
        subject = self._names.decision_subject(used.org, used.agent_id, "DENY")
        await self._js.publish(subject, self._seal(used), stream=self._names.decisions_stream,
                               timeout=self._timeout, headers={"Nats-Msg-Id": used.chron_id})
        return reply_for(used)

    async def _end(self, pending: DecisionEvent, seq: int, verdict: Verdict, link: Approval,
                   request: WaitRequest, moment: Moment) -> DecisionReply:
        final = DecisionEvent(
            chron_id=chron_id(moment.unix_us // 1000, moment.randomness), decided_at=rfc3339(moment.unix_us),
            outcome=verdict.outcome, reason=verdict.reason, rule=verdict.rule, org=pending.org,
            agent_id=pending.agent_id, anchor=verdict.anchor or pending.anchor, action=pending.action,
            target=pending.target, context=dict(pending.context), request_id=request.request_id,
            policy=verdict.policy or pending.policy, skill=verdict.skill or pending.skill, gate=self._instance,
            control_seq=self._follower.registry.last_seq, trace_id=pending.trace_id, approval=link)
        headers = {"Nats-Msg-Id": final.chron_id, "Nats-Expected-Last-Subject-Sequence": str(seq)}
        try:
            await self._js.publish(self._names.approval_subject(final.org, final.agent_id, link.id),
                                   self._seal(final), stream=self._names.decisions_stream, timeout=self._timeout,
                                   headers=headers)
        except APIError as e:
            if e.err_code != WRONG_LAST_SEQUENCE:
                raise
            other, _ = await self._last(self._names.approval_subject(final.org, final.agent_id, link.id))
            return await self._ended(other, request)
        return reply_for(final)


def _refusal(category: str, subject: str, text: str) -> DecisionReply:
    """A DENY that ends nothing and is not recorded (it has no chron id)."""
    return DecisionReply(outcome="DENY", reason=f"{category}:{subject} -- {text}", rule="approval", chron_id="",
                         policy="", skill="", anchor="", agent_id="", decided_at="")
