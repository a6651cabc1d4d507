"""Bounded stops: every step of a stop gets what is left of one deadline, so that a service stops
in time even when NATS or PostgreSQL are gone, and a failing step never keeps the next from
running."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)
MOMENT_S = 0.05
"""What a step gets even when the deadline has passed: enough for work that needs no network."""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds

    def left(self) -> float:
        return max(MOMENT_S, self._at - time.monotonic())

    async def step(self, what: str, awaitable: Awaitable[object]) -> None:
        """Await ``awaitable`` until the deadline; a timeout or an error is logged, not raised."""
        try:
            await asyncio.wait_for(awaitable, self.left())
        except TimeoutError:
            log.warning("stopping: %s did not finish in time; going on", what)
        except Exception as e:
            log.warning("stopping: %s failed: %r", what, e)


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` in a new event loop; SIGINT and SIGTERM set ``stop``. Once it returns, both are
    ignored until the process exits: a second signal (a supervisor or a terminal repeating itself)
    must not turn a clean exit into death by signal."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await main(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):  # before the loop's close restores the defaults
                loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_IGN)

    asyncio.run(runner())
