"""Bounded stops: every step of a stop gets what is left of one deadline, so that a service stops
in time even when NATS or PostgreSQL are gone, and a failing step never keeps the next from
running."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
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
        began = time.monotonic()
        try:
            await asyncio.wait_for(awaitable, self.left())
            log.debug("stopping: %s took %.3f s", what, time.monotonic() - began)
        except TimeoutError:
            log.warning("stopping: %s did not finish in time; going on", what)
        except Exception as e:
            log.warning("stopping: %s failed: %r", what, e)


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` in a new event loop; SIGINT and SIGTERM set ``stop``. Once it returns, both are
    ignored until the process exits: a second signal (a supervisor or a terminal repeating itself)
    must not turn a clean exit into death by signal.

    Not the loop's own signal handlers: removing one restores the default action for a moment, and a
    signal in that moment killed the process. Here a signal wakes the loop through a socket (the
    wakeup fd, whichever thread the signal lands on) and is ignored by a single replacement."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        wake, woken = socket.socketpair()
        for end in (wake, woken):
            end.setblocking(False)

        def on_wake() -> None:
            with contextlib.suppress(OSError):
                woken.recv(4096)
            stop.set()

        loop.add_reader(woken.fileno(), on_wake)
        previous = signal.set_wakeup_fd(wake.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _woken_by_fd)
        try:
            await main(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
            signal.set_wakeup_fd(previous)
            loop.remove_reader(woken.fileno())
            wake.close()
            woken.close()

    asyncio.run(runner())


def _woken_by_fd(_signum: int, _frame: object) -> None:
    """The Python-level handler: the wakeup fd has done the work."""
