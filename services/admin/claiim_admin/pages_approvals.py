"""The approvals agents wait for (a policy's ``approve`` rule answered PENDING): what waits, or also
what closed, and one approval's request, rule and outcome with Grant and Refuse. Like every page,
these are admin API requests with the signed-in person's token: the API decides who sees which
approval (an anchor: those of the agents it anchors) and who may decide it."""

from __future__ import annotations

from aiohttp import web

from claiim_admin.web import admin_of, back, render, session_of


async def approvals(request: web.Request) -> web.Response:
    """What waits for a decision; with ``?closed=1``, the granted, refused and expired ones too."""
    closed = request.query.get("closed") == "1"
    return render(request, "approvals.html", approvals=await admin_of(request).approvals(closed=closed),
                  closed=closed)


async def approval(request: web.Request) -> web.Response:
    return render(request, "approval.html", a=await admin_of(request).approval(request.match_info["approval_id"]))


async def decide(request: web.Request) -> web.StreamResponse:
    """Grant or refuse with the person's reason, bound to the request hash the page showed them."""
    admin, approval_id, op = admin_of(request), request.match_info["approval_id"], request.match_info["op"]
    if op not in ("grant", "refuse"):
        raise web.HTTPNotFound()
    form = await request.post()
    reason, reviewed = str(form.get("reason", "")).strip(), str(form.get("request_hash", ""))
    reply = await (admin.grant if op == "grant" else admin.refuse)(approval_id, reason, reviewed)
    session_of(request).flash("ok", reply.change)
    raise back(f"/approvals/{approval_id}")
