"""The admin API over NATS request/reply (``<ns>.admin.*``): the thin entry point.

Every request carries an admin token. The service decodes the request, authenticates the token
against the live registry (the same projection the gate uses) once it has caught up, and hands
the request to the handler of its type (:mod:`claiim_control.handlers`), which authorizes it by
role and org (:mod:`claiim_core.access`), plans the change with the pure core and commits it in a
unit of work (:mod:`claiim_control.unit`).

Every request gets an answer of its reply type, with ``ok``, and on a refusal ``code`` (a
:class:`claiim_core.codes.Code`) and ``error``: a malformed request is ``invalid``, a bad token
``unauthenticated``, a handler's :class:`~claiim_core.codes.Refusal` its own code, and anything
else ``internal`` (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import msgspec
from claiim_core.access import authenticate
from claiim_core.bundle import BundleError
from claiim_core.checkpoint import Signer
from claiim_core.codes import Code, Refusal
from claiim_core.names import Names
from claiim_core.proposals import DEFAULT_TTL
from claiim_core.schemas import (
    AdminCommand,
    AgentCommand,
    AgentCommandReply,
    ApplyReply,
    ApplyRequest,
    ApprovalCommand,
    ApprovalReply,
    OrgCommand,
    ProposalCommand,
    RegistryQuery,
    RegistryQueryReply,
)
from claiim_runtime.follower import RegistryFollower
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from claiim_control import handlers
from claiim_control.approvals import ApprovalBook, WebhookNotifier, approval_command
from claiim_control.handlers import Handler, Reply
from claiim_control.unit import ControlStream

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode
EXPIRY_SWEEP_S = 30.0
"""How often pending proposals past their expiry are recorded as expired."""
APPROVAL_SWEEP_S = 2.0
"""How often undecided approvals past their expiry (and its grace) are recorded as expired."""


class Route(msgspec.Struct, frozen=True):
    request: type[Any]
    handler: Handler
    reply: type[Reply]


ROUTES: dict[str, Route] = {
    "apply": Route(ApplyRequest, handlers.apply, ApplyReply),
    "agent": Route(AgentCommand, handlers.agent_command, AgentCommandReply),
    "admins": Route(AdminCommand, handlers.admin_command, AgentCommandReply),
    "org": Route(OrgCommand, handlers.org_command, AgentCommandReply),
    "proposal": Route(ProposalCommand, handlers.proposal_command, AgentCommandReply),
    "approval": Route(ApprovalCommand, approval_command, ApprovalReply),
    "query": Route(RegistryQuery, handlers.query, RegistryQueryReply),
}
"""The admin subjects (``<ns>.admin.<name>``) and what answers each."""


def refused(route: Route, error: Refusal) -> Reply:
    """The reply of ``route``'s type that refuses with ``error``."""
    if route.reply is ApplyReply:
        return ApplyReply(ok=False, code=error.code, error=str(error),
                          problems=error.problems if isinstance(error, BundleError) else [])
    return route.reply(ok=False, code=error.code, error=str(error))


class ControlService:
    def __init__(self, nc: Client, js: JetStreamContext, names: Names, follower: RegistryFollower,
                 token_secret: bytes, operator_token: str, signer: Signer,
                 proposal_ttl: timedelta = DEFAULT_TTL) -> None:
        self._nc = nc
        self._names = names
        self._follower = follower
        self._secret = token_secret
        self._operator_token = operator_token
        self.stream = ControlStream(js, names, follower, signer, proposal_ttl, token_secret)
        self.approvals = ApprovalBook(js, names)
        self.stream.approvals = self.approvals
        self.notifier = WebhookNotifier(nc, names, self.stream)
        self._subs: list[Subscription] = []
        self._expiry: asyncio.Task[None] | None = None
        self._approval_expiry: asyncio.Task[None] | None = None
        self.answered: Counter[tuple[str, str]] = Counter()
        """Requests answered, by subject name (apply, agent, ...) and result (ok, or the refusal's code)."""

    async def start(self) -> None:
        await self.approvals.start()
        await self.notifier.start()
        for name in ROUTES:
            subject = getattr(self._names, f"admin_{name}")  # Names.admin_apply, ...
            self._subs.append(await self._nc.subscribe(subject, queue=self._names.admin_queue,
                                                       cb=self._responder(name)))
        self._expiry = asyncio.create_task(self._sweep("proposal", EXPIRY_SWEEP_S, self.expire_proposals))
        self._approval_expiry = asyncio.create_task(self._sweep("approval", APPROVAL_SWEEP_S, self.expire_approvals))

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        for task in (self._expiry, self._approval_expiry):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.notifier.stop()
        await self.approvals.stop()

    async def answer(self, name: str, data: bytes) -> Reply:
        """The reply to one request on ``<ns>.admin.<name>``; never raises."""
        route = ROUTES[name]
        try:
            try:
                request = msgspec.json.decode(data, type=route.request)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                raise Refusal(f"malformed request: {e}", Code.INVALID) from e
            await self._follower.wait_caught_up()
            principal = authenticate(self._follower.registry, self._secret, self._operator_token, request.admin_token)
            reply = await route.handler(request, principal, self.stream)
        except Refusal as e:
            reply = refused(route, e)
        except Exception as e:
            log.exception("admin request on %s failed", name)
            reply = refused(route, Refusal(f"internal error: {type(e).__name__}: {e}", Code.INTERNAL))
        self.answered[(name, "ok" if reply.ok else reply.code)] += 1
        return reply

    def metrics(self) -> list[Metric]:
        commands = CounterMetricFamily("claiim_control_commands", "Admin requests answered, by kind and result "
                                       "(ok, or the refusal's code)", labels=["kind", "result"])
        for (kind, result), count in sorted(self.answered.items()):
            commands.add_metric([kind, result], count)
        pending = sum(1 for p in self.stream.registry.proposals.values() if p.status == "pending")
        waiting = sum(1 for v in self.approvals.waiting() if (v.org, v.approval.id if v.approval else "")
                      not in self.stream.registry.approvals)
        return [commands, GaugeMetricFamily("claiim_control_proposals_pending", "Proposals waiting for approvals",
                                            pending),
                GaugeMetricFamily("claiim_control_approvals_waiting", "Approvals of single actions nobody has "
                                  "decided yet (expired ones included until their expiry is recorded)", waiting),
                CounterMetricFamily("claiim_control_webhook_posts", "Approval notices the org webhooks took",
                                    self.notifier.posted),
                CounterMetricFamily("claiim_control_webhook_failures", "Approval notice POSTs that failed (each is "
                                    "retried)", self.notifier.failed)]

    def _responder(self, name: str) -> Callable[[Msg], Awaitable[None]]:
        async def respond(msg: Msg) -> None:
            reply = await self.answer(name, msg.data)
            if msg.reply:
                await msg.respond(_encode(reply))

        return respond

    async def expire_proposals(self) -> int:
        """Record the expiry of every pending proposal past its time; returns how many."""
        return await self.stream.expire()

    async def expire_approvals(self) -> int:
        """Record the expiry of every undecided approval past its time; returns how many."""
        return await self.approvals.expire(self.stream)

    @staticmethod
    async def _sweep(what: str, every: float, sweep: Callable[[], Awaitable[int]]) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await sweep()
            except Exception:
                log.exception("%s expiry sweep failed", what)
