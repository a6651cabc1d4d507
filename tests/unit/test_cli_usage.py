"""What people expect of the ``claiim`` command besides its commands: help on every option, examples and the
environment in each command's help, ``--version``, shell completion, relative times, the stack's env file found
by ``--data-dir``, the REASON column of ``chron list`` and the side-by-side diff of ``proposals show``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from claiim.errors import AdminError
from claiim_core.schemas import ChronRecord, PolicyVersionInfo, ProposalInfo
from claiim_server.cli import commands
from claiim_server.cli.main import build_parser, main
from claiim_server.cli.output import clip
from claiim_server.cli.usage import iso_time, parsers
from hypothesis import given
from hypothesis import strategies as st

CLAIIM = str(Path(sys.executable).parent / "claiim")
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


@pytest.fixture(autouse=True)
def nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ./.claiim/env, no stack directory, and an admin token an env file may set is unset again afterwards."""
    monkeypatch.chdir(tmp_path)
    for name in ("CLAIIM_ADMIN_TOKEN", "CLAIIM_DATA_DIR", "CLAIIM_URL"):
        monkeypatch.setenv(name, "")  # recorded, so that a variable an env file sets is removed at the end
        monkeypatch.delenv(name)


# -- help ------------------------------------------------------------------------------------------------------


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    """Every option, argument and subcommand of the parser's tree that has no help line."""
    missing = []
    for cmd in parsers(parser):
        for action in cmd._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                missing += [f"{cmd.prog} {name}" for name in action.choices if not helps.get(name)]
            elif not action.help:
                missing.append(f"{cmd.prog} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_and_subcommand_has_a_help_line() -> None:
    """No option, positional argument or subcommand of any command is left without a help line."""
    parser = build_parser()
    assert len(list(parsers(parser))) > 60
    assert undocumented(parser) == []


def test_the_walk_notices_a_missing_help_line() -> None:
    """The check above can fail: an option added without help is reported by name."""
    parser = build_parser()
    next(p for p in parsers(parser) if p.prog == "claiim agent list").add_argument("--new")
    assert undocumented(parser) == ["claiim agent list --new"]


@pytest.mark.parametrize("command", [
    ["apply"], ["explain"], ["chron", "list"], ["approvals"], ["approvals", "grant"], ["agent"],
    ["agent", "register"], ["policy", "publish"],
])
def test_the_main_commands_show_examples(command: list[str]) -> None:
    """The help of apply, explain, chron list, approvals, agent and policy publish has examples, as written."""
    cmd = next(p for p in parsers(build_parser()) if p.prog == " ".join(["claiim", *command]))
    text = cmd.format_help()
    assert "examples:\n  claiim " + command[0] in text


def test_every_command_names_the_environment_it_reads() -> None:
    """Each command's help lists the variables it reads (an admin command: the token, URL, namespace and, with
    --org, CLAIIM_ORG) and where unset ones come from; one that reads none says so."""
    for cmd in list(parsers(build_parser()))[1:]:
        epilog = cmd.epilog or ""
        assert "environment" in epilog, cmd.prog
        if "reads no CLAIIM_* variables" not in epilog:
            assert "--env-file" in epilog and "--data-dir" in epilog, cmd.prog
    agent_list = next(p for p in parsers(build_parser()) if p.prog == "claiim agent list").format_help()
    assert all(v in agent_list for v in ("CLAIIM_URL", "CLAIIM_ADMIN_TOKEN", "CLAIIM_ORG", "CLAIIM_NAMESPACE"))
    keygen = next(p for p in parsers(build_parser()) if p.prog == "claiim keygen").format_help()
    assert "reads no CLAIIM_* variables" in keygen


# -- version and completion ------------------------------------------------------------------------------------


def test_version_names_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the versions of the installed claiim-server and claiim distributions and exits 0."""
    code, out, _ = run(["--version"], capsys)
    assert code == 0
    assert out == f"claiim-server {metadata.version('claiim-server')} (claiim {metadata.version('claiim')})\n"


def complete(line: str, tmp_path: Path) -> list[str]:
    """What the installed ``claiim`` offers for ``line`` over argcomplete's environment protocol."""
    answer = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_IFS": "\n", "_ARGCOMPLETE_STDOUT_FILENAME": str(answer)}
    done = subprocess.run([CLAIIM], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return answer.read_text().split()


def test_the_shell_completes_commands_subcommands_and_options(tmp_path: Path) -> None:
    """Through the installed script, a shell gets the commands, subcommands and options that match what is typed."""
    assert complete("claiim ag", tmp_path) == ["agent"]
    assert complete("claiim agent rot", tmp_path) == ["rotate-token"]
    assert complete("claiim chron list --si", tmp_path) == ["--since"]
    assert "--data-dir" in complete("claiim --", tmp_path)


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_prints_the_activation_script(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`claiim completion SHELL` prints argcomplete's script registering claiim, and reads no env file."""
    code, out, _ = run(["--env-file", "missing", "completion", shell], capsys)
    assert code == 0 and "_python_argcomplete" in out and "claiim" in out


# -- times -----------------------------------------------------------------------------------------------------


@given(st.integers(0, 10**5), st.sampled_from([("s", "seconds"), ("m", "minutes"), ("h", "hours"), ("d", "days"),
                                                ("w", "weeks")]))
def test_an_age_is_that_long_before_now(n: int, unit: tuple[str, str]) -> None:
    """``N`` seconds, minutes, hours, days or weeks is the ISO time that long before now."""
    assert datetime.fromisoformat(iso_time(f"{n}{unit[0]}", NOW)) == NOW - timedelta(**{unit[1]: n})


def test_iso_times_pass_as_utc_and_anything_else_is_refused() -> None:
    """An ISO 8601 time is kept (in UTC; without a zone it is UTC); a word is refused with what to write."""
    assert iso_time("2026-11-25T10:00:00+02:00", NOW) == "2026-11-25T08:00:00+00:00"
    assert iso_time("2026-11-25T10:00:00", NOW) == "2026-11-25T10:00:00+00:00"
    with pytest.raises(ValueError, match=r"'yesterday' is neither a time such as .* nor an age such as 30m"):
        iso_time("yesterday", NOW)


def test_since_and_until_take_ages_wherever_they_are_options() -> None:
    """chron list, policy shadow-report, chron replay and chron export turn --since 2h into an ISO time."""
    parser = build_parser()
    for argv in (["chron", "list"], ["policy", "shadow-report", "--agent", "a"], ["chron", "replay"],
                 ["chron", "export"]):
        since = datetime.fromisoformat(parser.parse_args([*argv, "--since", "2h"]).since)
        assert abs(since - (datetime.now(UTC) - timedelta(hours=2))) < timedelta(minutes=1)
    assert parser.parse_args(["chron", "list", "--until", "1d"]).until < parser.parse_args(
        ["chron", "list", "--until", "1h"]).until


# -- the stack's env file --------------------------------------------------------------------------------------


def stack(tmp_path: Path) -> Path:
    """A data directory as `claiim up` leaves it, its env holding an agent token (refused before any connection)."""
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "env").write_text("CLAIIM_ADMIN_TOKEN=clm_demo.x\n")
    return tmp_path / "stack"


def test_data_dir_reads_the_stacks_env_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`claiim --data-dir DIR` and CLAIIM_DATA_DIR=DIR read DIR/env (here the token in it is refused as an agent's)."""
    code, _, err = run(["--data-dir", str(stack(tmp_path)), "agent", "list"], capsys)
    assert code == 2 and "holds an agent token" in err
    monkeypatch.delenv("CLAIIM_ADMIN_TOKEN")
    monkeypatch.setenv("CLAIIM_DATA_DIR", str(tmp_path / "stack"))
    code, _, err = run(["agent", "list"], capsys)
    assert code == 2 and "holds an agent token" in err


def test_a_data_dir_without_an_env_file_and_no_token_name_the_way(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A stack directory without DIR/env is a usage error saying so; with no token, the error names --data-dir,
    CLAIIM_DATA_DIR and --env-file."""
    code, _, err = run(["--data-dir", str(tmp_path), "agent", "list"], capsys)
    assert code == 2 and f"there is no {tmp_path / 'env'}" in err
    code, _, err = run(["agent", "list"], capsys)
    assert code == 2 and all(way in err for way in ("--data-dir DIR", "CLAIIM_DATA_DIR", "--env-file"))


# -- chron list and proposals show -----------------------------------------------------------------------------


class Recorded:
    """An admin client that answers the one query ``chron list`` makes."""

    def __init__(self, records: list[ChronRecord]) -> None:
        self.records = records

    async def chron_list(self, **_: Any) -> list[ChronRecord]:
        return self.records


def record(reason: str) -> ChronRecord:
    return ChronRecord(chron_id="chr_1", kind="decision", recorded_at="t", occurred_at="t", stream="s",
                       stream_seq=1, subject="x", org="demo", agent_id="deploy-bot", actor="", outcome="DENY",
                       action="deploy:production", target="api", anchor="alice", policy="no-prod-v1",
                       skill="deploy-v2", reason=reason, rule="deny[0]", gate="g", control_seq=1, leaf_index=0,
                       event=b"{}")


async def test_chron_list_shows_the_reason_clipped(capsys: pytest.CaptureFixture[str]) -> None:
    """The table has a REASON column; a long reason is cut to 48 characters ending in an ellipsis."""
    long = "policy:no-prod-v1 -- action explicitly denied by the rule that keeps production safe"
    args = build_parser().parse_args(["chron", "list"])
    assert await commands.chron_list(Recorded([record(long), record("policy:p-v1 -- ok")]), args) == 0  # type: ignore[arg-type]
    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split()[-1] == "REASON"
    assert first.endswith(clip(long, 48)) and clip(long, 48).endswith("\u2026") and len(clip(long, 48)) == 48
    assert second.endswith("policy:p-v1 -- ok")


def policy_v1() -> PolicyVersionInfo:
    return PolicyVersionInfo(label="no-prod-v1", name="no-prod", version=1, description="", skill="deploy-v2",
                             allow=("deploy:staging",), deny=("deploy:production",), content_hash="h")


class Proposing:
    """An admin client holding one proposal that publishes no-prod-v2, and the policy's first version."""

    async def proposal(self, proposal_id: str) -> ProposalInfo:
        event = {"type": "policy.published", "name": "no-prod", "version": 2, "description": "",
                 "document": {"skill": "deploy-v2", "allow": ["deploy:staging", "health:check"],
                              "deny": ["deploy:production"]}}
        return ProposalInfo(proposal_id=proposal_id, org="demo", proposer="alice", created_at="t", expires_at="t",
                            status="pending", summary=["published policy no-prod-v2"], change_hash="sha256:x",
                            approvals_required=1, approvals=[], closed_by="", closed_at="", reason="", events=[event])

    async def policy_versions(self, name: str) -> list[PolicyVersionInfo]:
        return [policy_v1()]

    async def skill_versions(self, name: str) -> list[Any]:
        raise AdminError("no such skill")


async def test_proposals_show_prints_the_side_by_side_diff(capsys: pytest.CaptureFixture[str]) -> None:
    """Each version a proposal would publish is shown beside the version before it, an added rule marked '>'."""
    args = build_parser().parse_args(["proposals", "show", "chr_p"])
    assert await commands.proposals_show(Proposing(), args) == 0  # type: ignore[arg-type]
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("policy no-prod-v2 against no-prod-v1")
    assert lines[start + 1].split() == ["no-prod-v1", "no-prod-v2", "(proposed)"]
    rows = [line.split() for line in lines[start + 2:]]
    assert ["1", "skill:", "deploy-v2", "1", "skill:", "deploy-v2"] in rows
    assert [">", "4", "-", "health:check"] in rows
