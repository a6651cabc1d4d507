"""The ``claiim`` command line: argument parsing and dispatch.

Settings come from the environment (``CLAIIM_URL``, ``CLAIIM_ADMIN_TOKEN``, ``CLAIIM_ORG``, ...).
When a variable is unset and ``./.claiim/env`` (written by ``claiim up``) exists, the CLI reads
it from there. The admin commands themselves are in :mod:`claiim_server.cli.commands`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from claiim.errors import ClaiimError
from claiim.mcp.cli import add_proxy_arguments
from claiim.mcp.cli import run as run_mcp
from claiim_core.policytest import DocumentError, parse_cases, parse_policy, run_cases

from claiim_server.cli import chron as chron_cli
from claiim_server.cli.chron import add_commands as add_chron_commands
from claiim_server.cli.commands import run_admin_command
from claiim_server.cli.keys import add_commands as add_key_commands
from claiim_server.cli.keys import keygen, nats_config

DEFAULT_DATA_DIR = Path(".claiim")


def load_env_file(path: Path) -> None:
    """Set variables from a KEY=VALUE file, without overriding ones already set."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            os.environ.setdefault(key.strip(), value.strip())


def _leaf(sub: Any, name: str, text: str, *, org: bool = True, json: bool = True) -> argparse.ArgumentParser:
    """A command with the options every admin command has: ``--org`` and ``--json``."""
    cmd: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text)
    if org:
        cmd.add_argument("--org", default=None,
                         help="org to act in (default: CLAIIM_ORG, else the admin token's own org)")
    if json:
        cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return cmd


