"""The container files agree with the code (no Docker engine runs here, so this is what CI checks)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from claiim_core.names import Names
from claiim_runtime.natsconf import SERVICE_USERS, password_variable
from claiim_runtime.settings import Settings
from claiim_server.cli.keys import nats_config
from claiim_server.cli.main import build_parser
from claiim_server.servers import nats_server_binary

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, object]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def test_compose_runs_every_service_with_a_real_serve_command() -> None:
    """Each claiim service in compose runs a `claiim serve` choice the CLI accepts."""
    services = compose()["services"]
    assert isinstance(services, dict)
    choices = build_parser()._subparsers._group_actions[0].choices["serve"]._actions[1].choices  # type: ignore[union-attr]
    assert {"nats-1", "nats-2", "nats-3", "postgres", "gate", "control", "chron", "auth"} <= set(services)
    for name in CLAIIM_SERVICES:
        command = services[name]["command"].split()
        assert command[:2] == ["claiim", "serve"] and command[2] in choices


def test_compose_environment_names_only_real_settings() -> None:
    """Every CLAIIM_* variable compose sets is a field of Settings (a typo would be ignored silently)."""
    fields = {f"CLAIIM_{name.upper()}" for name in Settings.model_fields}
    services = compose()["services"]
    assert isinstance(services, dict)
    for name in CLAIIM_SERVICES:
        env = services[name]["environment"]
        assert {k for k in env if k.startswith("CLAIIM_")} <= fields, name
    assert "CLAIIM_DATABASE_URL" in services["chron"]["environment"]


CLAIIM_SERVICES = ("gate", "control", "chron", "ocsf", "auth", "admin")
REQUIRED = {  # what `claiim serve X` refuses to start without (tests/e2e/test_serve.py checks that side)
    "gate": {"CLAIIM_TOKEN_SECRET", "CLAIIM_CONTROL_VERIFIERS", "CLAIIM_GATE_KEY"},
    "control": {"CLAIIM_TOKEN_SECRET", "CLAIIM_ADMIN_TOKEN", "CLAIIM_CONTROL_KEY", "CLAIIM_CONTROL_VERIFIERS"},
    "chron": {"CLAIIM_TOKEN_SECRET", "CLAIIM_ADMIN_TOKEN", "CLAIIM_DATABASE_URL", "CLAIIM_CHECKPOINT_KEY",
              "CLAIIM_CONTROL_VERIFIERS", "CLAIIM_GATE_KEYS"},
    "ocsf": {"CLAIIM_GATE_KEYS"},
    "auth": {"CLAIIM_TOKEN_SECRET", "CLAIIM_ADMIN_TOKEN", "CLAIIM_CONTROL_VERIFIERS", "CLAIIM_NATS_ISSUER_SEED"},
    "admin": {"CLAIIM_CHECKPOINT_VERIFIER"},
}
SERVICE_USER = {"gate": "gate", "control": "control", "chron": "chron", "ocsf": "ocsf", "auth": "auth", "admin": "ui"}


def test_the_admin_ui_gets_no_secret() -> None:
    """The web UI acts only with the tokens admins log in with: compose gives it no claiim secret or key."""
    services = compose()["services"]
    assert isinstance(services, dict)
    secrets = {"CLAIIM_TOKEN_SECRET", "CLAIIM_ADMIN_TOKEN", "CLAIIM_CHECKPOINT_KEY", "CLAIIM_CONTROL_KEY",
               "CLAIIM_GATE_KEY", "CLAIIM_GATE_KEYS", "CLAIIM_NATS_ISSUER_SEED"}
    assert not secrets & set(services["admin"]["environment"])


def test_each_service_logs_in_to_nats_as_its_own_user() -> None:
    """Each claiim service's CLAIIM_NATS_PASSWORDS holds its own user's password (and only the auth service
    also the system user's); the NATS container gets every password and the issuer's public key."""
    services = compose()["services"]
    assert isinstance(services, dict)
    for name, user in SERVICE_USER.items():
        entries = dict(e.split("=", 1) for e in services[name]["environment"]["CLAIIM_NATS_PASSWORDS"].split(","))
        expected = {user, "sys"} if name == "auth" else {user}
        assert set(entries) == expected, name
        assert all(v == f"${{{password_variable(u)}}}" for u, v in entries.items()), name
    for node in NATS_NODES:
        nats_env = services[node]["environment"]
        assert {password_variable(u) for u in SERVICE_USERS} | {"NATS_ISSUER"} <= set(nats_env)
        ports = services[node]["ports"]
        assert all(p.startswith("127.0.0.1:") for p in ports), "tokens are NATS passwords: no plain NATS off the host"


NATS_NODES = ("nats-1", "nats-2", "nats-3")


def test_compose_runs_nats_as_a_three_node_cluster_and_every_service_knows_every_node() -> None:
    """Three NATS nodes with the cluster configuration, each its own name and store, routes that carry the route
    password to every node; the services list every node and ask for three stream replicas."""
    services = compose()["services"]
    assert isinstance(services, dict)
    names = set()
    for node in NATS_NODES:
        spec = services[node]
        env = spec["environment"]
        names.add(env["NATS_SERVER_NAME"])
        assert "./deploy/nats/nats-cluster.conf:/etc/nats/nats.conf:ro" in spec["volumes"]
        assert f"{node}-data:/data" in spec["volumes"]
        routes = [env[f"NATS_ROUTE_{i}"] for i in (1, 2, 3)]
        assert routes == [f"nats-route://route:${{CLUSTER_NATS_PASSWORD}}@{n}:6222" for n in NATS_NODES]
    assert names == set(NATS_NODES)
    for name in CLAIIM_SERVICES:
        env = services[name]["environment"]
        assert env["CLAIIM_URL"] == ",".join(f"nats://{n}:4222" for n in NATS_NODES), name
        assert env["CLAIIM_STREAM_REPLICAS"] == "3", name
        assert set(NATS_NODES) <= set(services[name]["depends_on"]), name
    assert services["chron"]["deploy"]["replicas"] == 2, "a Chron standby waits on the writer lock"


def test_compose_gives_each_service_the_secrets_it_requires() -> None:
    """A compose service missing a required secret would crash-loop; each one gets what it needs."""
    services = compose()["services"]
    assert isinstance(services, dict)
    for name, required in REQUIRED.items():
        assert required <= set(services[name]["environment"]), name


def test_the_deployed_nats_config_is_what_claiim_generates(capsys: pytest.CaptureFixture[str]) -> None:
    """deploy/nats/nats-auth.conf is the output of `claiim nats-config` (namespace claiim): never edited by hand."""
    args = build_parser().parse_args(["nats-config"])
    assert nats_config(args) == 0
    assert capsys.readouterr().out == (ROOT / "deploy/nats/nats-auth.conf").read_text()


def test_the_deployed_cluster_config_is_what_claiim_generates(capsys: pytest.CaptureFixture[str]) -> None:
    """deploy/nats/nats-cluster.conf is `claiim nats-config` for the three nodes compose runs: never edited by hand."""
    args = build_parser().parse_args(["nats-config", "--cluster", "nats-1:6222,nats-2:6222,nats-3:6222",
                                      "--server-name", "$NATS_SERVER_NAME"])
    assert nats_config(args) == 0
    assert capsys.readouterr().out == (ROOT / "deploy/nats/nats-cluster.conf").read_text()


@pytest.mark.parametrize("name", ["nats-auth.conf", "nats-cluster.conf"])
def test_nats_config_is_accepted_and_reads_passwords_from_the_environment(name: str) -> None:
    """The deployed NATS configurations are valid, and name every password variable they need (none is in the
    files)."""
    text = (ROOT / "deploy/nats" / name).read_text()
    names = sorted(set(re.findall(r"password: \$([A-Z_]+)", text)))
    cluster = ["CLUSTER_NATS_PASSWORD"] if name == "nats-cluster.conf" else []
    assert names == sorted([*(password_variable(u) for u in SERVICE_USERS), *cluster])
    assert "issuer: $NATS_ISSUER" in text and "sync_interval: always" in text
    env = {**os.environ, **{n: "pabc" for n in names}, "NATS_SERVER_NAME": "nats-1",
           **{f"NATS_ROUTE_{i}": f"nats-route://route:pabc@nats-{i}:6222" for i in (1, 2, 3)},
           "NATS_ISSUER": "ABJHLOVMPA4CI6R5KLNGOB4GSLNIY7IOUPAJC4YFNDLQVIOBYQGUWVLA"}
    out = subprocess.run([nats_server_binary(), "-c", str(ROOT / "deploy/nats" / name), "-t"],
                         capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 0, out.stderr


def test_asyncapi_names_the_subjects_the_code_uses() -> None:
    """The AsyncAPI document's channel addresses are the subjects of the default namespace."""
    doc = yaml.safe_load((ROOT / "docs/asyncapi.yaml").read_text())
    addresses = {c["address"] for c in doc["channels"].values() if c.get("address")}
    names = Names()
    assert {names.gate_check, names.admin_apply, names.admin_agent, names.admin_admins, names.admin_org,
            names.admin_proposal, names.admin_query, names.chron_query, names.chron_leaves,
            names.chron_checkpoint} <= addresses
    assert "claiim.decision.{org}.{agent}.{outcome}" in addresses
    assert "claiim.control.{org}.{kind}.{name}" in addresses
    assert "claiim.ocsf.{org}.{agent}.{outcome}" in addresses


def test_dockerfile_installs_the_package_and_runs_as_non_root() -> None:
    """The image installs claiim, runs `claiim serve`, and does not run as root."""
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install ." in text and '"claiim", "serve"' in text
    assert "\nUSER " in text and "USER root" not in text


def test_the_settings_page_is_generated_from_the_settings_class() -> None:
    """docs/settings.md is what scripts/gen-docs writes, and every setting is described."""
    from claiim_runtime.settings import Settings, settings_document

    assert all(field.description for field in Settings.model_fields.values())
    assert (ROOT / "docs/settings.md").read_text() == settings_document(), "run scripts/gen-docs"


def test_the_asyncapi_schemas_are_the_msgspec_structs() -> None:
    """Every schema of docs/asyncapi.yaml named after a wire struct is that struct's, as scripts/gen-docs writes it."""
    from claiim_server.apidoc import render, structs, with_generated_schemas

    text = (ROOT / "docs/asyncapi.yaml").read_text()
    doc = yaml.safe_load(text)
    generated = {name for name in doc["components"]["schemas"] if name in structs()}
    assert {"CheckRequest", "DecisionEvent", "ApplyReply", "ChronQuery", "SkillPublished", "LeafBatch"} <= generated
    assert render(with_generated_schemas(doc)) == text, "run scripts/gen-docs"
