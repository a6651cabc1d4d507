"""A CLI command that cannot run says why in one line that names the fix, and exits 2 (1 when a service refused or
is away); with --json, the error is a JSON object on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from claiim_server.cli.main import main
from claiim_server.servers import free_port


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    return int(done.value.code or 0), err


@pytest.fixture(autouse=True)
def nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .claiim/env here
    monkeypatch.setenv("CLAIIM_URL", f"nats://127.0.0.1:{free_port()}")
    monkeypatch.delenv("CLAIIM_ADMIN_TOKEN", raising=False)


def test_a_missing_file(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAIIM_ADMIN_TOKEN", "cla_demo.x")
    assert run(["apply", "-f", "nope.yaml"], capsys) == (2, "error: cannot use nope.yaml: No such file or directory\n")


def test_an_agent_token_where_an_admin_token_is_needed(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAIIM_ADMIN_TOKEN", "clm_demo.x")
    code, err = run(["agent", "list"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: CLAIIM_ADMIN_TOKEN holds an agent token (clm_...)")


def test_no_token_and_no_env_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["agent", "list"], capsys)
    assert code == 2 and "set CLAIIM_ADMIN_TOKEN" in err and "--env-file" in err
    code, err = run(["--env-file", "missing.env", "agent", "list"], capsys)
    assert (code, err) == (2, "error: the env file missing.env does not exist (--env-file: a KEY=VALUE file, as "
                              "`claiim up` writes DIR/env)\n")


def test_json_errors_are_json_on_stderr(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, err = run(["agent", "list", "--json"], capsys)
    assert code == 2 and json.loads(err)["code"] == "usage"
    monkeypatch.setenv("CLAIIM_ADMIN_TOKEN", "cla_demo.x")
    code, err = run(["agent", "list", "--json"], capsys)
    answer = json.loads(err)
    assert code == 1 and answer["code"] == "ServiceUnavailableError" and "cannot connect" in answer["error"]
