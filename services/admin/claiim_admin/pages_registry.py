"""Agents, policies and skills with version history and diffs, and proposals. Every change is an
admin API command with the logged-in admin's token: the API decides what applies at once, what
becomes a proposal and what is refused, and the page says which."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import msgspec
from aiohttp import web
from claiim import AdminError, AsyncAdmin
from claiim_core.diff import VersionDiff, document, proposed_versions, side_by_side, version_diff
from claiim_core.policytest import DocumentError, parse_policy
from claiim_core.schemas import AgentCommandReply, ApplyReply, PolicyVersionInfo, SkillVersionInfo

from claiim_admin.web import admin_of, back, render, session_of, status_of

AGENT_OPS = {"suspend", "reactivate", "rotate-token", "revoke-token", "set-anchor", "set-shadow"}


async def _form(request: web.Request) -> dict[str, str]:
    return {k: str(v).strip() for k, v in (await request.post()).items()}


def _report(request: web.Request, reply: AgentCommandReply | ApplyReply, done: str) -> None:
    """Say what the API did: applied, or waiting as a proposal (and for what)."""
    session = session_of(request)
    if reply.proposal_id:
        session.flash("ok", f"proposal {reply.proposal_id} created: {reply.pending or 'it waits for approval'}")
    else:
        session.flash("ok", done)


async def agents(request: web.Request) -> web.Response:
    return render(request, "agents.html", agents=await admin_of(request).agents())


async def agent(request: web.Request) -> web.Response:
    admin, agent_id = admin_of(request), request.match_info["agent_id"]
    found = await admin.agent(agent_id)
    recent = await admin.chron_list(agent_id=agent_id, limit=20)
    return render(request, "agent.html", a=found, recent=recent)


async def shadow(request: web.Request) -> web.Response:
    """What the agent's log-only candidates would have decided otherwise, over ``since`` (all by default)."""
    admin, agent_id = admin_of(request), request.match_info["agent_id"]
    since = request.query.get("since") or None
    return render(request, "shadow.html", a=await admin.agent(agent_id), since=since or "",
                  report=await admin.shadow_report(agent_id, since=since))


async def agent_command(request: web.Request) -> web.StreamResponse:
    admin, agent_id, op = admin_of(request), request.match_info["agent_id"], request.match_info["op"]
    if op not in AGENT_OPS:
        raise web.HTTPNotFound()
    form = await _form(request)
    reply = await admin.agent_command(op, agent_id, reason=form.get("reason", ""),  # type: ignore[arg-type]
                                      anchor=form.get("anchor", ""), policy=form.get("policy", ""))
    if reply.token:
        session_of(request).flash("secret", f"new token of {agent_id} (shown once, copy it now): {reply.token}")
    _report(request, reply, reply.change or f"{op}: done")
    raise back(f"/agents/{agent_id}")


async def catalogue(request: web.Request) -> web.Response:
    return await _catalogue(request)


async def _catalogue(request: web.Request, status: int = 200, **typed: Any) -> web.Response:
    """The catalogue page; after a refused proposal, with what was typed in its form and why (``typed``)."""
    admin = admin_of(request)
    forms: dict[str, Any] = {"policy_form": {"document": "skill: \nallow:\n  - \ndeny: []\n"}, "policy_error": "",
                             "skill_form": {}, "skill_error": ""}
    return render(request, "policies.html", status=status, policies=await admin.policies(),
                  skills=await admin.skills(), **(forms | typed))


def _refused(e: DocumentError | AdminError) -> tuple[int, str]:
    """The status and the text of a refused policy or skill: the problems one a line."""
    if isinstance(e, DocumentError):
        return 400, "the policy has problems:\n" + str(e)
    return status_of(e), "\n".join([str(e), *e.problems]) if len(e.problems) > 1 else str(e)


def _pick(versions: list[Any], value: str | None, default: int) -> Any:
    by_number = {v.version: v for v in versions}
    if value and value.isdigit() and int(value) in by_number:
        return by_number[int(value)]
    return versions[default]


def _history(request: web.Request, versions: list[PolicyVersionInfo] | list[SkillVersionInfo]) -> dict[str, Any]:
    """The versions, the one shown, and the side-by-side diff between the two chosen (default: the last two)."""
    shown = _pick(versions, request.query.get("v"), -1)
    left = _pick(versions, request.query.get("a"), max(len(versions) - 2, 0))
    right = _pick(versions, request.query.get("b"), -1)
    return {"versions": versions, "shown": shown, "shown_text": document(shown), "latest_text": document(versions[-1]),
            "left": left, "right": right,
            "rows": side_by_side(document(left), document(right))}


