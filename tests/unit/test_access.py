"""Admin identity: authentication by token, authorization by role and org, and the admin and org commands."""

from __future__ import annotations

from itertools import count

import pytest
from claiim_core.access import OPERATOR, AccessError, Principal, authenticate, scope, visible_orgs
from claiim_core.bundle import PlanContext
from claiim_core.commands import CommandError, plan_admin_command, plan_agent_command, plan_org_create
from claiim_core.events import AdminEnrolled, AdminRevoked, AgentUpdated
from claiim_core.registry import Registry
from claiim_core.schemas import AdminCommand, AgentCommand
from claiim_core.tokens import format_token, hash_token, token_org

from tests.unit.seed import SECRET, apply_all, org, seed_registry

OPERATOR_TOKEN = "operator-token-for-tests"
_randomness = count(1)


def context(actor: str = "alice") -> PlanContext:
    """Ids from a counter, and token randomness that never repeats within the test session."""
    ids, tokens = count(1), _randomness
    return PlanContext(actor=actor, now="2026-01-02T03:04:05.000000Z",
                       new_id=lambda: f"chr_{next(ids):026d}",
                       new_token=lambda kind, o: format_token(kind, o, next(tokens).to_bytes(32, "big")),
                       token_secret=SECRET)


def enrol(registry: Registry, name: str, role: str = "admin", org_name: str = "demo",
          actor: str = OPERATOR) -> str:
    cmd = AdminCommand(admin_token="", op="enrol", name=name, role=role)  # type: ignore[arg-type]
    event, token = plan_admin_command(registry, org_name, cmd, context(actor))
    apply_all(registry, [event])
    assert token is not None
    return token


def registry_with_admins() -> tuple[Registry, dict[str, str]]:
    registry = apply_all(seed_registry(), [org("other")])
    tokens = {"alice": enrol(registry, "alice"), "audrey": enrol(registry, "audrey", "auditor"),
              "oscar": enrol(registry, "oscar", org_name="other")}
    return registry, tokens


def test_each_token_authenticates_as_its_admin() -> None:
    """An admin token names its org and maps to exactly one admin with its role; the operator token is separate."""
    registry, tokens = registry_with_admins()
    assert token_org("admin", tokens["alice"]) == "demo"
    assert authenticate(registry, SECRET, OPERATOR_TOKEN, tokens["alice"]) == Principal("alice", "admin", "demo")
    assert authenticate(registry, SECRET, OPERATOR_TOKEN, tokens["audrey"]) == Principal("audrey", "auditor", "demo")
    assert authenticate(registry, SECRET, OPERATOR_TOKEN, tokens["oscar"]) == Principal("oscar", "admin", "other")
    assert authenticate(registry, SECRET, OPERATOR_TOKEN, OPERATOR_TOKEN) == Principal(OPERATOR, "operator", None)


@pytest.mark.parametrize("presented", [
    "", "nonsense", "cla_demo.not-the-secret", "clm_demo.agent-token-style",
])
def test_other_tokens_are_refused(presented: str) -> None:
    registry, _ = registry_with_admins()
    with pytest.raises(AccessError, match="unauthorized: not a valid admin token"):
        authenticate(registry, SECRET, OPERATOR_TOKEN, presented)


def test_a_token_presented_under_another_orgs_name_is_refused() -> None:
    """The org in the token must be the admin's own: alice's secret relabelled as org other is refused."""
    registry, tokens = registry_with_admins()
    relabelled = tokens["alice"].replace("cla_demo.", "cla_other.")
    with pytest.raises(AccessError):
        authenticate(registry, SECRET, OPERATOR_TOKEN, relabelled)


def test_no_operator_token_configured_means_none_is_accepted() -> None:
    registry, _ = registry_with_admins()
    with pytest.raises(AccessError):
        authenticate(registry, SECRET, "", "")


def test_a_revoked_admin_is_refused() -> None:
    registry, tokens = registry_with_admins()
    cmd = AdminCommand(admin_token="", op="revoke", name="audrey", reason="left")
    event, _ = plan_admin_command(registry, "demo", cmd, context())
    assert isinstance(event, AdminRevoked)
    apply_all(registry, [event])
    with pytest.raises(AccessError):
        authenticate(registry, SECRET, OPERATOR_TOKEN, tokens["audrey"])


@pytest.mark.parametrize("org_name", ["other", "does-not-exist"])
def test_another_org_is_refused_alike_whether_it_exists_or_not(org_name: str) -> None:
    """Nothing about another org can be learnt, not even whether it exists."""
    alice = Principal("alice", "admin", "demo")
    for write in (False, True):
        with pytest.raises(AccessError) as info:
            scope(alice, org_name, write=write)
        assert str(info.value) == f"forbidden: admin alice of org demo cannot act in org {org_name}"


