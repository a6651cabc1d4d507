# PYTHON_ARGCOMPLETE_OK  (argcomplete's marker: `claiim` completes once argcomplete is activated)
"""The ``claiim`` command line: argument parsing and dispatch.

Settings come from the environment (``CLAIIM_URL``, ``CLAIIM_ADMIN_TOKEN``, ``CLAIIM_ORG``, ...).
Unset ones are read from ``--env-file FILE``, else from ``DIR/env`` of ``--data-dir DIR`` (or
``CLAIIM_DATA_DIR``), else from ``./.claiim/env`` when it exists (``claiim up`` writes ``DIR/env``).
The admin commands themselves are in :mod:`claiim_server.cli.commands`; examples, the environment
in each command's help, completion and relative times in :mod:`claiim_server.cli.usage`.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import argcomplete
from claiim.errors import ClaiimError
from claiim.mcp.cli import add_proxy_arguments
from claiim.mcp.cli import run as run_mcp
from claiim.transport import resolve_url

from claiim_server.cli import chron as chron_cli
from claiim_server.cli.chron import add_commands as add_chron_commands
from claiim_server.cli.commands import run_admin_command
from claiim_server.cli.keys import add_commands as add_key_commands
from claiim_server.cli.keys import keygen, nats_config
from claiim_server.cli.policytest import FORMATS, policy_test
from claiim_server.cli.usage import SHELLS, WHEN_HELP, annotate, completion_script, version_text, when

DEFAULT_DATA_DIR = Path(".claiim")
REHEARSAL_WRITES = (
    "It WRITES to the stack it runs against: a new org rehearsal-<hex> (and a second, rehearsal-<hex>-x, for an "
    "outsider) with skills, policies and four agents, an auditor, an anchor and an admin, token rotations, a "
    "suspension, a proposal and an approval, and some forty ALLOW, DENY and PENDING decisions. Every one of them "
    "is recorded in Chron, which is append-only: they stay in that log for good. Run it against a test or staging "
    "stack (claiim up starts one of your own), not a production log; --yes runs it.")


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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> int:
    """Seconds in ``30s``, ``10m``, ``2h``, ``1d`` (a bare number is seconds)."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30s, 10m, 2h or 1d")
    return int(number) * _UNITS[unit]


