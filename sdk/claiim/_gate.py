"""The agent-side client: ask the gate before acting.

``Gate`` is synchronous (it runs its own event loop in a background thread); ``AsyncGate`` is
for asyncio code. Neither ever returns ALLOW without a recorded decision: when the gate cannot be
reached they raise :class:`GateUnavailableError`.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import msgspec
from claiim_core.names import Names
from claiim_core.schemas import MAX_WAIT_S, CheckRequest, DecisionReply, SkillsReply, SkillsRequest, WaitRequest
from msgspec.structs import replace

from claiim._guard import AsyncGuard, Context, Guard, Target
from claiim._trace import trace_headers
from claiim.errors import GateUnavailableError, ProtocolError, ServiceUnavailableError, UnauthorizedError
from claiim.transport import NatsTransport, Transport, resolve_url

T = TypeVar("T")
ATTEMPT_S = 2.5
"""The longest one attempt waits for its answer (a gate answers within its PubAck timeout, 2 s)."""
FIRST_PAUSE_S = 0.05
MAX_PAUSE_S = 0.5
UNRECORDED = "chron:unavailable"
"""The reason of a DENY whose decision could not be recorded (it has no chron id)."""
CheckResult = DecisionReply
_reply = msgspec.json.Decoder(DecisionReply)
_skills = msgspec.json.Decoder(SkillsReply)
_encode = msgspec.json.Encoder().encode


class AsyncGate:
    def __init__(self, agent_id: str, token: str, url: str | None = None, *,
                 timeout: float = 5.0, namespace: str = "claiim",
                 transport: Transport | None = None) -> None:
        self.agent_id = agent_id
        self._token = token
        self.url = resolve_url(url)
        self.timeout = timeout
        self._subject = Names(namespace).gate_check
        self._skills_subject = Names(namespace).gate_skills
        self._wait_subject = Names(namespace).gate_wait
        self._transport = transport or NatsTransport(self.url, name=f"claiim-agent:{agent_id}", user=agent_id,
                                                     token=token)

    async def check(self, action: str, target: str = "", context: dict[str, str] | None = None,
                    request_id: str | None = None, *, traceparent: str | None = None,
                    wait: float | None = None) -> CheckResult:
        """Ask whether ``action`` on ``target`` is allowed; act only on ``outcome == "ALLOW"``.

        An ``approve`` rule answers PENDING: a person must approve first, and PENDING is never
        permission. With ``wait`` (seconds) the call waits that long for the approval's outcome
        (:meth:`wait`) and returns the ALLOW or DENY that ends it, or the PENDING decision when the time
        is up; without, it returns the PENDING decision at once (``approval_id``, ``expires_at``).

        The check carries the W3C trace context of the current OpenTelemetry span when
        ``opentelemetry-api`` is installed, or ``traceparent`` when given; the decision records its
        trace id (``claiim chron list --trace-id``).

        Every check carries a request id (a random one unless given). When no gate answers (no
        responder, no reply in time, NATS unreachable) or the gate could not record its decision
        (DENY ``chron:unavailable``), the same request is sent again, with the same id, until
        ``timeout`` has passed: any gate replica answers a repeat with the decision recorded the first
        time, so a retry never records twice. Raises :class:`GateUnavailableError` when the time is
        up without an answer (the last ``chron:unavailable`` DENY is returned when that was the
        answer), at once :class:`UnauthorizedError` when NATS refuses the token.
        """
        reply = await self._check(action, target, context, request_id, trace_headers(traceparent))
        if wait and reply.outcome == "PENDING":
            return await self.wait(reply.approval_id, wait)
        return reply

    async def wait(self, approval_id: str, timeout: float) -> CheckResult:
        """Wait up to ``timeout`` seconds for the outcome of approval ``approval_id`` (of a PENDING
        decision of this agent): the ALLOW or DENY that ends it, recorded, as soon as a person decides
        or it expires; the PENDING decision again when the time is up first. A grant is good once: a
        later wait for the same approval gets DENY ``approval:used``. Raises
        :class:`GateUnavailableError` when no gate answers in time."""
        waiting = WaitRequest(agent_id=self.agent_id, token=self._token, approval_id=approval_id,
                              request_id=os.urandom(12).hex())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pause = FIRST_PAUSE_S
        while True:
            hold = max(0.0, min(deadline - loop.time(), MAX_WAIT_S))
            try:
                data = await self._transport.request(self._wait_subject, _encode(replace(waiting, wait=hold)),
                                                     hold + ATTEMPT_S)
                reply = self._decode(data)
                retry = not reply.chron_id and reply.reason.startswith(UNRECORDED)
                if not retry and (reply.outcome != "PENDING" or loop.time() >= deadline):
                    return reply
            except UnauthorizedError:
                raise
            except ServiceUnavailableError as e:
                if loop.time() + pause >= deadline:
                    if isinstance(e, GateUnavailableError):
                        raise
                    raise GateUnavailableError(str(e)) from e
            else:
                if not retry:
                    continue
                if loop.time() + pause >= deadline:
                    return reply
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE_S)

    async def _check(self, action: str, target: str, context: dict[str, str] | None, request_id: str | None,
                     headers: dict[str, str]) -> CheckResult:
        request = CheckRequest(agent_id=self.agent_id, token=self._token, action=action, target=target,
                               context=context or {}, request_id=request_id or os.urandom(12).hex())
        payload = _encode(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        pause = FIRST_PAUSE_S
        while True:
            left = deadline - loop.time()
            try:
                reply = self._decode(await self._transport.request(self._subject, payload, min(left, ATTEMPT_S),
                                                                   headers or None))
                if reply.chron_id or not reply.reason.startswith(UNRECORDED) or loop.time() + pause >= deadline:
                    return reply
            except UnauthorizedError:
                raise
            except ServiceUnavailableError as e:
                if loop.time() + pause >= deadline:
                    if isinstance(e, GateUnavailableError):
                        raise
                    raise GateUnavailableError(str(e)) from e
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE_S)

    def guard(self, action: str, target: Target = "", context: Context = None) -> AsyncGuard:
        """Check ``action`` before a coroutine function or an ``async with`` block runs; anything but
        ALLOW raises :class:`ActionDenied` instead (:mod:`claiim._guard`)."""
        return AsyncGuard(self, action, target, context)

    async def skills(self) -> SkillsReply:
        """What this agent's skills cover now (``reply.covers(action)``): its skill versions and their
        action patterns, empty while it is suspended. Not a decision: nothing is recorded, and only a
        check says whether an action is allowed. Raises :class:`UnauthorizedError` when the token does
        not prove the agent, :class:`GateUnavailableError` when no gate answers within ``timeout``."""
        payload = _encode(SkillsRequest(agent_id=self.agent_id, token=self._token))
        try:
            data = await self._transport.request(self._skills_subject, payload, self.timeout)
        except UnauthorizedError:
            raise
        except ServiceUnavailableError as e:
            raise GateUnavailableError(str(e)) from e
        try:
            reply = _skills.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ProtocolError(f"the gate's answer does not decode: {e}") from e
        if not reply.ok:
            raise UnauthorizedError(reply.error or "the gate refused this agent's token")
        return reply

    @staticmethod
    def _decode(data: bytes) -> DecisionReply:
        try:
            return _reply.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ProtocolError(f"the gate's answer does not decode: {e}") from e

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncGate:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Gate:
    """Synchronous client: ``Gate(agent_id=..., token=...).check(action=..., target=...)``."""

    def __init__(self, agent_id: str, token: str, url: str | None = None, *,
                 timeout: float = 5.0, namespace: str = "claiim",
                 transport: Transport | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="claiim-gate",
                                        daemon=True)
        self._thread.start()
        self._gate = AsyncGate(agent_id, token, url, timeout=timeout, namespace=namespace,
                               transport=transport)
        self.agent_id = agent_id
        self.url = self._gate.url

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def check(self, action: str, target: str = "", context: dict[str, str] | None = None,
              request_id: str | None = None, *, traceparent: str | None = None,
              wait: float | None = None) -> CheckResult:
        """Ask whether ``action`` on ``target`` is allowed; act only on ``outcome == "ALLOW"``, never on
        PENDING (:meth:`AsyncGate.check`; the trace context is the calling thread's)."""
        headers = trace_headers(traceparent)  # here: the current span is this thread's, not the loop's
        reply = self._run(self._gate._check(action, target, context, request_id, headers))
        if wait and reply.outcome == "PENDING":
            return self.wait(reply.approval_id, wait)
        return reply

    def wait(self, approval_id: str, timeout: float) -> CheckResult:
        """Wait for an approval's outcome (:meth:`AsyncGate.wait`)."""
        return self._run(self._gate.wait(approval_id, timeout))

    def guard(self, action: str, target: Target = "", context: Context = None) -> Guard:
        """Check ``action`` before a function or a ``with`` block runs; anything but ALLOW raises
        :class:`ActionDenied` instead (:mod:`claiim._guard`)."""
        return Guard(self, action, target, context)

    def skills(self) -> SkillsReply:
        """What this agent's skills cover now (:meth:`AsyncGate.skills`)."""
        return self._run(self._gate.skills())

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._gate.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
