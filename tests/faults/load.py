"""Agents under load: each asks the gate through the SDK at a steady pace, one check at a time, every check
with a request id of its own, and every outcome (answer or error, and how long it took) is kept."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from dataclasses import dataclass

from claiim import AsyncGate
from claiim.errors import ClaiimError

ACTIONS = {"deploy-bot": ("deploy:staging", "deploy:production"), "review-bot": ("pr:comment", "pr:merge")}
"""An action the demo policies allow, and one they deny, for each demo agent."""
TIMEOUT_S = 5.0
"""The SDK's deadline for one check (its default)."""


@dataclass(frozen=True)
class Record:
    request_id: str
    sent: float
    """When the check was asked (monotonic)."""
    took: float
    outcome: str
    """ALLOW, DENY, or "" when the check raised."""
    chron_id: str
    reason: str
    error: str
    """The exception's class name when the check raised, else ""."""

    @property
    def answered(self) -> float:
        return self.sent + self.took


class Load:
    def __init__(self, url: str, namespace: str, tokens: dict[str, str], *, agents: int | None = None,
                 rate: float | None = None) -> None:
        self.agents = agents or int(os.environ.get("CLAIIM_FAULT_AGENTS", "16"))
        self.rate = rate or float(os.environ.get("CLAIIM_FAULT_RATE", "200"))
        names = itertools.cycle(sorted(ACTIONS))
        self._gates = [AsyncGate(agent, tokens[agent], url, namespace=namespace, timeout=TIMEOUT_S)
                       for agent in itertools.islice(names, self.agents)]
        self.records: list[Record] = []
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._agent(i, gate)) for i, gate in enumerate(self._gates)]

    async def stop(self) -> None:
        """Stop asking; checks under way finish (each is bounded by the SDK's deadline)."""
        self._stopping.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), TIMEOUT_S + 5)
        for gate in self._gates:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(gate.close(), 5)

    async def _agent(self, index: int, gate: AsyncGate) -> None:
        interval = self.agents / self.rate
        allowed, denied = ACTIONS[gate.agent_id]
        due = time.monotonic() + interval * index / self.agents
        for n in itertools.count():
            if self._stopping.is_set():
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due = max(due + interval, time.monotonic())
            request_id = f"{index}-{n}-{os.urandom(4).hex()}"
            sent = time.monotonic()
            try:
                reply = await gate.check(action=denied if n % 4 == 3 else allowed, target="api-v2",
                                         request_id=request_id)
            except ClaiimError as e:
                self.records.append(Record(request_id, sent, time.monotonic() - sent, "", "", str(e),
                                           type(e).__name__))
                continue
            self.records.append(Record(request_id, sent, time.monotonic() - sent, reply.outcome, reply.chron_id,
                                       reply.reason, ""))
