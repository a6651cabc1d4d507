"""The ``claiim`` command line.

Settings come from the environment (``CLAIIM_URL``, ``CLAIIM_ADMIN_TOKEN``, ...). When a variable
is unset and ``./.claiim/env`` (written by ``claiim up``) exists, the CLI reads it from there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec
import yaml
from claiim_core.explain import policy_diff
from claiim_core.policytest import DocumentError, parse_cases, parse_policy, run_cases
from claiim_core.schemas import ChronRecord

from claiim._admin import AsyncAdmin
from claiim._errors import ClaiimError

DEFAULT_DATA_DIR = Path(".claiim")


def load_env_file(path: Path) -> None:
    """Set variables from a KEY=VALUE file, without overriding ones already set."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            os.environ.setdefault(key.strip(), value.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="claiim", description="Identity control plane for AI agents.")
    p.add_argument("--env-file", type=Path, default=DEFAULT_DATA_DIR / "env",
                   help="read unset CLAIIM_* variables from this file (default: .claiim/env)")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the embedded stack (NATS, PostgreSQL, gate, Chron)")
    up.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    up.add_argument("--nats-port", type=int, default=4222)
    up.add_argument("--nats-url", help="use this existing NATS server instead of starting one")
    up.add_argument("--database-url", help="use this existing PostgreSQL database")
    up.add_argument("--no-demo", action="store_true", help="do not load the demo bundle")

    serve = sub.add_parser("serve", help="run services against existing servers (settings from env)")
    serve.add_argument("services", nargs="+", choices=["gate", "control", "chron", "all"])

    apply = sub.add_parser("apply", help="apply a bundle of skills, policies and agents")
    apply.add_argument("-f", "--file", type=Path, required=True)
    apply.add_argument("--dry-run", action="store_true")
    apply.add_argument("--json", action="store_true")

    chron = sub.add_parser("chron", help="read Chron, the audit trail")
    csub = chron.add_subparsers(dest="chron_command", required=True)
    ls = csub.add_parser("list", help="list records, newest first")
    ls.add_argument("--agent")
    ls.add_argument("--outcome", choices=["ALLOW", "DENY"], type=str.upper)
    ls.add_argument("--since", help="ISO 8601 time, e.g. 2026-11-25T10:00:00+00:00")
    ls.add_argument("--kind", choices=["decision", "control"], default="decision")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    show = csub.add_parser("show", help="show one record")
    show.add_argument("chron_id")
    show.add_argument("--json", action="store_true")

    agent = sub.add_parser("agent", help="suspend or reactivate an agent, rotate or revoke its token")
    asub = agent.add_subparsers(dest="agent_command", required=True)
    for op, text in (("suspend", "deny every check of the agent at once (kill switch)"),
                     ("reactivate", "end a suspension"),
                     ("rotate-token", "issue a new token; the old one is denied from now on"),
                     ("revoke-token", "invalidate the agent's token")):
        cmd = asub.add_parser(op, help=text)
        cmd.add_argument("agent_id")
        if op != "rotate-token":
            cmd.add_argument("--reason", default="")
        cmd.add_argument("--json", action="store_true")

    policy = sub.add_parser("policy", help="work with policy documents")
    psub = policy.add_subparsers(dest="policy_command", required=True)
    pdiff = psub.add_parser("diff", help="what changed between two versions of a policy")
    pdiff.add_argument("name")
    pdiff.add_argument("v1", type=int)
    pdiff.add_argument("v2", type=int)
    pdiff.add_argument("--org", required=True)
    ptest = psub.add_parser("test", help="run a policy against expected cases (exit 1 on a mismatch)")
    ptest.add_argument("policy_file", type=Path)
    ptest.add_argument("cases_file", type=Path)

    explain = sub.add_parser("explain", help="what the gate would decide now, and why (dry run, not recorded)")
    explain.add_argument("--agent", required=True)
    explain.add_argument("--action", required=True)
    explain.add_argument("--target", default="", help="accepted for symmetry with checks; rules do not use it yet")
    explain.add_argument("--json", action="store_true")

    sub.add_parser("rehearsal", help="check a running stack end to end")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command != "up":
        load_env_file(args.env_file)
    try:
        code = dispatch(args)
    except ClaiimError as e:
        print(e.diagnostics(), file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "up":
        from claiim._embedded import UpOptions, main_up

        main_up(UpOptions(args.data_dir, args.nats_port, args.nats_url, args.database_url,
                          demo=not args.no_demo))
        return 0
    if args.command == "serve":
        from claiim._cli.serve import serve

        return serve(args.services)
    if args.command == "policy" and args.policy_command == "test":
        return policy_test(args.policy_file, args.cases_file)
    if args.command == "rehearsal":
        from claiim._cli.rehearsal import rehearsal

        return asyncio.run(rehearsal())
    return asyncio.run(admin_command(args))


async def admin_command(args: argparse.Namespace) -> int:
    admin = AsyncAdmin()
    try:
        if args.command == "apply":
            bundle = yaml.safe_load(args.file.read_text())
            reply = await admin.apply(bundle, dry_run=args.dry_run)
            if args.json:
                print(msgspec.json.encode(reply).decode())
            else:
                for change in reply.changes:
                    print(change)
                if all(c.startswith("unchanged") for c in reply.changes):
                    print("nothing to change")
                for agent, token in reply.tokens.items():
                    print(f"token for {agent} (shown once): {token}")
            return 0
        if args.command == "explain":
            explained = await admin.explain(args.agent, args.action)
            if args.json:
                print(msgspec.json.encode(explained).decode())
            else:
                print("\n".join(explained.steps))
            return 0
        if args.command == "policy":
            versions = {v.version: v for v in await admin.policy_versions(args.org, args.name)}
            missing = [v for v in (args.v1, args.v2) if v not in versions]
            if missing:
                print(f"policy {args.name} has no version {missing[0]} (it has 1..{len(versions)})", file=sys.stderr)
                return 1
            old, new = versions[args.v1], versions[args.v2]
            print(f"--- {old.label} {old.content_hash}\n+++ {new.label} {new.content_hash}")
            print("\n".join(policy_diff(old, new)) or "(no difference)")
            return 0
        if args.command == "agent":
            done = await admin.agent_command(args.agent_command, args.agent_id, getattr(args, "reason", ""))
            if args.json:
                print(msgspec.json.encode(done).decode())
            else:
                print(f"{done.change} (control seq {done.control_seq})")
                if done.token:
                    print(f"new token for {args.agent_id} (shown once): {done.token}")
            return 0
        if args.chron_command == "list":
            records = await admin.chron_list(agent_id=args.agent, outcome=args.outcome,
                                             since=args.since, kind=args.kind, limit=args.limit)
            print_records(records, args.json)
            return 0
        record = await admin.chron_show(args.chron_id)
        if record is None:
            print(f"no record {args.chron_id}", file=sys.stderr)
            return 1
        if args.json:
            print(msgspec.json.encode(record).decode())
        else:
            for field in record.__struct_fields__:
                value = getattr(record, field)
                print(f"{field:>12}  {bytes(value).decode() if field == 'event' else value}")
        return 0
    finally:
        await admin.close()


def policy_test(policy_file: Path, cases_file: Path) -> int:
    """Exit 0 when every case holds, 1 on a mismatch, 2 when a document is invalid."""
    try:
        label, doc = parse_policy(policy_file.read_text(), str(policy_file))
        cases = parse_cases(cases_file.read_text(), str(cases_file))
    except DocumentError as e:
        print(str(e), file=sys.stderr)
        return 2
    results = run_cases(label, doc, cases)
    for r in results:
        mark = "PASS" if r.passed else "FAIL"
        want = r.case.expect + (f" ({r.case.reason})" if r.case.reason else "")
        got = f"{r.outcome} {r.reason} [{r.rule}]"
        print(f"{mark}  {cases_file}:{r.case.line}  {r.case.action}: got {got}, want {want}")
    failed = sum(not r.passed for r in results)
    print(f"PASS: {len(results) - failed} / FAIL: {failed}")
    return 1 if failed else 0


COLUMNS = ("chron_id", "occurred_at", "outcome", "agent_id", "action", "anchor", "policy", "skill")


def print_records(records: list[ChronRecord], as_json: bool) -> None:
    if as_json:
        print(json.dumps([json.loads(msgspec.json.encode(r)) for r in records], indent=1))
        return
    rows = [COLUMNS] + [tuple(str(getattr(r, c)) for c in COLUMNS) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
