"""The control service's side of approvals: what waits, who decides, when it expires, who is told.

- :class:`ApprovalBook` follows the approval subjects of the decisions stream (an ordered consumer
  from :data:`~claiim_core.document.MAX_APPROVAL_TTL_S` ago, so a restarted control service reads
  back every approval that can still be decided): each approval's PENDING decision and the ALLOW or
  DENY that ended it.
- :func:`approval_command` lists, shows, grants and refuses (:mod:`claiim_core.approvals` says who
  may); a grant or refusal is a control event, applied by every gate.
- :meth:`ApprovalBook.expire` records the expiry of each undecided approval past its time.
- :class:`WebhookNotifier` posts each waiting approval to its org's webhook, through a durable
  consumer: a failed POST is retried with a growing delay (up to :data:`MAX_RETRY_S`) until it
  succeeds or the approval expires, by whichever control replica fetches it, restarts included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
from claiim_core.access import AccessError, Principal
from claiim_core.approvals import expired, expiries, plan_decision, view, visible
from claiim_core.codes import Code, Refusal
from claiim_core.document import MAX_APPROVAL_TTL_S
from claiim_core.names import Names
from claiim_core.schemas import ApprovalCommand, ApprovalReply, DecisionEvent
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from claiim_control.unit import ControlStream, new_id

log = logging.getLogger(__name__)
_event = msgspec.json.Decoder(DecisionEvent)
FIND_WAIT_S = 2.0
"""How long a command waits for an approval recorded a moment ago to reach the book."""
FORGET_AFTER = timedelta(days=1)
"""Ended or expired approvals older than this leave the book (Chron keeps their records)."""
POST_TIMEOUT_S = 5.0
FIRST_RETRY_S = 2.0
MAX_RETRY_S = 300.0
NOTIFY_ACK_WAIT_S = 30.0


class ApprovalBook:
    def __init__(self, js: JetStreamContext, names: Names) -> None:
        self._js = js
        self._names = names
        self.pending: dict[str, DecisionEvent] = {}
        """Every approval's PENDING decision, by approval id."""
        self.ended: dict[str, DecisionEvent] = {}
        """The ALLOW or DENY that ended an approval, by approval id."""
        self._sub: JetStreamContext.PushSubscription | None = None
        self._arrived = asyncio.Condition()

    async def start(self) -> None:
        since = datetime.now(UTC) - timedelta(seconds=MAX_APPROVAL_TTL_S) - FORGET_AFTER
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since)
        self._sub = await self._js.subscribe(self._names.approvals_wildcard, stream=self._names.decisions_stream,
                                             cb=self._on_msg, ordered_consumer=True, config=config)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        try:
            event = _event.decode(msg.data)
        except msgspec.DecodeError as e:
            log.warning("approval message on %s does not decode: %s", msg.subject, e)
            return
        if not event.approval:
            return
        if event.outcome == "PENDING":
            self.pending.setdefault(event.approval.id, event)
        else:
            self.ended.setdefault(event.approval.id, event)
        async with self._arrived:
            self._arrived.notify_all()

    async def find(self, approval_id: str) -> DecisionEvent | None:
        """The PENDING decision of ``approval_id``, waiting a moment for one just recorded."""
        if approval_id not in self.pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIND_WAIT_S), self._arrived:
                    await self._arrived.wait_for(lambda: approval_id in self.pending)
        return self.pending.get(approval_id)

    def waiting(self) -> list[DecisionEvent]:
        """PENDING decisions nothing has ended yet."""
        return [p for i, p in self.pending.items() if i not in self.ended]

    def forget(self, now: datetime) -> None:
        """Drop approvals that expired more than :data:`FORGET_AFTER` ago."""
        for approval_id, pending in list(self.pending.items()):
            assert pending.approval
            if now - datetime.fromisoformat(pending.approval.expires_at) > FORGET_AFTER:
                del self.pending[approval_id]
                self.ended.pop(approval_id, None)

    async def expire(self, stream: ControlStream) -> int:
        """Record the expiry of every undecided approval past its time; returns how many."""
        async with stream.locked() as registry:
            now = datetime.now(UTC)
            events = expiries(registry, self.waiting(), now, new_id)
            if events:
                await stream.append(list(events))
            self.forget(now)
        return len(events)