async def policy(request: web.Request) -> web.Response:
    return await _policy_page(request, request.match_info["name"])


async def _policy_page(request: web.Request, name: str, status: int = 200, **typed: str) -> web.Response:
    """A policy's history; after a refused new version, with the text typed (``draft``) and why (``error``)."""
    versions = await admin_of(request).policy_versions(name)
    history = _history(request, versions)
    return render(request, "history.html", status=status, kind="policy", name=name, **history,
                  **({"draft": history["latest_text"], "error": ""} | typed))


async def skill(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    versions = await admin_of(request).skill_versions(name)
    return render(request, "history.html", kind="skill", name=name, draft="", error="", **_history(request, versions))


async def publish_policy(request: web.Request) -> web.StreamResponse:
    """Propose (or, for the operator, publish) a policy version written as the YAML of a policy file."""
    admin, form = admin_of(request), await _form(request)
    name, text = form.get("name", ""), form.get("document", "")
    back_to = form.get("back", "/policies")
    try:
        parsed = parse_policy(text, "policy")
        spec: dict[str, Any] = {"name": name or parsed.name, "skill": parsed.document.skill,
                                "allow": _plain(parsed.document.allow), "deny": _plain(parsed.document.deny),
                                "description": parsed.description}
        reply = await admin.apply({"org": admin.org, "policies": [spec]})
    except (DocumentError, AdminError) as e:  # the form comes back as typed, with why
        status, error = _refused(e)
        if back_to.startswith("/policies/"):
            return await _policy_page(request, back_to.removeprefix("/policies/"), status, draft=text, error=error)
        return await _catalogue(request, status, policy_form=form, policy_error=error)
    _report(request, reply, "; ".join(reply.changes) or "nothing changed")
    raise back(back_to)


async def publish_skill(request: web.Request) -> web.StreamResponse:
    admin, form = admin_of(request), await _form(request)
    actions = [line.strip().removeprefix("- ").strip() for line in form.get("actions", "").splitlines()]
    spec = {"name": form.get("name", ""), "actions": [a for a in actions if a],
            "description": form.get("description", "")}
    try:
        reply = await admin.apply({"org": admin.org, "skills": [spec]})
    except AdminError as e:  # the form comes back as typed, with why
        status, error = _refused(e)
        return await _catalogue(request, status, skill_form=form, skill_error=error)
    _report(request, reply, "; ".join(reply.changes) or "nothing changed")
    raise back(form.get("back", "/policies"))


def _plain(rules: Any) -> list[Any]:
    return list(msgspec.to_builtins(rules))


async def proposals(request: web.Request) -> web.Response:
    admin = admin_of(request)
    proposals = await admin.proposals()
    pending = [p for p in proposals if p.status == "pending"]
    closed = [p for p in proposals if p.status != "pending"][:20]
    return render(request, "proposals.html", pending=pending, closed=closed)


async def proposal(request: web.Request) -> web.Response:
    admin = admin_of(request)
    found = await admin.proposal(request.match_info["proposal_id"])
    return render(request, "proposal.html", p=found, change=json.dumps(found.events, indent=2, sort_keys=True),
                  diffs=await _proposed_diffs(admin, found.events))


async def _proposed_diffs(admin: AsyncAdmin, events: list[dict[str, Any]]) -> list[VersionDiff]:
    """For each policy or skill version in a proposal, its side-by-side diff against the version before it
    (``claiim proposals show`` prints the same)."""
    diffs = []
    for new in proposed_versions(events):
        versions: list[Any] = []
        with contextlib.suppress(AdminError):  # a new name: everything is added
            versions = await (admin.policy_versions(new.name) if isinstance(new, PolicyVersionInfo)
                              else admin.skill_versions(new.name))
        diffs.append(version_diff(new, versions))
    return diffs


async def decide_proposal(request: web.Request) -> web.StreamResponse:
    """Approve (bound to the change hash the admin saw) or reject, with the admin's reason."""
    admin, pid, op = admin_of(request), request.match_info["proposal_id"], request.match_info["op"]
    form = await _form(request)
    if op == "approve":
        reply = await admin.approve(pid, reason=form.get("reason", ""), change_hash=form.get("change_hash", ""))
    elif op == "reject":
        reply = await admin.reject(pid, reason=form.get("reason", ""))
    else:
        raise web.HTTPNotFound()
    session_of(request).flash("ok", reply.change or f"{op}d {pid}")
    raise back(f"/proposals/{pid}")
