"""The admin UI's composition root: build the state, the routes and the HTTP server."""

from __future__ import annotations

import logging
import time
from collections import Counter
from importlib import resources

from aiohttp import web
from claiim.transport import NatsTransport
from claiim_core.checkpoint import Verifier
from claiim_core.names import Names
from nats.aio.client import Client
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from claiim_admin import auth, export, pages_approvals, pages_chron, pages_forms, pages_registry
from claiim_admin.feed import DecisionFeed
from claiim_admin.monitor import CheckpointMonitor
from claiim_admin.sessions import Sessions
from claiim_admin.web import UI, UI_KEY, Handler, nav_counts, not_found, refusals, require_session, security_headers
from claiim_admin.web import templates as load_templates

log = logging.getLogger("claiim.admin")
SESSION_MAX = 12 * 3600.0
"""A session ends after this many seconds however active it is."""


def routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/login", auth.login_page)
    r.add_post("/login", auth.login)
    r.add_post("/logout", auth.logout)
    r.add_get("/healthz", _ok)
    r.add_get("/favicon.ico", _favicon)
    r.add_get("/", pages_chron.overview)
    r.add_get("/api/overview", pages_chron.overview_api)
    r.add_get("/live", pages_chron.live)
    r.add_get("/api/feed", pages_chron.feed)
    r.add_get("/search", pages_chron.search)
    r.add_get("/search/export", export.download)
    r.add_get("/decisions/{chron_id}", pages_chron.decision)
    r.add_get("/decisions/{chron_id}/proof.json", pages_chron.proof)
    r.add_post("/decisions/{chron_id}/verify", pages_chron.verify_proof)
    r.add_get("/checkpoints", pages_chron.checkpoints)
    r.add_post("/checkpoints/verify", pages_chron.verify_now)
    r.add_get("/agents", pages_registry.agents)
    r.add_get("/register", pages_forms.register_page)
    r.add_post("/register", pages_forms.register)
    r.add_get("/admins", pages_forms.admins)
    r.add_post("/admins", pages_forms.enrol)
    r.add_post("/admins/{name}/revoke", pages_forms.revoke)
    r.add_post("/org/approvals", pages_forms.set_approvals)
    r.add_get("/explain", pages_forms.explain_page)
    r.add_post("/explain", pages_forms.explain)
    r.add_get("/agents/{agent_id}", pages_registry.agent)
    r.add_get("/agents/{agent_id}/shadow", pages_registry.shadow)
    r.add_post("/agents/{agent_id}/{op}", pages_registry.agent_command)
    r.add_get("/policies", pages_registry.catalogue)
    r.add_post("/policies", pages_registry.publish_policy)
    r.add_get("/policies/{name}", pages_registry.policy)
    r.add_post("/skills", pages_registry.publish_skill)
    r.add_get("/skills/{name}", pages_registry.skill)
    r.add_get("/proposals", pages_registry.proposals)
    r.add_get("/proposals/{proposal_id}", pages_registry.proposal)
    r.add_post("/proposals/{proposal_id}/{op}", pages_registry.decide_proposal)
    r.add_get("/approvals", pages_approvals.approvals)
    r.add_get("/approvals/{approval_id}", pages_approvals.approval)
    r.add_post("/approvals/{approval_id}/{op}", pages_approvals.decide)
    r.add_static("/static/", str(resources.files("claiim_admin").joinpath("static")))


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _favicon(_: web.Request) -> web.Response:
    """Browsers ask for /favicon.ico whatever the page links: the same SVG mark."""
    icon = resources.files("claiim_admin").joinpath("static", "favicon.svg").read_bytes()
    return web.Response(body=icon, content_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


class AdminUI:
    """The web UI on ``host:port`` (port 0: any free port, see :attr:`url`), using ``nc`` for NATS."""

    def __init__(self, nc: Client, names: Names, url: str, verifier: Verifier, *, host: str, port: int,
                 secure_cookies: bool = False, session_idle: float = 1800.0) -> None:
        self._feed = DecisionFeed(nc.jetstream(), names)
        self.ui = UI(names=names, url=url, transport=NatsTransport(url, client=nc),
                     sessions=Sessions(session_idle, SESSION_MAX, time.monotonic), feed=self._feed,
                     monitor=CheckpointMonitor(verifier), templates=load_templates(), secure_cookies=secure_cookies)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.answered: Counter[str] = Counter()
        """HTTP responses by status class (2xx, 3xx, 4xx, 5xx)."""

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as e:
            self.answered[f"{e.status // 100}xx"] += 1
            raise
        except Exception:
            self.answered["5xx"] += 1
            raise
        self.answered[f"{response.status // 100}xx"] += 1
        return response

    async def refresh(self) -> None:
        await self._feed.refresh()

    def metrics(self) -> list[Metric]:
        answered = CounterMetricFamily("claiim_ui_responses", "HTTP responses of the admin UI, by status class",
                                       labels=["status"])
        for status, count in sorted(self.answered.items()):
            answered.add_metric([status], count)
        return [answered, GaugeMetricFamily("claiim_ui_feed_lag", "Decisions the live feed has not received yet "
                                            "(-1: unknown)", self._feed.lag)]

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._count, security_headers, refusals, require_session, nav_counts,
                                           not_found],
                              client_max_size=256 * 1024)
        app[UI_KEY] = self.ui
        routes(app)
        return app

    async def start(self) -> None:
        await self._feed.start()
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self._host}:{port}"
        log.info("admin UI at %s", self.url)

    async def stop(self) -> None:
        await self._feed.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