def _group(sub: Any, name: str, text: str) -> Any:
    group = sub.add_parser(name, help=text, description=text)
    return group.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="claiim", description="Identity control plane for AI agents.")
    p.add_argument("--env-file", type=Path, default=DEFAULT_DATA_DIR / "env",
                   help="read unset CLAIIM_* variables from this file (default: .claiim/env)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the embedded stack (NATS, PostgreSQL, gate, control, Chron, admin UI)")
    up.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    up.add_argument("--nats-port", type=int, default=4222)
    up.add_argument("--nats-url", help="use this existing NATS server instead of starting one")
    up.add_argument("--database-url", help="use this existing PostgreSQL database")
    up.add_argument("--no-demo", action="store_true", help="do not load the demo bundle")
    up.add_argument("--ui-port", type=int, default=8480, help="the admin web UI's port on 127.0.0.1 (0: any free)")
    up.add_argument("--nats-cluster", type=int, choices=(1, 3, 5), default=1, metavar="N",
                    help="start N nats-server nodes as a cluster (3 or 5; client ports from --nats-port up), "
                         "every stream with N replicas")
    up.add_argument("--gate-workers", type=int, default=None, metavar="N",
                    help="run the gate as N processes of its own (default: one per two cores, 1 to 4)")

    serve = sub.add_parser("serve", help="run services against existing servers (settings from env)")
    serve.add_argument("services", nargs="+", choices=["gate", "control", "chron", "ocsf", "auth", "admin", "all"])
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="run the gate as N processes in its queue group, supervised by this one (default 1: "
                            "in this process)")
    serve.add_argument("--http-port", type=int, default=None, metavar="PORT",
                       help="serve /metrics, /healthz and /readyz on this port (0: any free port; default: "
                            "CLAIIM_HTTP_PORT, else none); with --workers, each gate worker takes a free port")

    apply = _leaf(sub, "apply", "apply a bundle of skills, policies and agents (idempotent)", org=False)
    apply.add_argument("-f", "--file", type=Path, required=True)
    apply.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")

    _leaf(sub, "whoami", "who the admin token belongs to, and its org")

    init = _leaf(sub, "init", "create an org with its first admins (operator token); prints their tokens once",
                 org=False)
    init.add_argument("org")
    init.add_argument("--admin", action="append", required=True, dest="admins",
                      help="an admin to enrol; at least two, so that one can approve the other's changes")
    init.add_argument("--description", default="")

    explain = _leaf(sub, "explain", "what the gate would decide now, and why (dry run, not recorded)")
    explain.add_argument("--agent", required=True)
    explain.add_argument("--action", required=True)
    explain.add_argument("--target", default="")
    explain.add_argument("--context", action="append", default=[], metavar="KEY=VALUE",
                         help="a context entry the check would carry (repeatable), for rules' conditions")

    org = _group(sub, "org", "organizations: hard boundaries around agents, skills, policies and admins")
    _leaf(org, "list", "the orgs this token sees (all of them for the operator)", org=False)
    _leaf(org, "show", "one org with its counts")
    create = _leaf(org, "create", "create an org (operator token only)", org=False)
    create.add_argument("name")
    create.add_argument("--description", default="")
    _leaf(org, "set-approvals", "how many admins besides the proposer approve a widening change (a proposal)"
          ).add_argument("approvals", type=int)
    hook = _leaf(org, "set-webhook", "announce each waiting approval with a JSON POST to URL (a proposal)")
    hook.add_argument("url", nargs="?", default="", help="http(s) URL; Slack and Teams incoming webhooks work")
    hook.add_argument("--remove", action="store_true", help="announce approvals nowhere")

    proposals = _group(sub, "proposals", "two-person control: changes waiting for another admin's approval")
    ls = _leaf(proposals, "list", "the org's proposals, newest first")
    ls.add_argument("--status", choices=["pending", "applied", "rejected", "expired", "failed"], default="")
    _leaf(proposals, "show", "one proposal with the exact change it holds").add_argument("proposal_id")
    for op, text in (("approve", "approve (the last approval needed applies the stored change)"),
                     ("reject", "reject (the proposer may withdraw their own)")):
        cmd = _leaf(proposals, op, text)
        cmd.add_argument("proposal_id")
        cmd.add_argument("--reason", default="")
        if op == "approve":
            cmd.add_argument("--hash", default="", help="the change hash you reviewed (`proposals show`)")

    approvals = _group(sub, "approvals", "single actions waiting for a person's approval (policies' approve rules)")
    ls = _leaf(approvals, "list", "the approvals waiting for a decision that you can see, newest first")
    ls.add_argument("--agent", default="", help="only this agent's")
    ls.add_argument("--all", action="store_true", dest="closed", help="decided and expired ones too")
    _leaf(approvals, "show", "one approval: the request, its rule and policy version, where it stands"
          ).add_argument("approval_id")
    for op, text in (("grant", "grant: the agent gets ALLOW for exactly that request, once"),
                     ("refuse", "refuse: the agent gets DENY approval:refused with your reason")):
        cmd = _leaf(approvals, op, text)
        cmd.add_argument("approval_id")
        cmd.add_argument("--reason", required=True, help="why (recorded in Chron with your name)")
        cmd.add_argument("--hash", default="", help="the request hash you reviewed (`approvals show`)")

    admin = _group(sub, "admin", "people of an org: admin (read and change), auditor (read only) or anchor "
                                 "(decides its agents' approvals)")
    _leaf(admin, "list", "the org's admins and their roles")
    enrol = _leaf(admin, "enrol", "enrol an admin, auditor or anchor; prints its token once")
    enrol.add_argument("name")
    enrol.add_argument("--role", choices=["admin", "auditor", "anchor"], default="admin",
                       help="an anchor's name is the anchor its agents name")
    revoke = _leaf(admin, "revoke", "revoke an admin's token")
    revoke.add_argument("name")
    revoke.add_argument("--reason", default="")

    agent = _group(sub, "agent", "agents: identities with an anchor, skills and a bound policy")
    _leaf(agent, "list", "the org's agents")
    _leaf(agent, "show", "one agent, with what its skill and policy references resolve to").add_argument("agent_id")
    register = _leaf(agent, "register", "register an agent; prints its token once")
    register.add_argument("agent_id")
    register.add_argument("--anchor", required=True, help="the accountable human")
    register.add_argument("--skill", action="append", required=True, dest="skills",
                          help="skill reference, NAME (latest) or NAME-vN (pinned); repeatable")
    register.add_argument("--policy", required=True, help="policy reference, NAME or NAME-vN")
    register.add_argument("--description", default="")
    anchor = _leaf(agent, "set-anchor", "name another accountable human")
    anchor.add_argument("agent_id")
    anchor.add_argument("anchor")
    anchor.add_argument("--reason", default="")
    for op, text in (("suspend", "deny every check of the agent at once (kill switch)"),
                     ("reactivate", "end a suspension"),
                     ("rotate-token", "issue a new token; the old one is denied from now on"),
                     ("revoke-token", "invalidate the agent's token")):
        cmd = _leaf(agent, op, text)
        cmd.add_argument("agent_id")
        if op != "rotate-token":
            cmd.add_argument("--reason", default="")

    skill = _group(sub, "skill", "skills: named, versioned sets of action patterns")
    _leaf(skill, "list", "the latest version of each skill")
    show = _leaf(skill, "show", "one version of a skill (default: the latest)")
    show.add_argument("name")
    show.add_argument("--version", type=int)
    _leaf(skill, "versions", "every version of a skill").add_argument("name")
    publish = _leaf(skill, "publish", "publish a new version of a skill (nothing when unchanged)")
    publish.add_argument("name")
    publish.add_argument("--action", action="append", required=True, dest="actions",
                         help="action pattern, e.g. deploy:staging or deploy:*; repeatable")
    publish.add_argument("--description", default="")

    policy = _group(sub, "policy", "policies: versioned allow and deny rules over a skill")
    _leaf(policy, "list", "the latest version of each policy")
    show = _leaf(policy, "show", "one version of a policy (default: the latest)")
    show.add_argument("name")
    show.add_argument("--version", type=int)
    _leaf(policy, "versions", "every version of a policy").add_argument("name")
    publish = _leaf(policy, "publish", "publish a policy document file as a new version")
    publish.add_argument("file", type=Path)
    publish.add_argument("--name", help="policy name (default: the file's name: key, else the file name)")
    publish.add_argument("--dry-run", action="store_true")
    diff = _leaf(policy, "diff", "what changed between two versions of a policy", json=False)
    diff.add_argument("name")
    diff.add_argument("v1", type=int)
    diff.add_argument("v2", type=int)
    shadow = _leaf(policy, "shadow", "evaluate a candidate policy version beside an agent's bound one, log-only: "
                                     "decisions record what it would decide, no answer changes")
    shadow.add_argument("candidate", nargs="?", default="", help="NAME-vN (a bare NAME pins its newest version)")
    shadow.add_argument("--agent", required=True)
    shadow.add_argument("--remove", action="store_true", help="stop evaluating the agent's candidate")
    report = _leaf(policy, "shadow-report", "which of an agent's decisions its log-only candidate would have "
                                            "decided otherwise")
    report.add_argument("--agent", required=True)
    report.add_argument("--since", help="ISO 8601 time (inclusive)")
    report.add_argument("--until", help="ISO 8601 time (exclusive)")
    test = _leaf(policy, "test", "run a policy file against expected cases (exit 1 on a mismatch)",
                 org=False, json=False)
    test.add_argument("policy_file", type=Path)
    test.add_argument("cases_file", type=Path)

    chron = _group(sub, "chron", "read Chron, the audit trail")
    ls = _leaf(chron, "list", "list records, newest first (by leaf index)")
    ls.add_argument("--agent")
    ls.add_argument("--anchor", help="the accountable human")
    ls.add_argument("--action", help="exact action, or a prefix ending in *, e.g. 'deploy:*'")
    ls.add_argument("--outcome", choices=["ALLOW", "DENY", "PENDING"], type=str.upper)
    ls.add_argument("--since", help="ISO 8601 time (inclusive), e.g. 2026-11-25T10:00:00+00:00")
    ls.add_argument("--until", help="ISO 8601 time (exclusive)")
    ls.add_argument("--kind", choices=["decision", "control"],
                    help="decision (the default) or control records; with --approval, both")
    ls.add_argument("--trace-id", type=str.lower, metavar="TRACE",
                    help="the decisions of one W3C trace (32 hex digits, as in a traceparent)")
    ls.add_argument("--approval", metavar="ID", help="every record of one approval: the PENDING decision, the "
                                                     "grant, refusal or expiry, and the ALLOW or DENY ending it")
    ls.add_argument("--before", type=int, metavar="LEAF", help="only older records: the next page after LEAF")
    ls.add_argument("--after", type=int, metavar="LEAF", help="only newer records: the page just newer than LEAF")
    ls.add_argument("--limit", type=int, default=50)
    _leaf(chron, "show", "show one record").add_argument("chron_id")
    add_chron_commands(chron, _leaf)

    mcp = _group(sub, "mcp", "claiim in front of MCP servers")
    add_proxy_arguments(mcp.add_parser("proxy", help="an MCP server that asks the gate before every call",
                                       description="an MCP server that asks the gate before every call "
                                                   "(docs/mcp.md)"))

    sub.add_parser("rehearsal", help="check a running stack end to end")
    add_key_commands(sub)
    return p


