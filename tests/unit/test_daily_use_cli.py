"""The CLI's daily-use wording: a dry run cannot be taken for a change, ``--grace`` reads durations, and the
rehearsal refuses to write into a stack without ``--yes``."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from claiim_core.schemas import ApplyReply, Change
from claiim_server.cli.commands import _changes
from claiim_server.cli.main import build_parser, duration, main
from claiim_server.servers import free_port

POLICY = Change(op="published", kind="policy", name="no-prod", version=2)
AGENT = Change(op="registered", kind="agent", name="ship-bot")
SKILL = Change(op="unchanged", kind="skill", name="deploy", version=2)


def dry(changed: list[Change], **fields: object) -> ApplyReply:
    return ApplyReply(ok=True, changed=changed, changes=[c.would() for c in changed], dry_run=True,
                      **fields)  # type: ignore[arg-type]


def test_a_dry_run_says_would_and_whether_it_becomes_a_proposal() -> None:
    """A dry run's text starts by saying nothing was applied, says "would publish"/"would register" (never
    "published"), and says whether it would be a proposal needing N approvals or take effect at once."""
    proposal = _changes(dry([POLICY, AGENT, SKILL], would_propose=True, approvals_required=2)).splitlines()
    assert proposal[:4] == ["dry run: nothing was applied", "would publish policy no-prod-v2",
                            "would register agent ship-bot", "unchanged skill deploy-v2"]
    assert "would become a proposal" in proposal[4] and "2 other admins" in proposal[4]
    assert not any(line.startswith(("published", "registered")) for line in proposal)
    at_once = _changes(dry([POLICY])).splitlines()
    assert at_once[-1] == "applied for real, this would take effect at once (no approval needed)"
    assert _changes(dry([SKILL])).splitlines()[-1] == "nothing would change"
    applied = ApplyReply(ok=True, changed=[POLICY], changes=[str(POLICY)])
    assert _changes(applied) == "published policy no-prod-v2", "a real apply still says what it did"


def test_grace_reads_seconds_minutes_hours_and_days() -> None:
    """``--grace`` takes 30s, 10m, 2h, 1d (or bare seconds) and refuses anything else."""
    assert [duration(t) for t in ("30s", "10m", "2h", "1d", "45")] == [30, 600, 7200, 86400, 45]
    for bad in ("", "m", "-5m", "1.5h", "10w", "ten"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)
    args = build_parser().parse_args(["agent", "rotate-token", "deploy-bot", "--grace", "10m"])
    assert args.grace == 600
    assert build_parser().parse_args(["agent", "rotate-token", "deploy-bot"]).grace == 0


def test_the_rehearsal_refuses_without_yes_and_says_what_it_writes(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without ``--yes`` the rehearsal exits 2 before connecting anywhere, naming the stack and what it
    would write there; its help says the same."""
    monkeypatch.chdir(tmp_path)
    url = f"nats://127.0.0.1:{free_port()}"
    monkeypatch.setenv("CLAIIM_URL", url)
    monkeypatch.setenv("CLAIIM_ADMIN_TOKEN", "adm_operator")
    with pytest.raises(SystemExit) as done:
        main(["--env-file", "/dev/null", "rehearsal"])
    err = capsys.readouterr().err
    assert done.value.code == 2
    assert url in err and "rehearsal-<hex>" in err and "Chron" in err and "--yes" in err
    with pytest.raises(SystemExit):
        main(["--env-file", "/dev/null", "rehearsal", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "WRITES" in shown and "rehearsal-<hex>" in shown and "recorded in Chron" in shown and "--yes" in shown
