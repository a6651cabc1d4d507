"""Each claiim process's own small HTTP endpoint: ``/metrics`` (Prometheus text), ``/healthz``
(the process is alive: always 200) and ``/readyz`` (it can do its job: 200, or 503 with what is
wrong, one problem a line).

Readiness is a list of checks, each an async callable returning the problems it sees (empty: fine);
a check that raises or takes longer than :data:`CHECK_S` counts as a problem. Every service adds the
checks of what it needs: its NATS connection, the streams it uses, and (Chron) PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from claiim_core.names import Names
from nats.aio.client import Client
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)
Check = Callable[[], Awaitable[list[str]]]
CHECK_S = 2.0
"""The longest one readiness check may take."""


class HealthServer:
    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0) -> None:
        self.registry = registry
        self.checks: list[Check] = []
        self.refresh: list[Callable[[], Awaitable[None]]] = []
        """Run before each scrape, to bring gauges up to date (failures are logged, the scrape goes on)."""
        self._readiness = Gauge("claiim_ready", "1 when /readyz would answer 200, else 0 (as of this scrape)",
                            registry=registry)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.url = ""
        """``http://host:port`` once started (the port the system chose when asked for 0)."""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._alive)
        app.router.add_get("/readyz", self._ready)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self._host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def problems(self) -> list[str]:
        """What keeps this process from doing its job now (empty: ready)."""
        found: list[str] = []
        for check in self.checks:
            try:
                found += await asyncio.wait_for(check(), CHECK_S)
            except Exception as e:
                found.append(f"{getattr(check, '__name__', 'check')}: {type(e).__name__}: {e}")
        return found

    async def _metrics(self, request: web.Request) -> web.Response:
        for refresh in self.refresh:
            try:
                await asyncio.wait_for(refresh(), CHECK_S)
            except Exception as e:
                log.warning("metrics refresh failed: %r", e)
        self._readiness.set(0 if await self.problems() else 1)
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @staticmethod
    async def _alive(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _ready(self, request: web.Request) -> web.Response:
        found = await self.problems()
        if found:
            return web.Response(status=503, text="".join(f"{p}\n" for p in found))
        return web.Response(text="ready\n")


class Reading(Collector):
    """Metrics read from a service's own counts at scrape time, so that its hot path does no metrics
    work: ``families`` returns them (``CounterMetricFamily``, ``GaugeMetricFamily``)."""

    def __init__(self, families: Callable[[], list[Metric]]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families()


def nats_check(user: str, nc: Client, names: Names, streams: tuple[str, ...]) -> Check:
    """Ready while ``nc`` is connected and each of ``streams`` exists."""

    async def nats() -> list[str]:  # the name shows in a problem line when the check itself fails
        if not nc.is_connected:
            return [f"NATS: the {user} connection is not connected ({'closed' if nc.is_closed else 'reconnecting'})"]
        js = nc.jetstream()
        missing = []
        for stream in streams:
            try:
                await js.stream_info(stream, subjects_filter=None)
            except Exception as e:
                missing.append(f"NATS: stream {stream} not available to {user}: {type(e).__name__}: {e}")
        return missing

    return nats
