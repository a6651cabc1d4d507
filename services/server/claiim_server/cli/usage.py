"""What the ``claiim`` command says about itself beyond each option's help line: the environment
each command reads and examples (an epilog under every command's ``--help``), ``--version``,
shell completion (argcomplete) and relative times (``--since 2h``).

The parser itself is built in :mod:`claiim_server.cli.main`; :func:`annotate` walks it afterwards,
so that the examples and the environment are kept in one place instead of at each command.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import metadata

ENV_FILE_NOTE = ("Variables that are not set are read from --env-file FILE, else from DIR/env of --data-dir DIR\n"
                 "(or CLAIIM_DATA_DIR=DIR), else from ./.claiim/env; `claiim up --data-dir DIR` writes DIR/env.")

CONNECTION = {
    "CLAIIM_URL": "the NATS URL of claiim (default nats://127.0.0.1:4222)",
    "CLAIIM_NAMESPACE": "claiim's subject and stream prefix (default claiim)",
}
ADMIN = {"CLAIIM_ADMIN_TOKEN": "an admin token (cla_...) or the operator token", **CONNECTION}
ORG = {"CLAIIM_ORG": "the org to act in when --org is not given"}
EVENT_KEYS = {
    "CLAIIM_GATE_KEYS(_FILE)": "the gate keyring, when --gate-keys is not given",
    "CLAIIM_CONTROL_VERIFIERS(_FILE)": "the control verifier keys, when --control-keys is not given",
}
VERIFIER = {"CLAIIM_CHECKPOINT_VERIFIER": "Chron's checkpoint verifier key, when --key is not given"}
STREAMS = {"CLAIIM_ADMIN_TOKEN": "the operator token (it may read claiim's streams)", **CONNECTION}

ENVIRONMENT: dict[str, dict[str, str]] = {
    "claiim up": {},
    "claiim serve": {"CLAIIM_*": "every service setting (docs/deployment.md); CLAIIM_URL and "
                                 "CLAIIM_DATABASE_URL name the servers"},
    "claiim policy test": {},
    "claiim keygen": {},
    "claiim completion": {},
    "claiim nats-config": {"CLAIIM_NAMESPACE": "the default --namespace"},
    "claiim chron verify-proof": {**VERIFIER, **EVENT_KEYS},
    "claiim chron verify-consistency": VERIFIER,
    "claiim chron verify": {**STREAMS, **VERIFIER, **EVENT_KEYS,
                            "CLAIIM_DATABASE_URL": "Chron's database, when --database-url is not given"},
    "claiim chron replay": STREAMS,
    "claiim chron export": STREAMS,
    "claiim chron rebuild": {**STREAMS, **VERIFIER, **EVENT_KEYS},
    "claiim rehearsal": {**ADMIN, "CLAIIM_CHECKPOINT_VERIFIER": "Chron's checkpoint verifier key, to check a proof"},
    "claiim mcp proxy": {**CONNECTION, "CLAIIM_AGENT_ID": "the agent, when --agent is not given",
                         "CLAIIM_AGENT_TOKEN": "its token, when --token-file is not given"},
}
"""The variables a command reads, where they differ from an admin command's (CLAIIM_ADMIN_TOKEN,
CLAIIM_URL, CLAIIM_NAMESPACE and, with --org, CLAIIM_ORG). Empty: none."""

EXAMPLES: dict[str, str] = {
    "claiim apply": """\
  claiim apply -f bundle.yaml --dry-run     # what would change, changing nothing
  claiim apply -f bundle.yaml               # apply (a widening change becomes a proposal)
  claiim --data-dir /srv/claiim apply -f bundle.yaml""",
    "claiim explain": """\
  claiim explain --agent deploy-bot --action deploy:production --target api-v2
  claiim explain --agent deploy-bot --action deploy:staging --context ticket=OPS-12 --json""",
    "claiim chron list": """\
  claiim chron list --since 1h --outcome DENY        # the last hour's denials
  claiim chron list --agent deploy-bot --since 2d --until 1d
  claiim chron list --action 'deploy:*' --since 2026-11-25T10:00:00+00:00 --limit 20
  claiim chron list --approval chr_01m8g2... --json  # every record of one approval
  claiim chron list --before 1200                    # the next page, older than leaf 1200""",
    "claiim approvals": """\
  claiim approvals list                    # what waits for you
  claiim approvals show chr_01m8g2...      # the request and its hash
  claiim approvals grant chr_01m8g2... --reason 'change OPS-12' --hash sha256:...
  claiim approvals refuse chr_01m8g2... --reason 'not during the freeze'""",
    "claiim agent": """\
  claiim agent register deploy-bot --anchor alice --skill deploy --policy no-prod
  claiim agent show deploy-bot
  claiim agent suspend deploy-bot --reason 'leaked token'    # kill switch
  claiim agent rotate-token deploy-bot""",
    "claiim policy publish": """\
  claiim policy publish no-prod.yaml --dry-run   # what would change
  claiim policy publish no-prod.yaml             # a new version (a proposal when it widens)
  claiim policy publish rules.yaml --name no-prod""",
    "claiim policy test": """\
  claiim policy test policies/                  # every *_test.yaml suite in policies/ and below
  claiim policy test no-prod.yaml cases.yaml    # a policy file and its cases
  claiim policy test policies/ --run 'prod|rollback' --format junit > policy-tests.xml
  claiim policy test deploy_bot_test.yaml --coverage

a suite, deploy_bot_test.yaml (the files it names are relative to it):
  bundle: ../bundle.yaml       # the agent's skills and policy; policy: FILE overrides the policy
  agent: deploy-bot
  cases:
    - {name: staging, action: deploy:staging, expect: ALLOW}
    - {name: no skill, action: pr:merge, expect: DENY, reason: outside the agent's skills}""",
    "claiim policy diff": """\
  claiim policy diff no-prod 1 2             # - removed and + added lines
  claiim policy diff no-prod 1 2 --json      # {"removed": [...], "added": [...], ...}""",
}
"""Examples under the ``--help`` of a command, and of every command of a group."""


