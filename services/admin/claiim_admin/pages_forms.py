"""The forms for what the CLI did alone: register agents (a form, or a bundle pasted or uploaded, as
``claiim apply``), enrol and revoke admins, set the org's approval rule, and explain what the gate would
decide. Each is one admin API request with the signed-in person's token, so two-person control applies as in
the CLI: the page says whether the change applied or became a proposal. A refused or invalid form comes back
with what was typed and the API's answer; a token is shown once, in the next page's messages."""

from __future__ import annotations

import contextlib
from typing import Any

import yaml
from aiohttp import web
from claiim import AdminError, AsyncAdmin, ClaiimError
from claiim_core.schemas import AgentCommandReply, ApplyReply
from claiim_core.sources import locate, yaml_lines

from claiim_admin.web import admin_of, back, render, session_of, status_of

ROLES = ("admin", "auditor", "anchor")
TEXT_AREAS = ("bundle", "context")
BUNDLE_DRAFT = "agents:\n  - id: \n    anchor: \n    skills: []\n    policy: \n    description: \n"


def split_names(text: str) -> list[str]:
    """``deploy-v2, review-v1`` or one per line: the names in order, without blanks."""
    return [n for n in text.replace(",", " ").split() if n]


def context_lines(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines as a check's context (blank lines skipped); raises ValueError naming the bad line."""
    context = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"context line {number} ({line.strip()!r}): give KEY=VALUE")
        context[key.strip()] = value.strip()
    return context


def agent_bundle(org: str, form: dict[str, str]) -> dict[str, Any]:
    """The one-agent bundle the registration form describes."""
    agent = {"id": form.get("id", ""), "anchor": form.get("anchor", ""), "skills": split_names(form.get("skills", "")),
             "policy": form.get("policy", ""), "description": form.get("description", "")}
    return {"org": org, "agents": [agent]}


def bundle_of(org: str, text: str) -> dict[str, Any]:
    """A bundle pasted or uploaded as YAML (or JSON); without ``org`` it is the signed-in person's org."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ValueError(f"line {mark.line + 1 if mark else 1}: not valid YAML: {getattr(e, 'problem', e)}") from e
    if not isinstance(data, dict):
        raise ValueError("a bundle is a mapping with agents (and skills, policies) in it")
    return {"org": org, **data}


async def _form(request: web.Request) -> tuple[dict[str, str], str]:
    """The fields (stripped, but for the text areas, which come back exactly as typed), and the text of an
    uploaded file (empty when none was chosen)."""
    fields, upload = {}, ""
    for key, value in (await request.post()).items():
        if isinstance(value, web.FileField):
            upload = value.file.read().decode("utf-8", errors="replace")
        else:
            fields[key] = str(value) if key in TEXT_AREAS else str(value).strip()
    return fields, upload


def _said(request: web.Request, reply: AgentCommandReply | ApplyReply, done: str) -> None:
    session = session_of(request)
    if reply.proposal_id:
        session.flash("ok", f"proposal {reply.proposal_id} created: {reply.pending or 'it waits for approval'}")
    else:
        session.flash("ok", done)


async def _register_page(request: web.Request, status: int = 200, **context: Any) -> web.Response:
    admin = admin_of(request)
    skills: list[Any] = []
    policies: list[Any] = []
    with contextlib.suppress(ClaiimError):  # only the suggestions go missing, never the form and what was typed
        skills, policies = await admin.skills(), await admin.policies()
    defaults: dict[str, Any] = {"mode": "form", "form": {}, "bundle": BUNDLE_DRAFT, "error": "", "problems": []}
    return render(request, "register.html", status=status, skills=skills, policies=policies,
                  **(defaults | context))


async def register_page(request: web.Request) -> web.Response:
    return await _register_page(request)


async def register(request: web.Request) -> web.StreamResponse:
    """Apply the form's agent, or the bundle; the reply's tokens are shown once, on the next page."""
    admin, session = admin_of(request), session_of(request)
    form, upload = await _form(request)
    mode = "bundle" if form.get("mode") == "bundle" else "form"
    text = upload or form.get("bundle", "")
    try:
        bundle = bundle_of(admin.org, text) if mode == "bundle" else agent_bundle(admin.org, form)
        reply = await admin.apply(bundle)
    except (ValueError, ClaiimError) as e:
        problems = getattr(e, "problems", None) or []
        if mode == "bundle":
            lines = yaml_lines(text)
            problems = [locate(p, lines, "bundle") for p in problems]
        return await _register_page(request, status=400 if isinstance(e, ValueError) else status_of(e),
                                    mode=mode, form=form, bundle=text, problems=problems,
                                    error=f"the {'bundle' if mode == 'bundle' else 'agent'} has problems:"
                                    if len(problems) > 1 else str(e))
    _said(request, reply, "; ".join(reply.changes) or "nothing changed: the bundle is registered as it is")
    for warning in reply.warnings:
        session.flash("error", f"warning: {warning}")
    valid = " (valid once the proposal is applied)" if reply.proposal_id else ""
    for agent, token in reply.tokens.items():
        session.flash("secret", f"token for {agent} (shown once, copy it now){valid}: {token}")
    agents = list(bundle.get("agents") or [])
    if reply.proposal_id:
        raise back(f"/proposals/{reply.proposal_id}")
    if len(agents) == 1 and isinstance(agents[0], dict):
        raise back(f"/agents/{agents[0].get('id', '')}")
    raise back("/agents")


async def _admins_page(request: web.Request, status: int = 200, **context: Any) -> web.Response:
    listed = await admin_of(request).registry("admins")
    defaults: dict[str, Any] = {"enrol": {}, "enrol_error": "", "rule": "", "rule_error": ""}
    return render(request, "admins.html", status=status, admins=listed.admins,
                  required=listed.approvals_required, roles=ROLES, **(defaults | context))


async def admins(request: web.Request) -> web.Response:
    """The org's admins, auditors and anchors, and how many approvals a widening change needs."""
    return await _admins_page(request)


