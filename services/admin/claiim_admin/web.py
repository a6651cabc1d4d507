"""What every page shares: the UI's state, the session and CSRF middleware, security headers,
turning admin API refusals into messages, and rendering templates."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web
from claiim import AdminError, AsyncAdmin, ClaiimError
from claiim.transport import NatsTransport
from claiim_core.codes import Code
from claiim_core.names import Names

from claiim_admin import nav
from claiim_admin.feed import DecisionFeed
from claiim_admin.monitor import CheckpointMonitor
from claiim_admin.sessions import COOKIE, Session, Sessions

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC = ("/login", "/static/", "/healthz", "/favicon.ico")
ANCHOR_PAGES = ("/approvals", "/search", "/decisions/", "/checkpoints", "/logout")
"""The pages an anchor's session opens: its agents' approvals and records (the APIs narrow them to those)
and the log's checkpoints. The overview and the live feed, which the UI reads from the decision stream
itself, count and show every decision of the org; the other pages are refused by the admin API anyway."""
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


@dataclass
class UI:
    names: Names
    url: str
    transport: NatsTransport
    sessions: Sessions
    feed: DecisionFeed
    monitor: CheckpointMonitor
    templates: jinja2.Environment
    secure_cookies: bool

    def admin(self, session: Session) -> AsyncAdmin:
        """The admin API client acting as the logged-in admin (its token, its org), on the UI's connection."""
        return AsyncAdmin(self.url, session.token, org=session.org, namespace=self.names.namespace,
                          transport=self.transport, timeout=10.0)


UI_KEY = web.AppKey("ui", UI)
SESSION_KEY = web.RequestKey("session", Session)


def templates() -> jinja2.Environment:
    folder = resources.files("claiim_admin").joinpath("templates")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["short"] = lambda text, n=12: text if len(text) <= n else text[:n] + "…"
    env.filters["when"] = lambda iso: iso.replace("T", " ")[:19] if iso else "—"
    return env


def ui_of(request: web.Request) -> UI:
    return request.app[UI_KEY]


def session_of(request: web.Request) -> Session:
    return request[SESSION_KEY]


def admin_of(request: web.Request) -> AsyncAdmin:
    return ui_of(request).admin(session_of(request))


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    session = request.get(SESSION_KEY)
    text = ui_of(request).templates.get_template(template).render(
        session=session, flashes=session.take_flashes() if session else [], path=request.path, status=status,
        **context)
    return web.Response(text=text, content_type="text/html", status=status)


def back(path: str) -> web.HTTPSeeOther:
    """A redirect after a form post, to ``path`` if it is a path of this site, else to the overview."""
    return web.HTTPSeeOther(path if path.startswith("/") and not path.startswith("//") else "/")


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    if not response.prepared:
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response


@web.middleware
async def require_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Pages need a live session; a POST also needs the session's CSRF token (form field or header). An
    anchor's session opens :data:`ANCHOR_PAGES` only, and starts at its approvals."""
    if request.path.startswith(PUBLIC):
        return await handler(request)
    session = ui_of(request).sessions.get(request.cookies.get(COOKIE))
    if session is None:
        if request.path.startswith("/api/") or request.method != "GET":
            raise web.HTTPUnauthorized(text="log in first")
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}")
    if request.method == "POST":
        sent = request.headers.get("X-CSRF-Token") or str((await request.post()).get("csrf", ""))
        if not session.csrf_ok(sent):
            raise web.HTTPForbidden(text="the form is stale or not from this site (CSRF token mismatch); reload it")
    request[SESSION_KEY] = session
    if session.role == "anchor" and not request.path.startswith(ANCHOR_PAGES):
        if request.path == "/":
            raise web.HTTPSeeOther("/approvals")
        return render(request, "error.html", status=403, message=f"forbidden: {session.name} is an anchor and sees "
                      "the approvals and records of the agents it anchors, nothing else")
    return await handler(request)


_STATUS: dict[str, int] = {Code.INVALID: 400, Code.UNAUTHENTICATED: 403, Code.FORBIDDEN: 403, Code.NOT_FOUND: 404,
           Code.CONFLICT: 409, Code.NOT_CHECKPOINTED: 409, Code.UNAVAILABLE: 503, Code.INTERNAL: 500}
"""The HTTP status of an admin API refusal, by its code (400 for one without a code)."""


def status_of(e: ClaiimError) -> int:
    """The HTTP status of a page that shows ``e``: the refusal's, or 503 when nothing answered."""
    return _STATUS.get(e.code, 400) if isinstance(e, AdminError) else 503


@web.middleware
async def refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An admin API refusal or an unreachable service becomes a message, never a stack trace."""
    try:
        return await handler(request)
    except ClaiimError as e:
        session = request.get(SESSION_KEY)
        if request.method == "POST" and session is not None and not request.path.startswith("/api/"):
            session.flash("error", str(e))
            raise back(str((await request.post()).get("back", "/"))) from e
        return render(request, "error.html", status=status_of(e), message=str(e))


@web.middleware
async def nav_counts(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Keep the navigation's counts of what waits (:mod:`claiim_admin.nav`) fresh for the pages a person reads;
    a form post may have decided something, so the next page reads them again."""
    session = request.get(SESSION_KEY)
    if session is not None and request.method == "POST":
        session.counted_at = None
    elif session is not None and request.method == "GET" and not request.path.startswith(("/api/", "/static/")):
        now = time.monotonic()
        if nav.due(session, now):
            await nav.refresh(ui_of(request).admin(session), session, now)
    return await handler(request)


@web.middleware
async def not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An unknown page, or a method a page does not take, is a page of the site (with its navigation), not
    aiohttp's plain text; the JSON and event endpoints under /api/ keep their plain answers."""
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as e:
        if request.path.startswith(("/api/", "/static/")):
            raise
        return render(request, "error.html", status=e.status,
                      message=f"there is no page {request.path}" if e.status == 404
                      else f"{request.path} does not take {request.method}")
