"""The admin CLI against ``claiim up``: groups, tables, --json, roles, and FILE:LINE errors."""

from __future__ import annotations

import base64
import json
import secrets
import stat
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from claiim_server.servers import free_port

from tests.e2e.upstack import CLAIIM, Up, clean_env

pytestmark = pytest.mark.e2e
GROUPS = {"org": ["list", "show", "create", "set-webhook"], "admin": ["list", "enrol", "revoke"],
          "approvals": ["list", "show", "grant", "refuse"],
          "agent": ["list", "show", "register", "set-anchor", "suspend", "reactivate", "rotate-token", "revoke-token"],
          "skill": ["list", "show", "versions", "publish"],
          "policy": ["list", "show", "versions", "publish", "diff", "test"], "chron": ["list", "show", "status"]}


class Cli:
    def __init__(self, up: Up) -> None:
        self.up = up
        self.admins = dict(json.loads((up.data_dir / "demo-admins.json").read_text()))

    def run(self, *args: str, as_admin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = clean_env()
        if as_admin:
            env["CLAIIM_ADMIN_TOKEN"] = self.admins[as_admin]
        return subprocess.run([CLAIIM, "--env-file", str(self.up.data_dir / "env"), *args], capture_output=True,
                              text=True, env=env, timeout=120)

    def ok(self, *args: str, as_admin: str | None = "alice") -> str:
        out = self.run(*args, as_admin=as_admin)
        assert out.returncode == 0, f"{args}: {out.stdout}{out.stderr}"
        return out.stdout

    def approved(self, output: str, by: str = "bob") -> str:
        """Approve, as ``by``, the proposal that ``output`` (a widening command's) announced."""
        proposal_id = output.split("proposed as ", 1)[1].split(":", 1)[0]
        return self.ok("proposals", "approve", proposal_id, "--reason", "reviewed", as_admin=by)

    def refused(self, *args: str, as_admin: str | None = "alice") -> str:
        out = self.run(*args, as_admin=as_admin)
        assert out.returncode != 0, f"{args} should have failed: {out.stdout}"
        return out.stderr


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    up = Up(tmp_path_factory.mktemp("cli") / "stack", free_port())
    try:
        yield Cli(up)
    finally:
        up.stop()


def test_help_lists_every_group_and_command() -> None:
    top = subprocess.run([CLAIIM, "--help"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0
    for group, commands in GROUPS.items():
        assert group in top.stdout
        out = subprocess.run([CLAIIM, group, "--help"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0
        for command in commands:
            assert command in out.stdout, (group, command)


def test_up_enrols_two_demo_admins_and_an_auditor(cli: Cli) -> None:
    assert set(cli.admins) == {"alice", "bob", "audrey"}
    assert all(t.startswith("cla_demo.") for t in cli.admins.values())
    assert stat.S_IMODE((cli.up.data_dir / "demo-admins.json").stat().st_mode) == 0o600
    assert "CLAIIM_ORG=demo\n" in (cli.up.data_dir / "env").read_text()
    table = cli.ok("admin", "list").splitlines()
    assert table[0].split() == ["ORG", "NAME", "ROLE"]
    assert sorted(line.split()[1:] for line in table[1:]) == [["alice", "admin"], ["audrey", "auditor"],
                                                              ["bob", "admin"]]


def test_explain(cli: Cli) -> None:
    """--action of explain is the action to evaluate (not confused with the sub-command)."""
    out = cli.ok("explain", "--agent", "deploy-bot", "--action", "deploy:production", "--target", "api-v2")
    assert out.splitlines()[-1] == ("=> DENY policy:no-prod-v1 -- action explicitly denied "
                                    "[deny[0]: deploy:production]")
    assert json.loads(cli.ok("explain", "--agent", "deploy-bot", "--action", "deploy:staging", "--json"))[
        "outcome"] == "ALLOW"


def test_whoami_and_orgs(cli: Cli) -> None:
    assert cli.ok("whoami").startswith("admin alice of org demo")
    assert cli.ok("whoami", as_admin=None).startswith("operator")
    orgs = json.loads(cli.ok("org", "list", "--json"))
    assert [o["name"] for o in orgs] == ["demo"] and orgs[0]["agents"] == 2
    assert "forbidden: only the operator creates orgs" in cli.refused("org", "create", "mine")
    assert "created org acme" in cli.ok("org", "create", "acme", as_admin=None)
    assert "acme" in cli.ok("org", "list", as_admin=None)
    assert "acme" not in cli.ok("org", "list")


def test_agent_commands(cli: Cli) -> None:
    listed = cli.ok("agent", "list").splitlines()
    assert listed[0].split() == ["AGENT", "STATUS", "ANCHOR", "SKILLS", "POLICY", "DESCRIPTION"]
    assert {line.split()[0] for line in listed[1:]} >= {"deploy-bot", "review-bot"}
    registered = cli.ok("agent", "register", "ship-bot", "--anchor", "r.owner", "--skill", "deploy-v2",
                        "--policy", "no-prod")
    assert "registered agent ship-bot" in registered and "proposed as chr_" in registered
    assert "token for ship-bot (shown once) (valid once the proposal is applied): clm_demo." in registered
    assert "no agent 'ship-bot'" in cli.refused("agent", "show", "ship-bot")
    assert "applied proposal" in cli.approved(registered)
    assert "already registered" in cli.refused("agent", "register", "ship-bot", "--anchor", "x", "--skill",
                                               "deploy-v2", "--policy", "no-prod")
    cli.approved(cli.ok("agent", "set-anchor", "ship-bot", "k.lee"))
    cli.ok("agent", "suspend", "ship-bot", "--reason", "cli test")  # narrowing: at once
    shown = json.loads(cli.ok("agent", "show", "ship-bot", "--json"))
    assert (shown["anchor"], shown["status"], shown["policy_version"]) == ("k.lee", "suspended", "no-prod-v1")
    assert "status  suspended" in cli.ok("agent", "show", "ship-bot")
    rotated = cli.ok("agent", "rotate-token", "ship-bot")
    assert "new token for ship-bot (shown once): clm_demo." in rotated
    assert "read-only" in cli.refused("agent", "reactivate", "ship-bot", as_admin="audrey")
    control = cli.ok("chron", "list", "--kind", "control", "--limit", "10")
    assert control.splitlines()[0].split() == ["CHRON_ID", "OCCURRED_AT", "ACTOR", "EVENT", "SUBJECT", "CONTROL_SEQ"]
    assert any(line.split()[2:4] == ["alice", "agent.suspended"] for line in control.splitlines()[1:])


def test_skill_and_policy_commands(cli: Cli, tmp_path: Path) -> None:
    published = cli.ok("skill", "publish", "notes", "--action", "notes:*")
    assert "published skill notes-v1" in published
    cli.approved(published)
    assert "nothing to change" in cli.ok("skill", "publish", "notes", "--action", "notes:*")
    cli.approved(cli.ok("skill", "publish", "notes", "--action", "notes:read"))
    versions = json.loads(cli.ok("skill", "versions", "notes", "--json"))
    assert [(v["label"], v["actions"]) for v in versions] == [("notes-v1", ["notes:*"]), ("notes-v2", ["notes:read"])]
    assert "action  notes:*" in cli.ok("skill", "show", "notes", "--version", "1")

    policy = tmp_path / "careful.yaml"
    policy.write_text(textwrap.dedent("""\
        skill: notes
        description: read shared notes only
        allow:
          - action: "notes:read"
            target: "shared/*"
            description: shared notes are fine
        """))
    published = cli.ok("policy", "publish", str(policy))
    assert "published policy careful-v1" in published
    cli.approved(published)
    shown = cli.ok("policy", "show", "careful")
    assert "allow  notes:read @ shared/* -- shared notes are fine" in shown
    policy.write_text(policy.read_text() + "deny: [notes:delete]\n")
    published = cli.ok("policy", "publish", str(policy))
    assert "published policy careful-v2" in published
    cli.approved(published)
    diff = cli.ok("policy", "diff", "careful", "1", "2")
    assert "+ deny: notes:delete" in diff
    as_json = json.loads(cli.ok("policy", "diff", "careful", "1", "2", "--json"))
    assert (as_json["from"]["label"], as_json["to"]["label"]) == ("careful-v1", "careful-v2")
    assert (as_json["removed"], as_json["added"]) == ([], ["deny: notes:delete"])
    assert json.loads(cli.ok("policy", "list", "--json"))[0]["label"] in {"careful-v2", "no-prod-v1"}
    assert "careful-v2" in cli.ok("policy", "list")


def test_bad_documents_are_reported_by_file_and_line(cli: Cli, tmp_path: Path) -> None:
    """Local problems (YAML, rule syntax) and the server's (references) both come back as FILE:LINE."""
    policy = tmp_path / "bad-policy.yaml"
    policy.write_text("skill: notes\nallow:\n  - notes:read\n  - action: notes:write\n    target: ''\n")
    assert f"{policy}:4: allow: '' is not a target pattern" in cli.refused("policy", "publish", str(policy))
    unknown_skill = tmp_path / "unknown-skill.yaml"
    unknown_skill.write_text("skill: nope-v3\nallow: [a:b]\n")
    assert f"{unknown_skill}:1: skill: no skill nope-v3 in org demo" in cli.refused("policy", "publish",
                                                                                    str(unknown_skill))
    bundle = tmp_path / "bundle.yaml"
    bundle.write_text(textwrap.dedent("""\
        org: demo
        policies:
          - name: broken
            skill: deploy-v2
            allow:
              - deploy:staging
              - "deploy staging"
        agents:
          - id: lost-bot
            anchor: x.y
            skills: [deploy-v9]
            policy: broken
        """))
    err = cli.refused("apply", "-f", str(bundle))
    assert f"{bundle}:7: policies[0] (broken).allow[1]:" in err
    assert f"{bundle}:11: agents[0] (lost-bot).skills[0]: no skill deploy-v9 in org demo" in err
    typed = tmp_path / "typed.yaml"
    typed.write_text("org: demo\nagents:\n  - id: x\n    anchor: 5\n    skills: [a]\n    policy: p\n")
    assert f"{typed}:4: agents[0] (x).anchor: anchor must be text, not a number" in cli.refused("apply", "-f",
                                                                                               str(typed))
    assert "not valid YAML" in cli.refused("apply", "-f", str(_write(tmp_path / "y.yaml", "org: [demo\n")))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_chron_proofs_from_the_cli(cli: Cli, tmp_path: Path) -> None:
    """prove, verify-proof (offline), consistency, verify (stream and mirror), replay and export."""
    token = json.loads((cli.up.data_dir / "demo-tokens.json").read_text())["deploy-bot"]
    script = ("from claiim import Gate\n"
              f"g = Gate(agent_id='deploy-bot', token='{token}', url='nats://127.0.0.1:{cli.up.port}')\n"
              "g.check(action='deploy:staging', target='api-v2')\n"
              "print(g.check(action='deploy:production', target='api-v2').chron_id)\n")
    out = subprocess.run([str(Path(CLAIIM).parent / "python"), "-c", script], capture_output=True, text=True,
                         env=clean_env(), timeout=60)
    chron_id = out.stdout.strip()
    assert chron_id.startswith("chr_"), out.stderr
    for _ in range(50):  # the decision reaches Chron a moment after the reply
        if cli.run("chron", "show", chron_id, as_admin="alice").returncode == 0:
            break
        time.sleep(0.1)
    proof = tmp_path / "proof.json"
    assert f"wrote {proof}: {chron_id} is leaf" in cli.ok("chron", "prove", chron_id, "-o", str(proof))
    verified = cli.ok("chron", "verify-proof", str(proof), as_admin=None)
    assert verified.startswith(f"OK: {chron_id} is leaf") and "DENY deploy-bot deploy:production api-v2" in verified
    forged = json.loads(proof.read_text())
    forged["leaf"] = base64.b64encode(base64.b64decode(forged["leaf"]).replace(b'"DENY"', b'"ALLOW"')).decode()
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    assert "FAIL: leaf" in cli.refused("chron", "verify-proof", str(tmp_path / "forged.json"), as_admin=None)

    sizes = [c["size"] for c in json.loads(cli.ok("chron", "checkpoints", "--json"))]
    assert sizes == sorted(sizes, reverse=True)
    if len(sizes) > 1:
        cli.ok("chron", "consistency", str(sizes[-1]), "-o", str(tmp_path / "c.json"))
        assert cli.ok("chron", "verify-consistency", str(tmp_path / "c.json"), as_admin=None).startswith("OK: the tree")
    assert cli.ok("chron", "verify", as_admin=None).splitlines()[-1].startswith("OK: ")
    mirror = cli.up.data_dir / "chron-mirror"
    assert cli.ok("chron", "verify", "--from-dir", str(mirror), as_admin=None).splitlines()[-1].startswith("OK: ")

    replayed = cli.ok("chron", "replay", "--from-seq", "1", "--limit", "2", as_admin=None).splitlines()
    assert len(replayed) == 2 and json.loads(replayed[0])["stream_seq"] == 1
    exported = cli.ok("chron", "export", "--format", "ocsf", as_admin=None).splitlines()
    assert any(json.loads(line)["metadata"]["uid"] == chron_id for line in exported)
    assert all(json.loads(line)["class_uid"] == 6003 for line in exported)


def test_chron_search_and_status_from_the_cli(cli: Cli) -> None:
    """chron list filters by anchor, action (exact or prefix), time and trace id and pages with --before and
    --after; chron status prints the log's size, its newest checkpoint and what is pending, to an auditor too."""
    token = json.loads((cli.up.data_dir / "demo-tokens.json").read_text())["deploy-bot"]
    trace = secrets.token_hex(16)
    script = ("from claiim import Gate\n"
              f"g = Gate(agent_id='deploy-bot', token='{token}', url='nats://127.0.0.1:{cli.up.port}')\n"
              "for action in ('deploy:staging', 'deploy:production'):\n"
              "    print(g.check(action=action, target='search').chron_id)\n"
              f"print(g.check('deploy:staging', 'search', traceparent='00-{trace}-00f067aa0ba902b7-01').chron_id)\n")
    out = subprocess.run([str(Path(CLAIIM).parent / "python"), "-c", script], capture_output=True, text=True,
                         env=clean_env(), timeout=60)
    made = out.stdout.split()
    assert len(made) == 3, out.stderr

    def listed(*args: str) -> list[dict[str, object]]:
        return list(json.loads(cli.ok("chron", "list", "--json", "--limit", "1000", *args)))

    for _ in range(50):  # the decisions reach Chron a moment after the replies
        if made[-1] in {str(r["chron_id"]) for r in listed("--anchor", "s.emp1")}:
            break
        time.sleep(0.1)
    prefixed = listed("--action", "deploy:*", "--anchor", "s.emp1")
    assert [r["chron_id"] for r in prefixed if r["target"] == "search"] == made[::-1]
    assert all(str(r["action"]).startswith("deploy:") for r in prefixed)
    exact = listed("--action", "deploy:production", "--outcome", "deny")
    assert made[1] in {r["chron_id"] for r in exact} and {r["action"] for r in exact} == {"deploy:production"}
    assert "(none)" in cli.ok("chron", "list", "--until", "2000-01-01T00:00:00Z")
    newest = listed("--limit", "1")[0]
    older = listed("--before", str(newest["leaf_index"]), "--limit", "2")
    leaves = [int(str(r["leaf_index"])) for r in older]
    assert len(leaves) == 2 and int(str(newest["leaf_index"])) > leaves[0] > leaves[1]
    assert [r["chron_id"] for r in listed("--after", str(older[0]["leaf_index"]), "--limit", "1")] == [
        newest["chron_id"]]
    assert "'yesterday' is neither a time such as" in cli.refused("chron", "list", "--since", "yesterday")
    assert [(r["chron_id"], r["trace_id"]) for r in listed("--trace-id", trace.upper())] == [(made[2], trace)]
    assert "32 lowercase hex digits" in cli.refused("chron", "list", "--trace-id", "abc")

    status = json.loads(cli.ok("chron", "status", "--json", as_admin="audrey"))
    assert set(status) == {"tree_size", "last_recorded_at", "checkpoint_size", "checkpoint_signed_at", "pending",
                           "parked", "problems", "disk", "archived", "archived_segments", "archived_bytes"}
    assert status["tree_size"] >= 3 and status["pending"] >= 0 and (status["parked"], status["problems"]) == (0, [])
    assert status["disk"]["CLAIIM_DECISIONS"] > 0 and status["disk"]["table:chron_events"] > 0, status["disk"]
    assert (status["archived"], status["archived_segments"]) == (0, 0), "no archive: nothing archived"
    table = cli.ok("chron", "status").splitlines()
    heads = [line.split()[0] for line in table]
    shown = [k for k in status if k not in ("problems", "disk") and not k.startswith("archived")]
    assert heads[:len(shown)] == shown
    assert heads[len(shown):] == ["disk:", *status["disk"], "ready:"], "no archived line without an archive"
    assert table[-1].split() == ["ready:", "yes"]


def test_init_creates_an_org_whose_admins_can_run_two_person_control(cli: Cli) -> None:
    assert "at least two" in cli.refused("init", "solo", "--admin", "only", as_admin=None)
    out = json.loads(cli.ok("init", "acme-two", "--admin", "ann", "--admin", "ben", "--json", as_admin=None))
    tokens = out["tokens"]
    assert set(tokens) == {"ann", "ben"} and all(t.startswith("cla_acme-two.") for t in tokens.values())
    env = clean_env()

    def run(token: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLAIIM, "--env-file", str(cli.up.data_dir / "env"), *args], capture_output=True,
                              text=True, env={**env, "CLAIIM_ADMIN_TOKEN": token, "CLAIIM_ORG": ""}, timeout=120)

    proposed = run(tokens["ann"], "skill", "publish", "notes", "--action", "notes:read")
    assert proposed.returncode == 0 and "proposed as chr_" in proposed.stdout, proposed.stderr
    proposal_id = proposed.stdout.split("proposed as ", 1)[1].split(":", 1)[0]
    own = run(tokens["ann"], "proposals", "approve", proposal_id)
    assert own.returncode == 1 and "ann proposed" in own.stderr
    listed = run(tokens["ben"], "proposals", "list", "--status", "pending")
    assert proposal_id in listed.stdout and "0/1" in listed.stdout
    shown = run(tokens["ben"], "proposals", "show", proposal_id)
    assert "published skill notes-v1" in shown.stdout and "skill.published" in shown.stdout
    approved = run(tokens["ben"], "proposals", "approve", proposal_id, "--reason", "ok")
    assert approved.returncode == 0 and f"applied proposal {proposal_id}" in approved.stdout
    assert "notes-v1" in run(tokens["ben"], "skill", "list").stdout


def test_the_stack_found_by_data_dir_ages_reasons_and_a_proposals_diff(cli: Cli, tmp_path: Path) -> None:
    """From another directory, `--data-dir` finds the stack's env file; `chron list --since 1h` shows each
    decision's reason; `proposals show` prints the proposed policy version beside the one before it."""
    found = subprocess.run([CLAIIM, "--data-dir", str(cli.up.data_dir), "whoami"], capture_output=True, text=True,
                           env=clean_env(), cwd=tmp_path, timeout=120)
    assert found.returncode == 0 and found.stdout.startswith("operator"), found.stderr
    token = json.loads((cli.up.data_dir / "demo-tokens.json").read_text())["deploy-bot"]
    script = ("from claiim import Gate\n"
              f"g = Gate(agent_id='deploy-bot', token='{token}', url='nats://127.0.0.1:{cli.up.port}')\n"
              "print(g.check(action='deploy:production', target='reasons').chron_id)\n")
    made = subprocess.run([str(Path(CLAIIM).parent / "python"), "-c", script], capture_output=True, text=True,
                          env=clean_env(), timeout=60).stdout.strip()
    assert made.startswith("chr_")
    for _ in range(50):  # the decision reaches Chron a moment after the reply
        listed = json.loads(cli.ok("chron", "list", "--since", "1h", "--agent", "deploy-bot", "--json"))
        if made in {r["chron_id"] for r in listed}:
            break
        time.sleep(0.1)
    reason = next(r["reason"] for r in listed if r["chron_id"] == made)
    table = cli.ok("chron", "list", "--since", "1h", "--agent", "deploy-bot").splitlines()
    assert table[0].split()[-1] == "REASON"
    row = next(line for line in table if line.startswith(made))
    assert reason.startswith("policy:") and row.endswith(reason if len(reason) <= 48 else reason[:47].rstrip() + "…")
    assert "(none)" in cli.ok("chron", "list", "--until", "30d", "--agent", "deploy-bot")

    policy = _write(tmp_path / "diffed.yaml", "skill: deploy-v2\nallow:\n  - deploy:staging\n")
    cli.approved(cli.ok("policy", "publish", str(policy), "--name", "diffed"))
    _write(policy, "skill: deploy-v2\nallow:\n  - deploy:staging\n  - health:check\n")
    proposed = cli.ok("policy", "publish", str(policy), "--name", "diffed")
    proposal_id = proposed.split("proposed as ", 1)[1].split(":", 1)[0]
    shown = cli.ok("proposals", "show", proposal_id).splitlines()
    start = shown.index("policy diffed-v2 against diffed-v1")
    rows = [line.split() for line in shown[start + 2:]]
    assert ["1", "skill:", "deploy-v2", "1", "skill:", "deploy-v2"] in rows
    assert [">", "4", "-", "health:check"] in rows