async def enrol(request: web.Request) -> web.StreamResponse:
    admin, session = admin_of(request), session_of(request)
    form, _ = await _form(request)
    name, role = form.get("name", ""), form.get("role", "")
    try:
        if role not in ROLES:
            raise ValueError(f"role {role!r}: one of {', '.join(ROLES)}")
        reply = await admin.admin_command("enrol", name, role)  # type: ignore[arg-type]
    except (ValueError, AdminError) as e:
        return await _admins_page(request, status=400 if isinstance(e, ValueError) else status_of(e), enrol=form,
                                  enrol_error=str(e))
    _said(request, reply, reply.change or f"enrolled {role} {name}")
    if reply.token:
        valid = " (valid once the proposal is applied)" if reply.proposal_id else ""
        session.flash("secret", f"token for {name} (shown once, copy it now){valid}: {reply.token}")
    raise back(f"/proposals/{reply.proposal_id}" if reply.proposal_id else "/admins")


async def revoke(request: web.Request) -> web.StreamResponse:
    form, _ = await _form(request)
    reply = await admin_of(request).revoke_admin(request.match_info["name"], form.get("reason", ""))
    _said(request, reply, reply.change or f"revoked {request.match_info['name']}")
    raise back("/admins")


async def set_approvals(request: web.Request) -> web.StreamResponse:
    form, _ = await _form(request)
    value = form.get("approvals", "")
    try:
        if not value.isdigit() or not 1 <= int(value) <= 10:
            raise ValueError(f"approvals {value!r}: a whole number from 1 to 10")
        reply = await admin_of(request).set_approvals(int(value))
    except (ValueError, AdminError) as e:
        return await _admins_page(request, status=400 if isinstance(e, ValueError) else status_of(e), rule=value,
                                  rule_error=str(e))
    _said(request, reply, reply.change)
    raise back(f"/proposals/{reply.proposal_id}" if reply.proposal_id else "/admins")


async def _explain_page(request: web.Request, admin: AsyncAdmin, status: int = 200, **context: Any) -> web.Response:
    agents: list[str] = []
    with contextlib.suppress(ClaiimError):  # only the suggestions go missing
        agents = [a.agent_id for a in await admin.agents()]
    defaults: dict[str, Any] = {"form": {}, "error": "", "result": None}
    return render(request, "explain.html", status=status, agents=agents, **(defaults | context))


async def explain_page(request: web.Request) -> web.Response:
    return await _explain_page(request, admin_of(request), form={"agent": request.query.get("agent", "")})


async def explain(request: web.Request) -> web.Response:
    """What the gate would decide now for this check, step by step; nothing is recorded."""
    admin = admin_of(request)
    form, _ = await _form(request)
    try:
        context = context_lines(form.get("context", ""))
        result = await admin.explain(form.get("agent", ""), form.get("action", ""), form.get("target", ""), context)
    except (ValueError, AdminError) as e:
        return await _explain_page(request, admin, status=400 if isinstance(e, ValueError) else status_of(e),
                                   form=form, error=str(e))
    return await _explain_page(request, admin, form=form, result=result)
