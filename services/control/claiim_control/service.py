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

import msgspec
from claiim_core.bundle import BundleError, PlanContext, parse_bundle, plan_bundle
from claiim_core.canonical import canonical_bytes
from claiim_core.events import ControlEvent, aggregate
from claiim_core.ids import chron_id, rfc3339
from claiim_core.names import Names
from claiim_core.schemas import ApplyReply, ApplyRequest
from claiim_core.tokens import format_token
from claiim_runtime.follower import RegistryFollower
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import APIError

log = logging.getLogger(__name__)
_decoder = msgspec.json.Decoder(ApplyRequest)
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
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(
            self._names.admin_apply, queue=self._names.admin_queue, cb=self._on_request
        )

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _on_request(self, msg: Msg) -> None:
        try:
            reply = await self.apply(msg.data)
        except Exception as e:
            log.exception("admin apply failed")
            reply = ApplyReply(ok=False, error=f"internal error: {type(e).__name__}: {e}")
        if msg.reply:
            await msg.respond(_encode(reply))

    async def apply(self, data: bytes) -> ApplyReply:
        try:
            request = _decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            return ApplyReply(ok=False, error=f"malformed request: {e}")
        if not hmac.compare_digest(request.admin_token.encode(), self._admin_token.encode()):
            return ApplyReply(ok=False, error="unauthorized: bad admin token")
        try:
            bundle = parse_bundle(request.bundle)
        except BundleError as e:
            return ApplyReply(ok=False, error="invalid bundle: " + "; ".join(e.problems))
        async with self._lock:
            await self._follower.wait_caught_up()
            ctx = PlanContext(actor="admin", now=rfc3339(time.time_ns() // 1000), new_id=_new_id,
                              new_token=lambda: format_token(os.urandom(32)),
                              token_secret=self._secret)
            try:
                plan = plan_bundle(self._follower.registry, bundle, ctx)
            except BundleError as e:
                return ApplyReply(ok=False, error="invalid bundle: " + "; ".join(e.problems))
            if request.dry_run or plan.unchanged:
                return ApplyReply(ok=True, changes=plan.changes,
                                  control_seq=self._follower.registry.last_seq)
            return await self._append(plan.events, plan.changes, plan.tokens)

    async def _append(self, events: list[ControlEvent], changes: list[str],
                      tokens: dict[str, str]) -> ApplyReply:
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
                done = changes[:n]
                why = ("conflict: the registry changed concurrently; re-run the command"
                       if e.err_code == WRONG_LAST_SEQUENCE else f"control stream refused: {e}")
                return ApplyReply(ok=False, changes=done, error=f"{why} (applied before: {done})",
                                  tokens={k: v for k, v in tokens.items() if any(k in c for c in done)})
            expected[subject] = seq = ack.seq
        await self._follower.wait_for(seq)
        return ApplyReply(ok=True, changes=changes, tokens=tokens, control_seq=seq)
