"""Service processes: N ``claiim serve <service>`` processes, supervised.

One Python process works on one core. The gate scales across cores by running several processes
that share the check subject's queue group (NATS spreads requests over them); ``claiim up`` also
runs the OCSF feed in a process of its own, so that rendering and publishing every decision
again does not take Chron's time. Each worker is a plain ``claiim serve <service>`` with the
supervisor's settings in its environment, so it behaves exactly as the service deployed on its
own.

The supervisor starts them and waits until each says it serves; starts a worker again (after
:data:`RESTART_DELAY_S`) when it exits while the supervisor is not stopping; and stops them with
SIGTERM, then SIGKILL after :data:`STOP_WAIT_S`. Workers watch their supervisor
(``CLAIIM_SUPERVISOR_PID``): a worker whose supervisor is gone (killed with SIGKILL) stops by
itself within a second, so none is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from claiim_runtime.settings import Settings

from claiim_server.servers import StackError

log = logging.getLogger(__name__)

READY_S = 30.0
"""How long a worker may take to connect and say it serves."""
STOP_WAIT_S = 3.0
"""How long a worker may take to stop after SIGTERM (its own stop is bounded by 2 s)."""
RESTART_DELAY_S = 1.0
SERVING = b"claiim serving"
SUPERVISOR_ENV = "CLAIIM_SUPERVISOR_PID"


def serve_env(settings: Settings) -> dict[str, str]:
    """The environment of a ``claiim serve`` process run with ``settings``: this process's, without
    its CLAIIM_* variables, plus the settings'."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CLAIIM_")}, **settings.env()}


def default_workers() -> int:
    """One gate process per two cores, between 1 and 4: the other cores serve NATS, PostgreSQL,
    Chron and the callers."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))


class Workers:
    """``count`` processes of ``service``. With ``http_ports`` (one per worker), worker ``i`` serves its
    metrics and health on ``http_ports[i]``, across restarts too (:attr:`http_urls`)."""

    def __init__(self, settings: Settings, service: str, count: int, http_ports: list[int] | None = None) -> None:
        if count < 1:
            raise ValueError(f"the {service} needs at least one worker")
        self._service = service
        self._env = {**serve_env(settings), SUPERVISOR_ENV: str(os.getpid())}
        if http_ports is not None and len(http_ports) != count:
            raise ValueError("one HTTP port per worker")
        self._http_ports = http_ports
        self.http_urls = [f"http://{settings.http_host}:{port}" for port in http_ports or []]
        self._count = count
        self._processes: list[asyncio.subprocess.Process | None] = [None] * count
        self._watchers: list[asyncio.Task[None]] = []
        self._relays: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p is not None and p.returncode is None]

    async def start(self) -> None:
        """Start every worker and wait until each serves; raises :class:`StackError` if one cannot."""
        try:
            await asyncio.gather(*(self._start(i) for i in range(self._count)))
        except BaseException:
            await self.stop()
            raise
        self._watchers = [asyncio.create_task(self._watch(i)) for i in range(self._count)]

    async def _start(self, i: int) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "claiim_server", "--env-file", os.devnull, "serve", self._service,
            env=self._env if self._http_ports is None else {**self._env, "CLAIIM_HTTP_PORT": str(self._http_ports[i])},
            stdout=asyncio.subprocess.PIPE)
        self._processes[i] = process
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), READY_S)
        except TimeoutError:
            line = b""
        if not line.startswith(SERVING):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise StackError(f"{self._service} worker {i + 1} did not start within {READY_S:g} s "
                             f"(exit code {process.returncode}); its log is above")
        relay = asyncio.create_task(_relay(process.stdout))
        self._relays.add(relay)
        relay.add_done_callback(self._relays.discard)

    async def _watch(self, i: int) -> None:
        """Start worker ``i`` again whenever it exits while this supervisor runs."""
        while not self._stopping:
            process = self._processes[i]
            assert process is not None
            code = await process.wait()
            if self._stopping:
                return
            log.warning("%s worker %d (pid %d) exited with code %s: starting it again", self._service, i + 1,
                        process.pid, code)
            await asyncio.sleep(RESTART_DELAY_S)
            try:
                await self._start(i)
            except StackError as e:
                log.error("%s", e)

    async def stop(self) -> None:
        """SIGTERM to every worker, SIGKILL to those still running after :data:`STOP_WAIT_S`."""
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        running = [p for p in self._processes if p is not None and p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        waits = [asyncio.create_task(p.wait()) for p in running]
        if waits:
            await asyncio.wait(waits, timeout=STOP_WAIT_S)
        for process in running:
            if process.returncode is None:
                log.warning("%s worker pid %d did not stop within %g s: killing it", self._service, process.pid,
                            STOP_WAIT_S)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


async def _relay(stream: asyncio.StreamReader) -> None:
    """Copy what a worker prints after it serves to this process's output."""
    while line := await stream.readline():
        sys.stdout.buffer.write(line)
        sys.stdout.flush()


async def supervisor_gone(stop: asyncio.Event) -> None:
    """Set ``stop`` when the supervisor named by ``CLAIIM_SUPERVISOR_PID`` is no longer this
    process's parent (it died, and this process was handed to another). Returns at once without it."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor:
        return
    while not stop.is_set():
        if os.getppid() != int(supervisor):
            log.warning("the supervisor (pid %s) is gone: stopping", supervisor)
            stop.set()
            return
        await asyncio.sleep(0.5)