class UsageError(Exception):
    """The command cannot run as given: one line that names the fix, exit code 2."""


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    as_json = bool(getattr(args, "json", False))
    try:
        if args.command != "up":
            if args.env_file != DEFAULT_DATA_DIR / "env" and not args.env_file.exists():
                raise UsageError(f"the env file {args.env_file} does not exist (--env-file: a KEY=VALUE file, as "
                                 "`claiim up` writes DIR/env)")
            load_env_file(args.env_file)
        code = dispatch(args)
    except UsageError as e:
        code = _fail(as_json, "usage", f"error: {e}", 2)
    except ClaiimError as e:
        code = _fail(as_json, getattr(e, "code", "") or type(e).__name__, e.diagnostics(), 1)
    except OSError as e:  # a file the command was given cannot be read or written
        where = f" {e.filename}" if e.filename else ""
        code = _fail(as_json, "file", f"error: cannot use{where}: {e.strerror or e}", 2)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _fail(as_json: bool, code: str, message: str, exit_code: int) -> int:
    """Say what went wrong on stderr: one line, or with ``--json`` one JSON object."""
    if as_json:
        print(json.dumps({"error": message.removeprefix("error: "), "code": code}), file=sys.stderr)
    else:
        print(message, file=sys.stderr)
    return exit_code