def _group(sub: Any, name: str, text: str) -> Any:
    group = sub.add_parser(name, help=text, description=text)
    return group.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="claiim", description="Identity control plane for AI agents.",
                                epilog="`claiim COMMAND --help` shows a command's options, examples and the "
                                       "environment it reads. Shell completion: `claiim completion --help`.")
    p.add_argument("--version", action="version", version=version_text(),
                   help="print the installed claiim-server and claiim versions and exit")
    p.add_argument("--env-file", type=Path, default=None, metavar="FILE",
                   help="read unset CLAIIM_* variables from this KEY=VALUE file (default: DIR/env with --data-dir, "
                        "else .claiim/env when it exists)")
    p.add_argument("--data-dir", type=Path, default=None, dest="stack_dir", metavar="DIR",
                   help="the data directory of a `claiim up` stack: read unset CLAIIM_* variables from DIR/env "
                        "(default: CLAIIM_DATA_DIR); for `up`, where the stack keeps its data")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the embedded stack (NATS, PostgreSQL, gate, control, Chron, admin UI)",
                        description="Run the embedded stack (NATS, PostgreSQL, gate, control, Chron, admin UI) in "
                                    "the foreground; it writes DIR/env for the CLI.")
    up.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                    help="where the stack keeps its data, keys and env file (default: CLAIIM_DATA_DIR, else .claiim)")
    up.add_argument("--nats-port", type=int, default=4222, help="the NATS client port (default 4222)")
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
    serve.add_argument("services", nargs="+", choices=["gate", "control", "chron", "ocsf", "auth", "admin", "all"],
                       help="the services to run in this process (all: every one)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="run the gate as N processes in its queue group, supervised by this one (default 1: "
                            "in this process)")
    serve.add_argument("--http-port", type=int, default=None, metavar="PORT",
                       help="serve /metrics, /healthz and /readyz on this port (0: any free port; default: "
                            "CLAIIM_HTTP_PORT, else none); with --workers, each gate worker takes a free port")

    apply = _leaf(sub, "apply", "apply a bundle of skills, policies and agents (idempotent)", org=False)
    apply.add_argument("-f", "--file", type=Path, required=True,
                       help="the bundle: YAML with org, skills, policies and agents (docs/control-plane.md)")
    apply.add_argument("--dry-run", action="store_true",
                       help="say what would change (would publish/register ...) and whether it would become a "
                            "proposal needing approvals; change nothing")

    _leaf(sub, "whoami", "who the admin token belongs to, and its org")

    init = _leaf(sub, "init", "create an org with its first admins (operator token); prints their tokens once",
                 org=False)
    init.add_argument("org", help="the new org's name")
    init.add_argument("--admin", action="append", required=True, dest="admins",
                      help="an admin to enrol; at least two, so that one can approve the other's changes")
    init.add_argument("--description", default="", help="what the org is for")

    explain = _leaf(sub, "explain", "what the gate would decide now, and why (dry run, not recorded)")
    explain.add_argument("--agent", required=True, help="the agent's id")
    explain.add_argument("--action", required=True, help="the action it would ask for, e.g. deploy:production")
    explain.add_argument("--target", default="", help="what it would act on (default: none)")
    explain.add_argument("--context", action="append", default=[], metavar="KEY=VALUE",
                         help="a context entry the check would carry (repeatable), for rules' conditions")

    org = _group(sub, "org", "organizations: hard boundaries around agents, skills, policies and admins")
    _leaf(org, "list", "the orgs this token sees (all of them for the operator)", org=False)
    _leaf(org, "show", "one org with its counts")
    create = _leaf(org, "create", "create an org (operator token only)", org=False)
    create.add_argument("name", help="the new org's name")
    create.add_argument("--description", default="", help="what the org is for")
    _leaf(org, "set-approvals", "how many admins besides the proposer approve a widening change (a proposal)"
          ).add_argument("approvals", type=int, help="the number of approvals (0: changes apply at once)")
    hook = _leaf(org, "set-webhook", "announce each waiting approval with a JSON POST to URL (a proposal)")
    hook.add_argument("url", nargs="?", default="", help="http(s) URL; Slack and Teams incoming webhooks work")
    hook.add_argument("--remove", action="store_true", help="announce approvals nowhere")

    proposals = _group(sub, "proposals", "two-person control: changes waiting for another admin's approval")
    ls = _leaf(proposals, "list", "the org's proposals, newest first")
    ls.add_argument("--status", choices=["pending", "applied", "rejected", "expired", "failed"], default="",
                    help="only proposals in this state (default: all)")
    _leaf(proposals, "show", "one proposal with the exact change it holds, and a side-by-side diff of each policy "
                             "and skill version it would publish").add_argument(
        "proposal_id", help="the proposal's id, from `proposals list`")
    for op, text in (("approve", "approve (the last approval needed applies the stored change)"),
                     ("reject", "reject (the proposer may withdraw their own)")):
        cmd = _leaf(proposals, op, text)
        cmd.add_argument("proposal_id", help="the proposal's id, from `proposals list`")
        cmd.add_argument("--reason", default="", help="why (recorded with your name)")
        if op == "approve":
            cmd.add_argument("--hash", default="", help="the change hash you reviewed (`proposals show`)")

    approvals = _group(sub, "approvals", "single actions waiting for a person's approval (policies' approve rules)")
    ls = _leaf(approvals, "list", "the approvals waiting for a decision that you can see, newest first")
    ls.add_argument("--agent", default="", help="only this agent's")
    ls.add_argument("--all", action="store_true", dest="closed", help="decided and expired ones too")
    _leaf(approvals, "show", "one approval: the request, its rule and policy version, where it stands"
          ).add_argument("approval_id", help="the approval's id, from `approvals list`")
    for op, text in (("grant", "grant: the agent gets ALLOW for exactly that request, once"),
                     ("refuse", "refuse: the agent gets DENY approval:refused with your reason")):
        cmd = _leaf(approvals, op, text)
        cmd.add_argument("approval_id", help="the approval's id, from `approvals list`")
        cmd.add_argument("--reason", required=True, help="why (recorded in Chron with your name)")
        cmd.add_argument("--hash", default="", help="the request hash you reviewed (`approvals show`)")

    admin = _group(sub, "admin", "people of an org: admin (read and change), auditor (read only) or anchor "
                                 "(decides its agents' approvals)")
    _leaf(admin, "list", "the org's admins and their roles")
    enrol = _leaf(admin, "enrol", "enrol an admin, auditor or anchor; prints its token once")
    enrol.add_argument("name", help="the person's name (an anchor's: the name its agents give as anchor)")
    enrol.add_argument("--role", choices=["admin", "auditor", "anchor"], default="admin",
                       help="an anchor's name is the anchor its agents name")
    revoke = _leaf(admin, "revoke", "revoke an admin's token")
    revoke.add_argument("name", help="the admin's name")
    revoke.add_argument("--reason", default="", help="why (recorded with your name)")

    agent = _group(sub, "agent", "agents: identities with an anchor, skills and a bound policy")
    _leaf(agent, "list", "the org's agents")
    _leaf(agent, "show", "one agent, with what its skill and policy references resolve to").add_argument(
        "agent_id", help="the agent's id")
    register = _leaf(agent, "register", "register an agent; prints its token once")
    register.add_argument("agent_id", help="the new agent's id: letters, digits, '_' and '-'")
    register.add_argument("--anchor", required=True, help="the accountable human")
    register.add_argument("--skill", action="append", required=True, dest="skills",
                          help="skill reference, NAME (latest) or NAME-vN (pinned); repeatable")
    register.add_argument("--policy", required=True, help="policy reference, NAME or NAME-vN")
    register.add_argument("--description", default="", help="what the agent does")
    anchor = _leaf(agent, "set-anchor", "name another accountable human")
    anchor.add_argument("agent_id", help="the agent's id")
    anchor.add_argument("anchor", help="the new accountable human")
    anchor.add_argument("--reason", default="", help="why (recorded with your name)")
    for op, text in (("suspend", "deny every check of the agent at once (kill switch)"),
                     ("reactivate", "end a suspension"),
                     ("rotate-token", "issue a new token; the old one is denied from now on, or from the "
                                      "end of --grace"),
                     ("revoke-token", "invalidate the agent's token (and any old one still in its grace)")):
        cmd = _leaf(agent, op, text)
        cmd.add_argument("agent_id", help="the agent's id")
        if op != "rotate-token":
            cmd.add_argument("--reason", default="", help="why (recorded with your name)")
        else:
            cmd.add_argument("--grace", type=duration, default=0, metavar="DURATION",
                             help="keep the old token valid this long (30s, 10m, 2h, 1d; at most 7d) so the new "
                                  "one can be rolled out without an outage; then it is denied auth:rotated-token. "
                                  "Default: denied at once")

    skill = _group(sub, "skill", "skills: named, versioned sets of action patterns")
    _leaf(skill, "list", "the latest version of each skill")
    show = _leaf(skill, "show", "one version of a skill (default: the latest)")
    show.add_argument("name", help="the skill's name")
    show.add_argument("--version", type=int, help="this version (default: the latest)")
    _leaf(skill, "versions", "every version of a skill").add_argument("name", help="the skill's name")
    publish = _leaf(skill, "publish", "publish a new version of a skill (nothing when unchanged)")
    publish.add_argument("name", help="the skill's name")
    publish.add_argument("--action", action="append", required=True, dest="actions",
                         help="action pattern, e.g. deploy:staging or deploy:*; repeatable")
    publish.add_argument("--description", default="", help="what the skill is for")

    policy = _group(sub, "policy", "policies: versioned allow and deny rules over a skill")
    _leaf(policy, "list", "the latest version of each policy")
    show = _leaf(policy, "show", "one version of a policy (default: the latest)")
    show.add_argument("name", help="the policy's name")
    show.add_argument("--version", type=int, help="this version (default: the latest)")
    _leaf(policy, "versions", "every version of a policy").add_argument("name", help="the policy's name")
    publish = _leaf(policy, "publish", "publish a policy document file as a new version")
    publish.add_argument("file", type=Path, help="the policy file: YAML with skill, allow, deny (and approve)")
    publish.add_argument("--name", help="policy name (default: the file's name: key, else the file name)")
    publish.add_argument("--dry-run", action="store_true",
                         help="say which version would be published and whether it would become a proposal "
                              "needing approvals; change nothing")
    diff = _leaf(policy, "diff", "what changed between two versions of a policy (--json: the removed and added "
                                 "lines as JSON)")
    diff.add_argument("name", help="the policy's name")
    diff.add_argument("v1", type=int, help="the earlier version's number")
    diff.add_argument("v2", type=int, help="the later version's number")
    shadow = _leaf(policy, "shadow", "evaluate a candidate policy version beside an agent's bound one, log-only: "
                                     "decisions record what it would decide, no answer changes")
    shadow.add_argument("candidate", nargs="?", default="", help="NAME-vN (a bare NAME pins its newest version)")
    shadow.add_argument("--agent", required=True, help="the agent whose decisions the candidate shadows")
    shadow.add_argument("--remove", action="store_true", help="stop evaluating the agent's candidate")
    report = _leaf(policy, "shadow-report", "which of an agent's decisions its log-only candidate would have "
                                            "decided otherwise")
    report.add_argument("--agent", required=True, help="the agent whose decisions to compare")
    report.add_argument("--since", type=when, help="decisions from this time on (inclusive): " + WHEN_HELP)
    report.add_argument("--until", type=when, help="decisions before this time: " + WHEN_HELP)
    test = _leaf(policy, "test", "run policy test suites, or a policy file against its cases, offline: exit 0 "
                                 "when every case holds, 1 on a mismatch, 2 when a file cannot be used", org=False,
                 json=False)
    test.add_argument("target", type=Path, metavar="DIR|SUITE|POLICY",
                      help="a directory (every *_test.yaml suite in it and below), one suite file, or a policy "
                           "file followed by its cases file")
    test.add_argument("cases_file", type=Path, nargs="?", metavar="CASES",
                      help="with a policy file: its cases (a list of cases, or a suite without policy:)")
    test.add_argument("--run", metavar="REGEX", help="only the cases whose name REGEX matches (re.search), "
                                                     "e.g. --run 'prod|rollback'")
    test.add_argument("--format", choices=FORMATS, default=None, dest="fmt",
                      help="text (default), json, or junit (JUnit XML for CI: a testsuite per suite file)")
    test.add_argument("--coverage", action="store_true",
                      help="also report the policy rules no case was decided by, e.g. "
                           "'allow[2]: deploy:rollback-* never decided a case'")
    test.add_argument("--json", action="store_true", help="same as --format json")

    chron = _group(sub, "chron", "read Chron, the audit trail")
    ls = _leaf(chron, "list", "list records, newest first (by leaf index)")
    ls.add_argument("--agent", help="only this agent's records")
    ls.add_argument("--anchor", help="the accountable human")
    ls.add_argument("--action", help="exact action, or a prefix ending in *, e.g. 'deploy:*'")
    ls.add_argument("--outcome", choices=["ALLOW", "DENY", "PENDING"], type=str.upper, help="only this outcome")
    ls.add_argument("--since", type=when, help="records from this time on (inclusive): " + WHEN_HELP +
                    ", e.g. 1h or 2026-11-25T10:00:00+00:00")
    ls.add_argument("--until", type=when, help="records before this time: " + WHEN_HELP)
    ls.add_argument("--kind", choices=["decision", "control"],
                    help="decision (the default) or control records; with --approval, both")
    ls.add_argument("--trace-id", type=str.lower, metavar="TRACE",
                    help="the decisions of one W3C trace (32 hex digits, as in a traceparent)")
    ls.add_argument("--approval", metavar="ID", help="every record of one approval: the PENDING decision, the "
                                                     "grant, refusal or expiry, and the ALLOW or DENY ending it")
    ls.add_argument("--before", type=int, metavar="LEAF", help="only older records: the next page after LEAF")
    ls.add_argument("--after", type=int, metavar="LEAF", help="only newer records: the page just newer than LEAF")
    ls.add_argument("--limit", type=int, default=50, help="at most this many records (default 50)")
    _leaf(chron, "show", "show one record").add_argument("chron_id", help="chr_..., from `chron list`")
    add_chron_commands(chron, _leaf)

    mcp = _group(sub, "mcp", "claiim in front of MCP servers")
    add_proxy_arguments(mcp.add_parser("proxy", help="an MCP server that asks the gate before every call",
                                       description="an MCP server that asks the gate before every call "
                                                   "(docs/mcp.md)"))

    rehearsal = sub.add_parser("rehearsal", help="check a running stack end to end (writes a test org into "
                                                 "its log: needs --yes)",
                               description="Check a running stack end to end, one line per check. "
                                           + REHEARSAL_WRITES)
    rehearsal.add_argument("--yes", action="store_true",
                           help="run it: write the rehearsal's org, agents, admins and decisions into this stack")
    add_key_commands(sub)
    completion = sub.add_parser(
        "completion", help="print the script that makes your shell complete claiim's commands and options",
        description="Print the shell code that completes claiim (argcomplete). Load it in your shell's startup "
                    "file:\n\n  bash: eval \"$(claiim completion bash)\"        (in ~/.bashrc)\n"
                    "  zsh:  eval \"$(claiim completion zsh)\"         (in ~/.zshrc)\n"
                    "  fish: claiim completion fish | source      (in ~/.config/fish/config.fish)\n\n"
                    "`register-python-argcomplete claiim` prints the same.")
    completion.add_argument("shell", choices=SHELLS, help="the shell to print the script for")
    annotate(p)
    return p


class UsageError(Exception):
    """The command cannot run as given: one line that names the fix, exit code 2."""


def env_file(args: argparse.Namespace) -> Path:
    """The env file to read: ``--env-file``, else ``DIR/env`` of ``--data-dir``/``CLAIIM_DATA_DIR``, else
    ``./.claiim/env``; one that was named must exist."""
    if args.env_file is not None:
        if not args.env_file.exists():
            raise UsageError(f"the env file {args.env_file} does not exist (--env-file: a KEY=VALUE file, as "
                             "`claiim up` writes DIR/env)")
        return Path(args.env_file)
    stack = args.stack_dir or os.environ.get("CLAIIM_DATA_DIR")
    if stack:
        named = "--data-dir" if args.stack_dir else "CLAIIM_DATA_DIR"
        if not (Path(stack) / "env").is_file():
            raise UsageError(f"{named} {stack}: there is no {Path(stack) / 'env'} (the directory `claiim up "
                             "--data-dir DIR` was given writes DIR/env when the stack is ready)")
        return Path(stack) / "env"
    return DEFAULT_DATA_DIR / "env"


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    argcomplete.autocomplete(parser)  # answers the shell's completion request and exits; else nothing
    args = parser.parse_args(argv)
    as_json = bool(getattr(args, "json", False))
    try:
        if args.command not in ("up", "completion"):
            load_env_file(env_file(args))
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


EXIT_WAIT_S = 5.0
"""How long the ``claiim`` command waits for threads still running when it exits."""


def run() -> NoReturn:
    """The ``claiim`` command: :func:`main`, then an exit that skips tearing the interpreter down.

    Freeing the modules a claiim process imports (nats-py brings aiohttp) took 0.45-0.7 s here after
    every command, and more on a loaded machine: time a ``claiim serve`` stopping on SIGTERM does not
    have (its services stop within 1.5 s of the 2 s it is given). What an exit must still do is done
    here: other threads are waited for (:data:`EXIT_WAIT_S` at most, all together), ``atexit``
    functions run (logging flushes its handlers, an embedded PostgreSQL is cleaned up) and standard
    output is flushed, whose failure (a closed pipe) makes the exit code 120, as Python's own exit
    does."""
    try:
        main()
        code = 0
    except SystemExit as e:
        code = _exit_code(e.code)
    deadline = time.monotonic() + EXIT_WAIT_S
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                print(f"warning: thread {thread.name} still runs after {EXIT_WAIT_S:.0f} s; exiting without it",
                      file=sys.stderr)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120
    os._exit(code)


def _exit_code(code: object) -> int:
    """What the interpreter exits with for ``SystemExit(code)``: 0 for None, the number, else 1 after
    printing the message to standard error."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


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
        raise UsageError("no admin token: set CLAIIM_ADMIN_TOKEN, or name the stack with `claiim --data-dir DIR ...` "
                         "(or CLAIIM_DATA_DIR=DIR) to read the DIR/env that `claiim up --data-dir DIR` wrote, or pass "
                         "--env-file FILE, or run this where ./.claiim/env is")
    if token.startswith("clm_"):
        raise UsageError("CLAIIM_ADMIN_TOKEN holds an agent token (clm_...): admin commands need an admin token "
                         "(cla_..., from `claiim admin enrol`) or the operator token")


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "mcp":
        return run_mcp(args)
    if args.command == "completion":
        print(completion_script(args.shell))
        return 0
    if args.command == "up":
        from claiim_server.stack import UpOptions, main_up
        from claiim_server.workers import default_workers

        data_dir = args.data_dir or args.stack_dir or Path(os.environ.get("CLAIIM_DATA_DIR") or DEFAULT_DATA_DIR)
        main_up(UpOptions(data_dir, args.nats_port, args.nats_url, args.database_url,
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
        fmt = args.fmt or ("json" if args.json else "text")
        if args.json and fmt != "json":
            raise UsageError(f"--json and --format {fmt} disagree: give one of them")
        return policy_test(args.target, args.cases_file, run=args.run, fmt=fmt, coverage=args.coverage)
    if args.command == "chron" and args.subcommand in chron_cli.OFFLINE:
        return chron_cli.run_offline(args)
    if args.command == "chron" and args.subcommand in chron_cli.DIRECT:
        return chron_cli.run_direct(args)
    _admin_token_usable()
    if args.command == "rehearsal":
        if not args.yes:
            where = f"{resolve_url(None)} (namespace {os.environ.get('CLAIIM_NAMESPACE') or 'claiim'})"
            raise UsageError(f"the rehearsal would write to {where}. {REHEARSAL_WRITES}")
        from claiim_server.cli.rehearsal import rehearsal

        return asyncio.run(rehearsal())
    return asyncio.run(run_admin_command(args))
