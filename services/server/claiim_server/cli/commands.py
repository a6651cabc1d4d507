"""The CLI's admin commands: each reads its arguments, calls the admin client and prints a table
(or JSON with ``--json``). Every one returns the process exit code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml
from claiim import AsyncAdmin
from claiim.errors import AdminError
from claiim_core.diff import VersionDiff, proposed_versions, version_diff
from claiim_core.explain import policy_diff
from claiim_core.policy import approval_text, rule_text
from claiim_core.policytest import DocumentError, parse_policy
from claiim_core.schemas import ApplyReply, ChronRecord, PolicyVersionInfo, SkillVersionInfo
from claiim_core.sources import locate, yaml_lines

from claiim_server.cli import chron
from claiim_server.cli.output import fields, side_by_side, table, terminal_width, to_json

Handler = Callable[[AsyncAdmin, argparse.Namespace], Awaitable[int]]


def _say(args: argparse.Namespace, value: Any, text: str) -> int:
    print(to_json(value) if getattr(args, "json", False) else text)
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


async def _org(admin: AsyncAdmin) -> str:
    """The org commands act in: ``--org``/``CLAIIM_ORG``, else the token's own."""
    org = admin.org or (await admin.whoami()).org
    if not org:
        raise AdminError("the operator acts in every org: name the org with --org or CLAIIM_ORG")
    return org


# -- apply and whoami ------------------------------------------------------------------------


def _proposed(proposal_id: str, pending: str) -> list[str]:
    if not proposal_id:
        return []
    return [f"proposed as {proposal_id}: nothing changes until it has {pending}",
            f"  another admin approves with `claiim proposals approve {proposal_id}`"]


def _dry_run(reply: ApplyReply) -> str:
    """A dry run's report: what would be done, and whether it would wait for approvals."""
    lines = ["dry run: nothing was applied", *reply.changes]
    if all(c.op == "unchanged" for c in reply.changed):
        lines.append("nothing would change")
    elif reply.would_propose:
        n = reply.approvals_required
        lines.append(f"applied for real, this would become a proposal: nothing changes until {n} other "
                     f"admin{'s' if n > 1 else ''} of the org approve{'' if n > 1 else 's'} it")
    else:
        lines.append("applied for real, this would take effect at once (no approval needed)")
    lines += [f"warning: {w}" for w in reply.warnings]
    return "\n".join(lines)


def _changes(reply: ApplyReply) -> str:
    if reply.dry_run:
        return _dry_run(reply)
    lines = list(reply.changes)
    if all(c.op == "unchanged" for c in reply.changed):
        lines.append("nothing to change")
    lines += _proposed(reply.proposal_id, reply.pending)
    lines += [f"warning: {w}" for w in reply.warnings]
    valid = " (valid once the proposal is applied)" if reply.proposal_id else ""
    lines += [f"token for {agent} (shown once){valid}: {token}" for agent, token in reply.tokens.items()]
    return "\n".join(lines)


async def _apply_bundle(admin: AsyncAdmin, args: argparse.Namespace, bundle: Any, source: str,
                        text: str) -> int:
    try:
        reply = await admin.apply(bundle, dry_run=args.dry_run)
    except AdminError as e:
        if not e.problems:
            raise
        lines = yaml_lines(text)
        for problem in e.problems:
            print(locate(problem, lines, source), file=sys.stderr)
        return 1
    return _say(args, reply, _changes(reply))