async def approval_command(cmd: ApprovalCommand, principal: Principal, stream: ControlStream) -> ApprovalReply:
    book = stream.approvals
    if book is None:
        raise Refusal("approvals are not served by this control service", Code.UNAVAILABLE)
    now = datetime.now(UTC)
    registry = stream.registry
    if cmd.op == "list":
        org = _org(principal, cmd.org)
        found = [p for p in book.pending.values() if (org is None or p.org == org) and visible(principal, p)
                 and (not cmd.agent_id or p.agent_id == cmd.agent_id)]
        views = [view(p, registry, book.ended.get(p.approval.id if p.approval else ""), now) for p in found]
        if not cmd.closed:
            views = [v for v in views if v.status in ("pending", "granted") and not v.final_outcome]
        return ApprovalReply(ok=True, approvals=sorted(views, key=lambda v: v.requested_at, reverse=True))
    if not cmd.approval_id:
        raise Refusal(f"{cmd.op} needs the approval's id", Code.INVALID)
    pending = await book.find(cmd.approval_id)
    org = _org(principal, cmd.org)
    if pending is None or (org is not None and pending.org != org) or not visible(principal, pending):
        raise Refusal(f"no approval {cmd.approval_id!r} that you can see", Code.NOT_FOUND)
    if cmd.op == "show":
        return ApprovalReply(ok=True, approvals=[view(pending, registry, book.ended.get(cmd.approval_id), now)])
    async with stream.begin(principal) as work:
        event = plan_decision(work.registry, principal, pending, book.ended.get(cmd.approval_id),
                              cmd.op == "grant", cmd.reason, now, work.context.new_id, cmd.request_hash)
        seq = await work.append([event])
    done = "granted" if cmd.op == "grant" else "refused"
    return ApprovalReply(ok=True, change=f"{done} approval {cmd.approval_id}: {pending.agent_id} {pending.action} "
                         f"on {pending.target!r}", control_seq=seq,
                         approvals=[view(pending, stream.registry, book.ended.get(cmd.approval_id), now)])


def _org(principal: Principal, org: str) -> str | None:
    """The org a listing covers: the principal's own (another is refused); any, or ``org``, for the operator."""
    if principal.org is None:
        return org or None
    if org and org != principal.org:
        raise AccessError(f"forbidden: {principal} cannot act in org {org}")
    return principal.org


def notice(pending: DecisionEvent) -> dict[str, Any]:
    """The JSON a webhook gets for a waiting approval: ``text`` for chat incoming webhooks, and the
    approval's fields. It never carries a token."""
    approval = pending.approval
    assert approval
    who = f"{pending.agent_id}'s anchor {pending.anchor}" if approval.approver == "anchor" else "an admin"
    text = (f"Approval needed in org {pending.org}: agent {pending.agent_id} asks to {pending.action}"
            + (f" on {pending.target}" if pending.target else "")
            + f" ({pending.policy}, {pending.rule}). {who} decides before {approval.expires_at}: "
            f"claiim approvals show {approval.id}")
    return {"text": text, "type": "claiim.approval.waiting", "approval_id": approval.id, "org": pending.org,
            "agent_id": pending.agent_id, "anchor": pending.anchor, "action": pending.action,
            "target": pending.target, "context": dict(pending.context), "rule": pending.rule,
            "policy": pending.policy, "approver": approval.approver, "request_hash": approval.request_hash,
            "requested_at": pending.decided_at, "expires_at": approval.expires_at}


class WebhookNotifier:
    def __init__(self, nc: Client, names: Names, stream: ControlStream) -> None:
        self._js = nc.jetstream()
        self._names = names
        self._stream = stream
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        """Set by :meth:`stop`: the loop ends on it too, since nats-py's fetch can swallow a cancellation."""
        self._http: aiohttp.ClientSession | None = None
        self.posted = 0
        self.failed = 0

    async def start(self) -> None:
        durable = self._names.approval_notify_durable
        config = ConsumerConfig(name=durable, durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
                                deliver_policy=DeliverPolicy.NEW, filter_subject=self._names.approvals_wildcard,
                                ack_wait=NOTIFY_ACK_WAIT_S, max_deliver=-1, max_ack_pending=10_000)
        with contextlib.suppress(Exception):  # it exists (made before, or by another replica): keep its position
            await self._js.add_consumer(self._names.decisions_stream, config)
        sub = await self._js.pull_subscribe_bind(durable, stream=self._names.decisions_stream)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_S))
        self._task = asyncio.create_task(self._run(sub))

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=1.0)
        if self._http is not None:
            await self._http.close()

    async def _run(self, sub: JetStreamContext.PullSubscription) -> None:
        while not self._stopping:
            try:
                msgs = await sub.fetch(5, timeout=2.0)
            except TimeoutError:
                continue
            except Exception as e:
                log.warning("approval webhook fetch failed: %r", e)
                await asyncio.sleep(1.0)
                continue
            for msg in msgs:
                await self._handle(msg)

    async def _handle(self, msg: Msg) -> None:
        try:
            event = _event.decode(msg.data)
        except msgspec.DecodeError:
            await msg.ack()
            return
        url = self._stream.registry.webhooks.get(event.org)
        if event.outcome != "PENDING" or not event.approval or not url or expired(event.approval, datetime.now(UTC)):
            await msg.ack()
            return
        problem = await self._post(url, notice(event))
        if problem is None:
            self.posted += 1
            await msg.ack()
            return
        self.failed += 1
        tries = msg.metadata.num_delivered or 1
        delay = min(FIRST_RETRY_S * 2 ** (tries - 1), MAX_RETRY_S)
        log.warning("webhook of org %s refused approval %s (%s); try %d again in %.0f s", event.org,
                    event.approval.id, problem, tries + 1, delay)
        await msg.nak(delay=delay)

    async def _post(self, url: str, body: dict[str, Any]) -> str | None:
        """None when the webhook took it (2xx), else what went wrong."""
        assert self._http is not None
        try:
            async with self._http.post(url, json=body) as response:
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as e:
            return f"{type(e).__name__}: {e}"
