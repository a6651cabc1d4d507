"""The unit of work of every change: one at a time, against an up-to-date registry, committed as a
proposal or appended with the sequences it was planned against.

::

    async with unit.begin(principal) as work:
        event, token = plan_agent_command(work.registry, org, cmd, work.context)
        seq, proposal = await work.commit(org, [event], [change])

Appending uses ``Nats-Expected-Last-Subject-Sequence`` for each event: of two control replicas
changing the same aggregate concurrently one wins and the other gets a ``conflict``. Every event
names the admin who caused it and is signed with the control key to follow exactly that sequence
(:func:`claiim_core.eventauth.seal_control`). A commit returns once the projection includes the new
events, so a decision that follows sees them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from claiim_core.access import Principal
from claiim_core.bundle import PlanContext
from claiim_core.checkpoint import Signer
from claiim_core.codes import Code, Refusal
from claiim_core.eventauth import seal_control
from claiim_core.events import ChangeEvent, ControlEvent, ProposalCreated, aggregate
from claiim_core.ids import chron_id, rfc3339
from claiim_core.names import Names
from claiim_core.proposals import expirations, propose, widens
from claiim_core.registry import Registry
from claiim_core.tokens import Kind, format_token
from claiim_runtime.conditions import CelConditions
from claiim_runtime.follower import RegistryFollower
from nats.js import JetStreamContext
from nats.js.errors import APIError

if TYPE_CHECKING:
    from claiim_control.approvals import ApprovalBook

WRONG_LAST_SEQUENCE = 10071


def new_id() -> str:
    return chron_id(time.time_ns() // 1_000_000, os.urandom(10))


def _new_token(kind: Kind, org: str) -> str:
    return format_token(kind, org, os.urandom(32))


class AppendError(Refusal):
    """The control stream refused an event; ``appended`` events before it were stored."""

    def __init__(self, message: str, code: Code, appended: int) -> None:
        super().__init__(message, code)
        self.appended = appended


class ControlStream:
    """Appends control events, one unit of work at a time."""

    def __init__(self, js: JetStreamContext, names: Names, follower: RegistryFollower, signer: Signer,
                 proposal_ttl: timedelta, token_secret: bytes) -> None:
        self._js = js
        self._names = names
        self._follower = follower
        self._signer = signer
        self._ttl = proposal_ttl
        self._secret = token_secret
        self.conditions = CelConditions()
        """Checks rules' conditions when a policy is published, and evaluates them for ``explain``."""
        self._lock = asyncio.Lock()
        self.approvals: ApprovalBook | None = None
        """The approvals agents wait for (set by the service that follows them)."""

    @property
    def registry(self) -> Registry:
        return self._follower.registry

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[Registry]:
        """No other change in progress, and the registry caught up, until it ends."""
        async with self._lock:
            await self._follower.wait_caught_up()
            yield self.registry

    @asynccontextmanager
    async def begin(self, principal: Principal) -> AsyncIterator[Work]:
        """The one change in progress: the lock held and the registry caught up until it ends."""
        async with self._lock:
            await self._follower.wait_caught_up()
            context = PlanContext(actor=principal.name, now=rfc3339(time.time_ns() // 1000), new_id=new_id,
                                  new_token=_new_token, token_secret=self._secret, conditions=self.conditions)
            yield Work(self, principal, context)

    async def append(self, events: list[ControlEvent], expected: dict[str, int] | None = None) -> int:
        """Append ``events`` in order, each expecting its subject's last sequence (as in the registry, or
        in ``expected``); returns the last sequence once the projection includes it. Raises
        :class:`AppendError`."""
        expected = {**self.registry.subject_seq, **(expected or {})}
        seq = self.registry.last_seq
        for n, event in enumerate(events):
            kind, name = aggregate(event)
            subject = self._names.control_subject(event.org, kind, name)
            prev = expected.get(subject, 0)
            headers = {"Nats-Msg-Id": event.event_id, "Nats-Expected-Last-Subject-Sequence": str(prev)}
            try:
                ack = await self._js.publish(subject, seal_control(event, prev, self._signer),
                                             stream=self._names.control_stream, headers=headers)
            except APIError as e:
                if e.err_code == WRONG_LAST_SEQUENCE:
                    raise AppendError("conflict: the registry changed concurrently; re-run the command",
                                      Code.CONFLICT, n) from e
                raise AppendError(f"control stream refused: {e}", Code.UNAVAILABLE, n) from e
            expected[subject] = seq = ack.seq
        await self._follower.wait_for(seq)
        return seq

    async def expire(self) -> int:
        """Record the expiry of every pending proposal past its time; returns how many."""
        async with self.locked() as registry:
            expired = expirations(registry, datetime.now(UTC), new_id)
            if expired:
                await self.append(list(expired))
        return len(expired)

    def proposal(self, principal: Principal, org: str, events: list[ChangeEvent],
                 summary: list[str]) -> ProposalCreated:
        return propose(self.registry, org, principal.name, events, summary, proposal_id=new_id(),
                       now=datetime.now(UTC), names=self._names, ttl=self._ttl)


@dataclass
class Work:
    """One change: plan it against :attr:`registry` with :attr:`context`, then :meth:`commit` it."""

    stream: ControlStream
    principal: Principal
    context: PlanContext

    @property
    def registry(self) -> Registry:
        return self.stream.registry

    def proposes(self, events: list[ChangeEvent]) -> bool:
        """Whether :meth:`commit` would store ``events`` as a proposal rather than append them."""
        return self.principal.org is not None and widens(events)

    async def commit(self, org: str, events: list[ChangeEvent],
                     summary: list[str]) -> tuple[int, ProposalCreated | None]:
        """Append ``events`` now or, when an org admin widens what agents may do, store them as a
        proposal. The operator's changes apply at once (break-glass, recorded with its name)."""
        if not self.proposes(events):
            return await self.stream.append(list(events)), None
        proposal = self.stream.proposal(self.principal, org, events, summary)
        return await self.stream.append([proposal]), proposal

    async def append(self, events: list[ControlEvent], expected: dict[str, int] | None = None) -> int:
        return await self.stream.append(events, expected)
