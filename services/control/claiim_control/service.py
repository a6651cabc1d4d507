"""The admin API over NATS request/reply (``<ns>.admin.apply``).

A command is checked against the live registry (the same projection the gate uses), planned by
the pure core (:func:`claiim_core.bundle.plan_bundle`) and appended to the control stream with
``Nats-Expected-Last-Subject-Sequence``, so that of two conflicting concurrent commands one wins
and the other gets a conflict error. The reply is sent once the projection includes the new
events, so a decision that follows sees them.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable

import msgspec
from claiim_core.bundle import BundleError, PlanContext, parse_bundle, plan_bundle
from claiim_core.canonical import canonical_bytes
from claiim_core.commands import CommandError, plan_agent_command
from claiim_core.events import ControlEvent, aggregate
from claiim_core.explain import explain
from claiim_core.ids import chron_id, rfc3339
from claiim_core.names import Names
from claiim_core.schemas import (
    AgentCommand,
    AgentCommandReply,
    ApplyReply,
    ApplyRequest,
    PolicyVersionInfo,
    RegistryQuery,
    RegistryQueryReply,
)
from claiim_core.tokens import format_token
from claiim_runtime.follower import RegistryFollower
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import APIError

log = logging.getLogger(__name__)
_decoder = msgspec.json.Decoder(ApplyRequest)
_agent_decoder = msgspec.json.Decoder(AgentCommand)
_query_decoder = msgspec.json.Decoder(RegistryQuery)
Reply = ApplyReply | AgentCommandReply | RegistryQueryReply
_encode = msgspec.json.Encoder().encode
WRONG_LAST_SEQUENCE = 10071


def _new_id() -> str:
    return chron_id(time.time_ns() // 1_000_000, os.urandom(10))


class ControlService:
    def __init__(self, nc: Client, js: JetStreamContext, names: Names, follower: RegistryFollower,
                 token_secret: bytes, admin_token: str) -> None:
        self._nc = nc
        self._js = js
        self._names = names
        self._follower = follower
        self._secret = token_secret
        self._admin_token = admin_token
        self._lock = asyncio.Lock()
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        handlers: list[tuple[str, Callable[[bytes], Awaitable[Reply]], Callable[[str], Reply]]] = [
            (self._names.admin_apply, self.apply, lambda e: ApplyReply(ok=False, error=e)),
            (self._names.admin_agent, self.agent_command, lambda e: AgentCommandReply(ok=False, error=e)),
            (self._names.admin_query, self.query, lambda e: RegistryQueryReply(ok=False, error=e)),
        ]
        for subject, handle, failed in handlers:
            cb = _responder(handle, failed)
            self._subs.append(await self._nc.subscribe(subject, queue=self._names.admin_queue, cb=cb))

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()

    async def query(self, data: bytes) -> RegistryQueryReply:
        try:
            q = _query_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            return RegistryQueryReply(ok=False, error=f"malformed request: {e}")
        if not self._authorized(q.admin_token):
            return RegistryQueryReply(ok=False, error="unauthorized: bad admin token")
        await self._follower.wait_caught_up()
        registry = self._follower.registry
        if q.op == "explain":
            verdict, steps = explain(registry, q.agent_id, q.action)
            if verdict is None:
                return RegistryQueryReply(ok=True, outcome="DENY", reason="agent:unknown", steps=steps,
                                          control_seq=registry.last_seq)
            return RegistryQueryReply(ok=True, outcome=verdict.outcome, reason=verdict.reason, rule=verdict.rule,
                                      steps=steps, control_seq=registry.last_seq)
        versions = registry.policies.get((q.org, q.name))
        if not versions:
            return RegistryQueryReply(ok=False, error=f"no policy {q.name!r} in org {q.org!r}")
        return RegistryQueryReply(ok=True, control_seq=registry.last_seq, versions=[
            PolicyVersionInfo(label=v.label, version=v.version, description=v.description,
                              skill=v.document.skill, allow=v.document.allow, deny=v.document.deny,
                              content_hash=v.content_hash) for v in versions])

    def _context(self) -> PlanContext:
        return PlanContext(actor="admin", now=rfc3339(time.time_ns() // 1000), new_id=_new_id,
                           new_token=lambda: format_token(os.urandom(32)), token_secret=self._secret)

    def _authorized(self, admin_token: str) -> bool:
        return hmac.compare_digest(admin_token.encode(), self._admin_token.encode())

    async def agent_command(self, data: bytes) -> AgentCommandReply:
        try:
            cmd = _agent_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            return AgentCommandReply(ok=False, error=f"malformed request: {e}")
        if not self._authorized(cmd.admin_token):
            return AgentCommandReply(ok=False, error="unauthorized: bad admin token")
        async with self._lock:
            await self._follower.wait_caught_up()
            try:
                event, token = plan_agent_command(self._follower.registry, cmd, self._context())
            except CommandError as e:
                return AgentCommandReply(ok=False, error=str(e))
            change = f"{cmd.op} {cmd.agent_id}"
            try:
                seq = await self._append([event])
            except AppendError as e:
                return AgentCommandReply(ok=False, error=str(e))
            return AgentCommandReply(ok=True, change=change, token=token, control_seq=seq)

    async def apply(self, data: bytes) -> ApplyReply:
        try:
            request = _decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            return ApplyReply(ok=False, error=f"malformed request: {e}")
        if not self._authorized(request.admin_token):
            return ApplyReply(ok=False, error="unauthorized: bad admin token")
        try:
            bundle = parse_bundle(request.bundle)
        except BundleError as e:
            return ApplyReply(ok=False, error="invalid bundle: " + "; ".join(e.problems))
        async with self._lock:
            await self._follower.wait_caught_up()
            try:
                plan = plan_bundle(self._follower.registry, bundle, self._context())
            except BundleError as e:
                return ApplyReply(ok=False, error="invalid bundle: " + "; ".join(e.problems))
            if request.dry_run or plan.unchanged:
                return ApplyReply(ok=True, changes=plan.changes,
                                  control_seq=self._follower.registry.last_seq)
            try:
                seq = await self._append(plan.events)
            except AppendError as e:
                done = plan.changes[:e.appended]
                tokens = {k: v for k, v in plan.tokens.items() if f"registered agent {k}" in done}
                return ApplyReply(ok=False, changes=done, tokens=tokens,
                                  error=f"{e} (applied before: {done})")
            return ApplyReply(ok=True, changes=plan.changes, tokens=plan.tokens, control_seq=seq)

    async def _append(self, events: list[ControlEvent]) -> int:
        """Append ``events`` in order, each expecting its subject's last sequence; returns the
        last sequence once the projection includes it. Raises :class:`AppendError`."""
        expected = dict(self._follower.registry.subject_seq)
        seq = self._follower.registry.last_seq
        for n, event in enumerate(events):
            kind, name = aggregate(event)
            subject = self._names.control_subject(event.org, kind, name)
            headers = {"Nats-Msg-Id": event.event_id,
                       "Nats-Expected-Last-Subject-Sequence": str(expected.get(subject, 0))}
            try:
                ack = await self._js.publish(subject, canonical_bytes(event),
                                             stream=self._names.control_stream, headers=headers)
            except APIError as e:
                why = ("conflict: the registry changed concurrently; re-run the command"
                       if e.err_code == WRONG_LAST_SEQUENCE else f"control stream refused: {e}")
                raise AppendError(why, n) from e
            expected[subject] = seq = ack.seq
        await self._follower.wait_for(seq)
        return seq


def _responder(handle: Callable[[bytes], Awaitable[Reply]],
               failed: Callable[[str], Reply]) -> Callable[[Msg], Awaitable[None]]:
    """A subscription callback that always answers: a handler that raises gets ``failed(...)``."""

    async def respond(msg: Msg) -> None:
        try:
            reply = await handle(msg.data)
        except Exception as e:
            log.exception("admin request on %s failed", msg.subject)
            reply = failed(f"internal error: {type(e).__name__}: {e}")
        if msg.reply:
            await msg.respond(_encode(reply))

    return respond


class AppendError(RuntimeError):
    """The control stream refused an event; ``appended`` events before it were stored."""

    def __init__(self, message: str, appended: int) -> None:
        super().__init__(message)
        self.appended = appended