def test_scope_by_role() -> None:
    """Admins read and change their org; auditors only read; the operator acts in a named org."""
    alice, audrey = Principal("alice", "admin", "demo"), Principal("audrey", "auditor", "demo")
    operator = Principal(OPERATOR, "operator", None)
    assert scope(alice, "", write=True) == scope(alice, "demo", write=True) == "demo"
    assert scope(audrey, "", write=False) == "demo"
    with pytest.raises(AccessError, match="read-only"):
        scope(audrey, "demo", write=True)
    assert scope(operator, "other", write=True) == "other"
    with pytest.raises(AccessError, match="name the org"):
        scope(operator, "", write=False)


def test_visible_orgs() -> None:
    registry, _ = registry_with_admins()
    assert visible_orgs(Principal("alice", "admin", "demo"), registry) == ["demo"]
    assert visible_orgs(Principal(OPERATOR, "operator", None), registry) == ["demo", "other"]


def test_enrolment_stores_only_the_keyed_hash_and_names_the_actor() -> None:
    registry = seed_registry()
    cmd = AdminCommand(admin_token="", op="enrol", name="bob", role="auditor")
    event, token = plan_admin_command(registry, "demo", cmd, context("alice"))
    assert isinstance(event, AdminEnrolled) and token is not None
    assert token.startswith("cla_demo.")
    assert (event.actor, event.org, event.name, event.role) == ("alice", "demo", "bob", "auditor")
    assert event.token_hash == hash_token(SECRET, token) and token not in repr(event)


@pytest.mark.parametrize(("op", "name", "message"), [
    ("enrol", "alice", "alice is already enrolled in org demo as admin"),
    ("enrol", OPERATOR, "'operator' is reserved"),
    ("revoke", "nobody", "no admin 'nobody' in org demo"),
    ("revoke", "alice", "alice is the last admin of org demo"),
])
def test_admin_commands_that_do_not_apply(op: str, name: str, message: str) -> None:
    registry, _ = registry_with_admins()
    cmd = AdminCommand(admin_token="", op=op, name=name)  # type: ignore[arg-type]
    with pytest.raises(CommandError, match=message):
        plan_admin_command(registry, "demo", cmd, context("alice"))


def test_the_operator_may_revoke_the_last_admin() -> None:
    """Break-glass: the operator can remove a compromised last admin (and enrol a new one)."""
    registry, _ = registry_with_admins()
    cmd = AdminCommand(admin_token="", op="revoke", name="alice")
    event, _ = plan_admin_command(registry, "demo", cmd, context(OPERATOR))
    assert event.actor == OPERATOR


def test_admins_of_an_unknown_org_cannot_be_enrolled() -> None:
    cmd = AdminCommand(admin_token="", op="enrol", name="eve")
    with pytest.raises(CommandError, match="no org 'nowhere'"):
        plan_admin_command(seed_registry(), "nowhere", cmd, context(OPERATOR))


def test_set_anchor_changes_only_the_anchor() -> None:
    registry = seed_registry()
    cmd = AgentCommand(admin_token="", op="set-anchor", agent_id="deploy-bot", anchor="j.smith")
    event, token = plan_agent_command(registry, "demo", cmd, context())
    assert isinstance(event, AgentUpdated) and token is None
    apply_all(registry, [event])
    after = registry.agents[("demo", "deploy-bot")]
    assert (after.anchor, after.skills, after.policy) == ("j.smith", ("deploy-v2",), "no-prod-v1")
    with pytest.raises(CommandError, match=r"already j\.smith"):
        plan_agent_command(registry, "demo", cmd, context())


def test_agent_commands_look_only_in_the_given_org() -> None:
    """An admin of org other naming demo's agent finds nothing."""
    registry = apply_all(seed_registry(), [org("other")])
    cmd = AgentCommand(admin_token="", op="suspend", agent_id="deploy-bot")
    with pytest.raises(CommandError, match="no agent 'deploy-bot' in org other"):
        plan_agent_command(registry, "other", cmd, context())


def test_org_create() -> None:
    registry = seed_registry()
    event = plan_org_create(registry, "acme", "Acme Corp", context(OPERATOR))
    apply_all(registry, [event])
    assert registry.orgs["acme"] == "Acme Corp"
    with pytest.raises(CommandError, match="org acme already exists"):
        plan_org_create(registry, "acme", "", context(OPERATOR))
