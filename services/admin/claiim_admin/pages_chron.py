"""Overview, live feed, Chron search, decision detail with its proof, and checkpoints."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import msgspec
from aiohttp import web
from claiim import AdminError, AsyncAdmin, ClaiimError
from claiim_core.proofs import InclusionProof, ProofError, check_inclusion
from claiim_core.refs import parse_ref
from claiim_core.schemas import ChronRecord, PolicyVersionInfo, SkillVersionInfo

from claiim_admin.web import admin_of, back, render, session_of, ui_of

PAGE = 50
LIVE_CAP = 200
"""Rows the live page keeps (the newest); its script drops older ones, and holds at most as many while paused."""
EXPORT_LIMIT = 100_000
"""Records one export of a search holds at most (:mod:`claiim_admin.export`)."""
SEARCH_FIELDS = ("agent", "anchor", "action", "outcome", "kind", "since", "until", "trace_id", "chron_id")
KEEPALIVE = 15.0


async def overview(request: web.Request) -> web.Response:
    return render(request, "overview.html", data=await _overview_data(request))


async def overview_api(request: web.Request) -> web.Response:
    return web.json_response(await _overview_data(request))


async def _overview_data(request: web.Request) -> dict[str, Any]:
    ui, session = ui_of(request), session_of(request)
    admin = ui.admin(session)
    snap = ui.feed.snapshot(session.org)
    verification = await ui.monitor.verify(admin)
    chron: dict[str, Any] = {"error": ""}
    try:
        status = await admin.chron_status()
        age = (datetime.now(UTC) - datetime.fromisoformat(status.checkpoint_signed_at)).total_seconds() \
            if status.checkpoint_signed_at else None
        chron |= {"pending": status.pending, "tree_size": status.tree_size, "checkpoint_size": status.checkpoint_size,
                  "checkpoint_age": age, "problems": status.problems}
    except ClaiimError as e:
        chron["error"] = str(e)
    return {"rate": round(snap.rate, 1), "allow": snap.allow, "deny": snap.deny,
            "minutes": [{"t": t, "allow": a, "deny": d} for t, a, d in snap.minutes], "chron": chron,
            "verification": None if verification is None else msgspec.to_builtins(verification)}


async def live(request: web.Request) -> web.Response:
    session = session_of(request)
    rows = list(reversed(ui_of(request).feed.recent(session.org)))[:50]
    return render(request, "live.html", rows=rows, cap=LIVE_CAP)


async def feed(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``decision`` event per new decision of the admin's org."""
    ui, session = ui_of(request), session_of(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    queue = ui.feed.listen(session.org)
    try:
        await response.write(b": connected\n\n")
        while ui.sessions.get(session.sid) is session:
            try:
                row = await asyncio.wait_for(queue.get(), KEEPALIVE)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if row is None:
                break
            await response.write(f"event: decision\ndata: {json.dumps(row)}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        ui.feed.forget(session.org, queue)
    return response


def search_fields(query: Any) -> dict[str, str]:
    return {k: str(query.get(k, "")).strip() for k in SEARCH_FIELDS}


def chron_filters(f: dict[str, str]) -> dict[str, Any]:
    """The search form's fields (:func:`search_fields`) as ``chron_list`` arguments; raises AdminError for a time
    that is not one. The search page and its export run exactly this search."""
    return {"agent_id": f["agent"] or None, "anchor": f["anchor"] or None, "action": f["action"] or None,
            "outcome": f["outcome"] or None, "kind": f["kind"] or None, "trace_id": f["trace_id"].lower() or None,
            "since": _iso(f["since"], "since"), "until": _iso(f["until"], "until")}


def _iso(value: str, field: str) -> str | None:
    """A datetime-local value (taken as UTC) or an ISO 8601 time; raises AdminError when it is neither."""
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError as e:
        raise AdminError(f"{field}: not a time: {value!r}") from e
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


async def search(request: web.Request) -> web.Response:
    f = search_fields(request.query)
    if f["chron_id"]:
        raise web.HTTPSeeOther(f"/decisions/{f['chron_id']}")
    error, records = "", []
    try:
        records = await admin_of(request).chron_list(
            **chron_filters(f), limit=PAGE + 1,
            before=_int(request.query.get("before")), after=_int(request.query.get("after")))
    except AdminError as e:
        error = str(e)
    newer_page = "after" in request.query
    more = len(records) > PAGE
    records = records[1:] if newer_page and more else records[:PAGE]
    older = records[-1].leaf_index if records and (more or newer_page) else None
    newer = records[0].leaf_index if records and ("before" in request.query or (newer_page and more)) else None
    return render(request, "search.html", f=f, records=records, error=error, older=older, newer=newer,
                  export_query=urlencode({k: v for k, v in f.items() if v and k != "chron_id"}),
                  export_limit=EXPORT_LIMIT)


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


async def decision(request: web.Request) -> web.Response:
    admin, chron_id = admin_of(request), request.match_info["chron_id"]
    record = await admin.chron_show(chron_id)
    if record is None:
        return render(request, "error.html", status=404, message=f"no record {chron_id} in org {admin.org}")
    policy, skills = await _versions(admin, record)
    event = msgspec.json.decode(bytes(record.event))
    return render(request, "decision.html", r=record, policy=policy, skills=skills,
                  event=json.dumps(event, indent=2, sort_keys=True),
                  verifier=str(ui_of(request).monitor.verifier))


def _split_label(label: str) -> tuple[str, int] | None:
    """``no-prod-v1`` as (name, version); None for anything that is not a pinned label (``none``)."""
    try:
        name, version = parse_ref(label)
    except ValueError:
        return None
    return None if version is None else (name, version)


async def _versions(admin: AsyncAdmin, r: ChronRecord) -> tuple[PolicyVersionInfo | None, list[SkillVersionInfo]]:
    """The policy and skill versions the decision names, as they were (versions never change)."""
    policy: PolicyVersionInfo | None = None
    skills: list[SkillVersionInfo] = []
    try:
        if (p := _split_label(r.policy)) is not None:
            policy = next((v for v in await admin.policy_versions(p[0]) if v.version == p[1]), None)
        for label in filter(None, r.skill.split(",")):
            if (s := _split_label(label.strip())) is not None:
                skills += [v for v in await admin.skill_versions(s[0]) if v.version == s[1]]
    except AdminError:
        pass  # a version of a name this admin cannot read: the labels in the record still say which
    return policy, skills


async def proof(request: web.Request) -> web.Response:
    chron_id = request.match_info["chron_id"]
    bundle = await admin_of(request).chron_prove(chron_id)
    return web.Response(text=json.dumps(bundle, indent=2) + "\n", content_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{chron_id}.proof.json"'})


async def verify_proof(request: web.Request) -> web.Response:
    """Fetch a fresh inclusion proof and check it here with the log's public key, step by step."""
    ui, chron_id = ui_of(request), request.match_info["chron_id"]
    admin = admin_of(request)
    steps: list[dict[str, Any]] = []
    try:
        record = await admin.chron_show(chron_id)
        bundle = await admin.chron_prove(chron_id)
        proven = check_inclusion(msgspec.convert(bundle, InclusionProof), ui.monitor.verifier)
    except (ClaiimError, ProofError, msgspec.ValidationError) as e:
        return web.json_response({"ok": False, "steps": [{"ok": False, "text": str(e)}]})
    cp = proven.checkpoint
    steps.append({"ok": True, "text": f"checkpoint signature valid: {cp.origin}, tree size {cp.size}, "
                                      f"key {ui.monitor.verifier.name}"})
    steps.append({"ok": True, "text": f"leaf {proven.leaf_index} and its audit path of {len(bundle['audit_path'])} "
                                      f"hashes give the signed root {cp.root.hex()[:16]}…"})
    same = record is not None and all(proven.event.get(k) == getattr(record, k) for k in (
        "agent_id", "action", "target", "outcome", "anchor", "policy") if k in proven.event)
    steps.append({"ok": same, "text": "the proven leaf is the record shown on this page" if same
                  else "the proven leaf differs from the record Chron's table returns"})
    return web.json_response({"ok": all(s["ok"] for s in steps), "steps": steps,
                              "command": f"claiim chron verify-proof {chron_id}.proof.json --key KEY"})


async def checkpoints(request: web.Request) -> web.Response:
    ui = ui_of(request)
    admin = admin_of(request)
    await ui.monitor.verify(admin)
    listed = await admin.chron_checkpoints(limit=20)
    rows = [(c, ui.monitor.signature_ok(c)) for c in listed]
    return render(request, "checkpoints.html", rows=rows, results=list(reversed(ui.monitor.results)),
                  verifier=str(ui.monitor.verifier))


async def verify_now(request: web.Request) -> web.StreamResponse:
    ui = ui_of(request)
    result = await ui.monitor.verify(admin_of(request), force=True)
    if result is not None:
        session_of(request).flash("ok" if result.ok else "error", f"verification: {result.message}")
    raise back("/checkpoints")