async def apply(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    text = await asyncio.to_thread(Path(args.file).read_text)
    try:
        bundle = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        return _fail(f"{args.file}:{mark.line + 1 if mark else 1}: not valid YAML: {getattr(e, 'problem', e)}")
    return await _apply_bundle(admin, args, bundle, str(args.file), text)


async def init(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    """Bootstrap an org: create it and enrol its first admins, with the operator token."""
    if len(set(args.admins)) < 2:
        return _fail("name at least two admins (--admin A --admin B): two-person control needs a second one")
    await admin.create_org(args.org, args.description)
    admin.org = args.org
    tokens = {name: await admin.enrol_admin(name) for name in dict.fromkeys(args.admins)}
    lines = [f"created org {args.org} with admins {', '.join(tokens)}"]
    lines += [f"token for {name} (shown once): {token}" for name, token in tokens.items()]
    return _say(args, {"org": args.org, "tokens": tokens}, "\n".join(lines))


async def whoami(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    reply = await admin.whoami()
    return _say(args, reply, f"{reply.principal} (control seq {reply.control_seq})")


async def explain(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    reply = await admin.explain(args.agent, args.action, args.target, context_entries(args.context))
    return _say(args, reply, "\n".join(reply.steps))


def context_entries(entries: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` options as a check's context."""
    context = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise AdminError(f"--context {entry!r}: give KEY=VALUE")
        context[key] = value
    return context


# -- org and admin ---------------------------------------------------------------------------

ORG_COLUMNS = ("name", "agents", "skills", "policies", "admins", "description")


async def org_list(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    orgs = await admin.orgs()
    return _say(args, orgs, table(orgs, ORG_COLUMNS))


async def org_show(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    org = await _org(admin)
    found = [o for o in await admin.orgs() if o.name == org]
    if not found:
        return _fail(f"no org {org}")
    return _say(args, found[0], fields(found[0], ORG_COLUMNS))


async def org_create(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    done = await admin.create_org(args.name, args.description)
    return _say(args, done, f"{done.change} (control seq {done.control_seq})")


async def admin_list(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    admins = await admin.admins()
    return _say(args, admins, table(admins, ("org", "name", "role")))


async def admin_enrol(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    done = await admin.admin_command("enrol", args.name, args.role)
    lines = [done.change, *_proposed(done.proposal_id, done.pending),
             f"token for {args.name} (shown once){' (valid once applied)' if done.proposal_id else ''}: {done.token}"]
    return _say(args, done, "\n".join(lines))


async def admin_revoke(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    done = await admin.revoke_admin(args.name, args.reason)
    return _say(args, done, f"{done.change} (control seq {done.control_seq})")


async def org_set_webhook(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    if bool(args.url) == bool(args.remove):
        return _fail("give the webhook's URL, or --remove")
    done = await admin.set_webhook("" if args.remove else args.url)
    return _say(args, done, "\n".join([done.change, *_proposed(done.proposal_id, done.pending)]))


APPROVAL_COLUMNS = ("approval_id", "status", "agent_id", "anchor", "action", "target", "expires_at")
APPROVAL_FIELDS = ("approval_id", "org", "status", "agent_id", "anchor", "action", "target", "context", "rule",
                   "policy", "skill", "approver", "request_hash", "requested_at", "expires_at", "decided_by",
                   "decided_at", "note", "final_outcome", "final_chron_id")


async def approvals_list(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    found = await admin.approvals(agent_id=args.agent, closed=args.closed)
    text = table(found, APPROVAL_COLUMNS) if found else "no approval waits" + ("" if args.closed else " for you")
    return _say(args, found, text)


async def approvals_show(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    found = await admin.approval(args.approval_id)
    return _say(args, found, fields(found, APPROVAL_FIELDS))


async def approvals_decide(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    decide = admin.grant if args.subcommand == "grant" else admin.refuse
    done = await decide(args.approval_id, args.reason, args.hash)
    return _say(args, done, f"{done.change} (control seq {done.control_seq})")


async def org_set_approvals(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    done = await admin.set_approvals(args.approvals)
    return _say(args, done, "\n".join([done.change, *_proposed(done.proposal_id, done.pending)]))


PROPOSAL_COLUMNS = ("proposal_id", "status", "proposer", "created_at", "approvals", "summary")


async def proposals_list(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    found = await admin.proposals(args.status)
    rows = [{"proposal_id": p.proposal_id, "status": p.status, "proposer": p.proposer, "created_at": p.created_at,
             "approvals": f"{len(p.approvals)}/{p.approvals_required}", "summary": "; ".join(p.summary)} for p in found]
    return _say(args, found, table(rows, PROPOSAL_COLUMNS))


async def proposals_show(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    p = await admin.proposal(args.proposal_id)
    lines = [fields(p, ("proposal_id", "org", "proposer", "status", "created_at", "expires_at", "change_hash",
                        "approvals_required"))]
    lines += [f"{'approved':>18}  {a.admin} at {a.at}{': ' + a.reason if a.reason else ''}" for a in p.approvals]
    if p.closed_by:
        why = f": {p.reason}" if p.reason else ""
        lines.append(f"{'closed':>18}  {p.status} by {p.closed_by} at {p.closed_at}{why}")
    lines += [f"{'change':>18}  {line}" for line in p.summary]
    lines += [f"{'event':>18}  {json.dumps(e, sort_keys=True)}" for e in p.events]
    if not args.json:
        lines += ["\n" + side_by_side(d, terminal_width()) for d in await _proposed_diffs(admin, p.events)]
    return _say(args, p, "\n".join(lines))


async def _proposed_diffs(admin: AsyncAdmin, events: list[dict[str, Any]]) -> list[VersionDiff]:
    """Each policy and skill version the proposal would publish against the version before it, as the admin UI's
    proposal page shows them (:mod:`claiim_core.diff`)."""
    diffs = []
    for new in proposed_versions(events):
        versions: list[Any] = []
        with contextlib.suppress(AdminError):  # a new name: every line is added
            versions = await (admin.policy_versions(new.name) if isinstance(new, PolicyVersionInfo)
                              else admin.skill_versions(new.name))
        diffs.append(version_diff(new, versions))
    return diffs


async def proposals_decide(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    if args.subcommand == "approve":
        done = await admin.approve(args.proposal_id, args.reason, args.hash)
    else:
        done = await admin.reject(args.proposal_id, args.reason)
    return _say(args, done, f"{done.change} (control seq {done.control_seq})")


# -- agents ----------------------------------------------------------------------------------

AGENT_COLUMNS = ("agent_id", "status", "anchor", "skill_versions", "policy_version", "description")
AGENT_FIELDS = ("org", "agent_id", "status", "anchor", "description", "skills", "skill_versions", "policy",
                "policy_version", "has_token", "retired_tokens", "grace_until")


async def agent_list(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    agents = await admin.agents()
    return _say(args, agents, table(agents, AGENT_COLUMNS, ("agent", "status", "anchor", "skills", "policy",
                                                            "description")))


async def agent_show(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    agent = await admin.agent(args.agent_id)
    return _say(args, agent, fields(agent, AGENT_FIELDS))


async def agent_register(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    org = await _org(admin)
    if any(a.agent_id == args.agent_id for a in await admin.agents()):
        return _fail(f"agent {args.agent_id} is already registered in org {org}; "
                     "use `claiim agent set-anchor` or `claiim apply` to change it")
    bundle = {"org": org, "agents": [{"id": args.agent_id, "anchor": args.anchor, "skills": args.skills,
                                      "policy": args.policy, "description": args.description}]}
    reply = await admin.apply(bundle)
    return _say(args, reply, _changes(reply))


async def agent_op(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    done = await admin.agent_command(args.subcommand, args.agent_id, getattr(args, "reason", ""),
                                     anchor=getattr(args, "anchor", ""), grace=getattr(args, "grace", 0))
    text = "\n".join([f"{done.change} (control seq {done.control_seq})", *_proposed(done.proposal_id, done.pending)])
    if done.token:
        text += f"\nnew token for {args.agent_id} (shown once): {done.token}"
    return _say(args, done, text)


# -- skills and policies ---------------------------------------------------------------------


def _skill_text(v: SkillVersionInfo) -> str:
    return fields(v, ("label", "description", "content_hash")) + "\n" + "\n".join(
        f"{'action':>12}  {a}" for a in v.actions)


def _policy_text(v: PolicyVersionInfo) -> str:
    rules = ([f"{'allow':>12}  {rule_text(r)}" for r in v.allow] + [f"{'deny':>12}  {rule_text(r)}" for r in v.deny]
             + [f"{'approve':>12}  {approval_text(r)}" for r in v.approve])
    return fields(v, ("label", "description", "skill", "content_hash")) + "\n" + "\n".join(rules)


def _pick(versions: list[Any], version: int | None, what: str) -> Any:
    if version is None:
        return versions[-1]
    if not 1 <= version <= len(versions):
        raise AdminError(f"{what} has no version {version} (it has 1..{len(versions)})")
    return versions[version - 1]


async def skill_list(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    skills = await admin.skills()
    return _say(args, skills, table(skills, ("label", "actions", "description")))


async def skill_show(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    v = _pick(await admin.skill_versions(args.name), args.version, f"skill {args.name}")
    return _say(args, v, _skill_text(v))


async def skill_versions(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    versions = await admin.skill_versions(args.name)
    return _say(args, versions, table(versions, ("label", "content_hash", "actions", "description")))


async def skill_publish(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    bundle = {"org": await _org(admin),
              "skills": [{"name": args.name, "actions": args.actions, "description": args.description}]}
    reply = await admin.apply(bundle)
    return _say(args, reply, _changes(reply))


async def policy_list(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    policies = await admin.policies()
    return _say(args, policies, table(policies, ("label", "skill", "allow", "deny", "description")))


async def policy_show(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    v = _pick(await admin.policy_versions(args.name), args.version, f"policy {args.name}")
    return _say(args, v, _policy_text(v))


async def policy_versions(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    versions = await admin.policy_versions(args.name)
    return _say(args, versions, table(versions, ("label", "content_hash", "skill", "description")))


async def policy_publish(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    text = await asyncio.to_thread(Path(args.file).read_text)
    try:
        policy = parse_policy(text, str(args.file))
    except DocumentError as e:
        print(str(e), file=sys.stderr)
        return 1
    spec: dict[str, Any] = {"name": args.name or policy.name, "skill": policy.document.skill,
                            "allow": msgspec.to_builtins(policy.document.allow),
                            "deny": msgspec.to_builtins(policy.document.deny), "description": policy.description}
    if policy.document.approve:
        spec["approve"] = msgspec.to_builtins(policy.document.approve)
    if policy.version is not None:
        spec["version"] = policy.version
    bundle = {"org": await _org(admin), "policies": [spec]}
    try:
        reply = await admin.apply(bundle, dry_run=args.dry_run)
    except AdminError as e:
        if not e.problems:
            raise
        lines = yaml_lines(text)
        for problem in e.problems:
            print(locate(_strip_policy_path(problem), lines, str(args.file)), file=sys.stderr)
        return 1
    return _say(args, reply, _changes(reply))


def _strip_policy_path(problem: str) -> str:
    """``policies[0] (name).allow[1]: ...`` as ``allow[1]: ...``: the path within the policy file."""
    head, sep, rest = problem.partition(").")
    return rest if sep and head.startswith("policies[0] (") else problem


async def policy_diff_cmd(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    versions = await admin.policy_versions(args.name)
    old = _pick(versions, args.v1, f"policy {args.name}")
    new = _pick(versions, args.v2, f"policy {args.name}")
    lines = policy_diff(old, new)
    value = {"name": args.name, "from": {"label": old.label, "content_hash": old.content_hash},
             "to": {"label": new.label, "content_hash": new.content_hash},
             "removed": [line[2:] for line in lines if line.startswith("- ")],
             "added": [line[2:] for line in lines if line.startswith("+ ")]}
    return _say(args, value, f"--- {old.label} {old.content_hash}\n+++ {new.label} {new.content_hash}\n"
                + ("\n".join(lines) or "(no difference)"))


async def policy_shadow(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    if bool(args.candidate) == args.remove:
        raise AdminError("name the candidate (NAME-vN), or pass --remove")
    done = await admin.set_shadow(args.agent, args.candidate)
    return _say(args, done, f"{done.change} (control seq {done.control_seq})")


async def policy_shadow_report(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    report = await admin.shadow_report(args.agent, args.since, args.until)
    return _say(args, report, "\n".join(report.lines()))


# -- chron -----------------------------------------------------------------------------------

RECORD_COLUMNS = ("chron_id", "occurred_at", "outcome", "agent_id", "anchor", "action", "target", "policy", "skill",
                  "reason")
RECORD_WIDTHS = {"reason": 48}
"""A reason (``policy:no-prod-v1 -- action explicitly denied``) is clipped in the table; ``chron show`` and
``--json`` have all of it."""
CONTROL_COLUMNS = ("chron_id", "occurred_at", "actor", "action", "target", "control_seq")
CONTROL_HEADERS = ("chron_id", "occurred_at", "actor", "event", "subject", "control_seq")


async def chron_list(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    kind: Literal["decision", "control"] | None = args.kind or (None if args.approval else "decision")
    records = await admin.chron_list(agent_id=args.agent, anchor=args.anchor, action=args.action,
                                     outcome=args.outcome, since=args.since, until=args.until, kind=kind,
                                     trace_id=args.trace_id, approval_id=args.approval, before=args.before,
                                     after=args.after, limit=args.limit)
    if args.kind == "control":
        return _say(args, records, table(records, CONTROL_COLUMNS, CONTROL_HEADERS))
    return _say(args, records, table(records, RECORD_COLUMNS, clipped=RECORD_WIDTHS))


async def chron_show(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    record: ChronRecord | None = await admin.chron_show(args.chron_id)
    if record is None:
        return _fail(f"no record {args.chron_id}")
    names = [f for f in record.__struct_fields__ if f != "event"]
    return _say(args, record, fields(record, names) + f"\n{'event':>12}  {bytes(record.event).decode()}")


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("apply", None): apply,
    ("whoami", None): whoami,
    ("init", None): init,
    ("explain", None): explain,
    ("org", "list"): org_list,
    ("org", "show"): org_show,
    ("org", "create"): org_create,
    ("org", "set-approvals"): org_set_approvals,
    ("org", "set-webhook"): org_set_webhook,
    ("approvals", "list"): approvals_list,
    ("approvals", "show"): approvals_show,
    ("approvals", "grant"): approvals_decide,
    ("approvals", "refuse"): approvals_decide,
    ("proposals", "list"): proposals_list,
    ("proposals", "show"): proposals_show,
    ("proposals", "approve"): proposals_decide,
    ("proposals", "reject"): proposals_decide,
    ("admin", "list"): admin_list,
    ("admin", "enrol"): admin_enrol,
    ("admin", "revoke"): admin_revoke,
    ("agent", "list"): agent_list,
    ("agent", "show"): agent_show,
    ("agent", "register"): agent_register,
    ("agent", "set-anchor"): agent_op,
    ("agent", "suspend"): agent_op,
    ("agent", "reactivate"): agent_op,
    ("agent", "rotate-token"): agent_op,
    ("agent", "revoke-token"): agent_op,
    ("skill", "list"): skill_list,
    ("skill", "show"): skill_show,
    ("skill", "versions"): skill_versions,
    ("skill", "publish"): skill_publish,
    ("policy", "list"): policy_list,
    ("policy", "show"): policy_show,
    ("policy", "versions"): policy_versions,
    ("policy", "publish"): policy_publish,
    ("policy", "diff"): policy_diff_cmd,
    ("policy", "shadow"): policy_shadow,
    ("policy", "shadow-report"): policy_shadow_report,
    ("chron", "list"): chron_list,
    ("chron", "show"): chron_show,
    ("chron", "checkpoints"): chron.checkpoints,
    ("chron", "status"): chron.status,
    ("chron", "parked"): chron.parked,
    ("chron", "prove"): chron.prove,
    ("chron", "consistency"): chron.consistency,
}


async def run_admin_command(args: argparse.Namespace) -> int:
    handler = HANDLERS[(args.command, getattr(args, "subcommand", None))]
    admin = AsyncAdmin(org=getattr(args, "org", None))
    try:
        return await handler(admin, args)
    finally:
        await admin.close()