def _admin_token_usable() -> None:
    """Raise :class:`UsageError` when no admin token is set, or an agent token is given instead of one."""
    token = os.environ.get("CLAIIM_ADMIN_TOKEN", "")
    if not token:
        raise UsageError("no admin token: set CLAIIM_ADMIN_TOKEN, or run this where `claiim up` wrote .claiim/env, "
                         "or pass --env-file DIR/env")
    if token.startswith("clm_"):
        raise UsageError("CLAIIM_ADMIN_TOKEN holds an agent token (clm_...): admin commands need an admin token "
                         "(cla_..., from `claiim admin enrol`) or the operator token")


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "mcp":
        return run_mcp(args)
    if args.command == "up":
        from claiim_server.stack import UpOptions, main_up
        from claiim_server.workers import default_workers

        main_up(UpOptions(args.data_dir, args.nats_port, args.nats_url, args.database_url,
                          demo=not args.no_demo, ui_port=args.ui_port, nats_cluster=args.nats_cluster,
                          gate_workers=args.gate_workers or default_workers()))
        return 0
    if args.command == "serve":
        from claiim_server.cli.serve import serve

        return serve(args.services, args.workers, args.http_port)
    if args.command == "keygen":
        return keygen(args)
    if args.command == "nats-config":
        return nats_config(args)
    if args.command == "policy" and args.subcommand == "test":
        return policy_test(args.policy_file, args.cases_file)
    if args.command == "chron" and args.subcommand in chron_cli.OFFLINE:
        return chron_cli.run_offline(args)
    if args.command == "chron" and args.subcommand in chron_cli.DIRECT:
        return chron_cli.run_direct(args)
    _admin_token_usable()
    if args.command == "rehearsal":
        from claiim_server.cli.rehearsal import rehearsal

        return asyncio.run(rehearsal())
    return asyncio.run(run_admin_command(args))


def policy_test(policy_file: Path, cases_file: Path) -> int:
    """Exit 0 when every case holds, 1 on a mismatch, 2 when a document is invalid."""
    from claiim_runtime.conditions import CelConditions  # here: the CEL library is not loaded by every command

    conditions = CelConditions()
    try:
        policy = parse_policy(policy_file.read_text(), str(policy_file), conditions)
        cases = parse_cases(cases_file.read_text(), str(cases_file))
    except DocumentError as e:
        print(str(e), file=sys.stderr)
        return 2
    results = run_cases(policy.label, policy.document, cases, conditions)
    for r in results:
        mark = "PASS" if r.passed else "FAIL"
        want = r.case.expect + (f" ({r.case.reason})" if r.case.reason else "")
        got = f"{r.outcome} {r.reason} [{r.rule}]"
        on = f" on {r.case.target}" if r.case.target else ""
        print(f"{mark}  {cases_file}:{r.case.line}  {r.case.action}{on}: got {got}, want {want}")
    failed = sum(not r.passed for r in results)
    print(f"PASS: {len(results) - failed} / FAIL: {failed}")
    return 1 if failed else 0
