"""Logging in with an admin, auditor or anchor token, and out."""

from __future__ import annotations

from aiohttp import web
from claiim import AsyncAdmin, ClaiimError, ServiceUnavailableError

from claiim_admin.sessions import COOKIE
from claiim_admin.web import back, render, ui_of


async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", error="", next=request.query.get("next", "/"), org="")


async def login(request: web.Request) -> web.StreamResponse:
    """Ask the admin API who the token belongs to; a session holds the token, the browser only its id."""
    ui = ui_of(request)
    form = await request.post()
    token, org, next_path = (str(form.get(k, "")).strip() for k in ("token", "org", "next"))
    admin = AsyncAdmin(ui.url, token or "-", org=org, namespace=ui.names.namespace, transport=ui.transport,
                       timeout=10.0)
    try:
        me = await admin.whoami()
        if me.role == "operator" and not org:
            raise ClaiimError("the operator token acts in a named org: fill in the org")
        # The admin API decides whether this token may act in that org, as for every later request. An
        # anchor reads no registry: listing its approvals asks the same question.
        if me.role == "anchor":
            await admin.approvals()
        elif not (await admin.registry("orgs", org=org or me.org)).orgs:
            raise ClaiimError(f"no org {org}")
    except ServiceUnavailableError as e:  # nothing was refused: the admin API did not answer
        return render(request, "login.html", status=503, error=f"the service is unavailable, try again later: {e}",
                      next=next_path, org=org)
    except ClaiimError as e:
        return render(request, "login.html", status=403, error=f"login refused: {e}", next=next_path, org=org)
    session = ui.sessions.create(token=token, org=org or me.org, name=me.name, role=me.role)
    response = back(next_path or "/")
    response.set_cookie(COOKIE, session.sid, httponly=True, samesite="Strict", secure=ui.secure_cookies, path="/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    ui_of(request).sessions.drop(request.cookies.get(COOKIE, ""))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response