def environment_of(prog: str, has_org: bool) -> dict[str, str]:
    """The variables the command ``prog`` (``claiim agent list``) reads."""
    for command, variables in ENVIRONMENT.items():
        if prog == command or prog.startswith(command + " "):
            return variables
    return {**ADMIN, **ORG} if has_org else ADMIN


def epilog(prog: str, has_org: bool) -> str:
    parts = []
    examples = next((text for command, text in EXAMPLES.items()
                     if prog == command or prog.startswith(command + " ")), "")
    if examples:
        parts.append("examples:\n" + examples)
    variables = environment_of(prog, has_org)
    if variables:
        width = max(len(name) for name in variables)
        lines = [f"  {name:<{width}}  {text}" for name, text in variables.items()]
        parts.append("environment:\n" + "\n".join(lines) + "\n\n" + ENV_FILE_NOTE)
    else:
        parts.append("environment: reads no CLAIIM_* variables")
    return "\n\n".join(parts)


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every parser of its subcommands, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield from parsers(child)


def annotate(parser: argparse.ArgumentParser) -> None:
    """Give every command's help its environment and examples, kept as written (line breaks and all),
    after an epilog the command has of its own."""
    for cmd in parsers(parser):
        if cmd is parser:
            continue
        has_org = any("--org" in a.option_strings for leaf in parsers(cmd) for a in leaf._actions)
        cmd.formatter_class = argparse.RawDescriptionHelpFormatter
        cmd.epilog = "\n\n".join(text for text in (cmd.epilog, epilog(cmd.prog, has_org)) if text)


def version_text() -> str:
    """``claiim-server X (claiim Y)``: the installed distributions' versions."""
    found = []
    for dist in ("claiim-server", "claiim"):
        try:
            found.append(metadata.version(dist))
        except metadata.PackageNotFoundError:
            found.append("not installed")
    return f"claiim-server {found[0]} (claiim {found[1]})"


SHELLS = ("bash", "zsh", "fish", "tcsh")


def completion_script(shell: str) -> str:
    """The script that makes ``shell`` complete ``claiim`` (argcomplete's, as ``register-python-argcomplete``)."""
    from argcomplete.shell_integration import shellcode  # here: only this command needs it

    return shellcode(["claiim"], shell=shell)


_RELATIVE = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def iso_time(text: str, now: datetime) -> str:
    """``30m``, ``1h``, ``2d``, ``1w`` (that long before ``now``) or an ISO 8601 time, as ISO 8601 in UTC.

    Raises ValueError for anything else. A time without a zone is taken as UTC.
    """
    m = _RELATIVE.fullmatch(text.strip())
    if m:
        return (now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})).isoformat(timespec="seconds")
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a time such as 2026-11-25T10:00:00+00:00 nor an age such as 30m, "
                         "2h, 1d or 1w") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def when(text: str) -> str:
    """An argparse type: :func:`iso_time` from now."""
    try:
        return iso_time(text, datetime.now(UTC))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


WHEN_HELP = "an ISO 8601 time, or an age: 30m, 2h, 1d or 1w ago"
