"""The evaluator's decision table, the pattern language and references, on a registry built from events."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from claiim_core.decision import Verdict, evaluate
from claiim_core.document import PolicyDocument, Rule, RuleLike
from claiim_core.events import ControlEvent
from claiim_core.policy import check_pattern, first_match, first_rule, matches, target_matches
from claiim_core.refs import parse_ref
from claiim_core.registry import Registry
from claiim_core.schemas import CheckRequest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.seed import (
    DEPLOY_TOKEN,
    SECRET,
    agent,
    agent_update,
    apply_all,
    org,
    policy,
    seed_registry,
    skill,
)

ACTIONS = st.from_regex(r"\A[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)*\Z", fullmatch=True).filter(lambda a: len(a) <= 128)


def check(registry: Registry, action: str, agent_id: str = "deploy-bot", token: str = DEPLOY_TOKEN) -> Verdict:
    return evaluate(registry, CheckRequest(agent_id=agent_id, token=token, action=action), SECRET)


def token_of(agent_id: str) -> str:
    return f"clm_demo.{agent_id}-token"


def with_agent(agent_id: str, skills: tuple[str, ...], policy_ref: str, *extra: ControlEvent) -> Registry:
    """The seed registry plus ``extra`` events and one more agent."""
    return apply_all(seed_registry(), [*extra, agent(agent_id, token_of(agent_id), skills, policy_ref)])


# -- the decision table -------------------------------------------------------------------------


def test_seed_allows_deploy_staging() -> None:
    """deploy-bot may deploy to staging under no-prod-v1, and the verdict names rule, skill and anchor."""
    assert check(seed_registry(), "deploy:staging") == Verdict(
        "ALLOW", "policy:no-prod-v1 -- action allowed", "allow[0]: deploy:staging",
        org="demo", anchor="s.emp1", policy="no-prod-v1", skill="deploy-v2",
    )


def test_explicit_deny_names_the_deny_rule() -> None:
    """deploy:production is denied by the deny list, and the reason and rule say so."""
    verdict = check(seed_registry(), "deploy:production")
    assert (verdict.outcome, verdict.reason, verdict.rule) == (
        "DENY", "policy:no-prod-v1 -- action explicitly denied", "deny[0]: deploy:production")
    assert (verdict.policy, verdict.skill, verdict.org) == ("no-prod-v1", "deploy-v2", "demo")


def test_action_in_skill_but_not_in_allow_list_is_denied_by_default() -> None:
    """An action the skill covers but the policy neither allows nor denies is denied by default."""
    registry = with_agent("health-bot", ("deploy-v2",), "health-only-v1",
                          policy("health-only", 1, PolicyDocument(skill="deploy-v2", allow=("health:check",))))
    verdict = check(registry, "deploy:staging", "health-bot", token_of("health-bot"))
    assert (verdict.outcome, verdict.reason, verdict.rule) == (
        "DENY", "policy:health-only-v1 -- action not in allow list", "default-deny")
    assert check(registry, "health:check", "health-bot", token_of("health-bot")).outcome == "ALLOW"


def test_action_outside_the_skill_is_denied_before_the_policy() -> None:
    """An action none of the agent's skill versions lists is denied as outside the skills."""
    verdict = check(seed_registry(), "infra:destroy")
    assert (verdict.outcome, verdict.reason, verdict.rule, verdict.skill, verdict.policy) == (
        "DENY", "skill:deploy-v2 -- action outside the agent's skills", "skill", "deploy-v2", "")


def test_unknown_agent_is_denied_at_authentication() -> None:
    """A request for an agent id the token's org does not have is denied and recorded under that org."""
    verdict = check(seed_registry(), "deploy:staging", agent_id="ghost")
    assert verdict == Verdict("DENY", "agent:unknown -- no agent 'ghost' is registered in org demo",
                              "authenticate", org="demo")


def test_unknown_agent_of_an_org_that_does_not_exist_is_recorded_under_no_org() -> None:
    """A token naming an org nobody created does not create a decision stream for that org."""
    verdict = check(seed_registry(), "deploy:staging", token="clm_nowhere.abc")
    assert (verdict.reason, verdict.org) == ("agent:unknown -- no agent 'deploy-bot' is registered in org nowhere", "")


@pytest.mark.parametrize("token", ["wrong", "clm_", "clm_demo", "clm_.abc", "cla_demo.abc", "clm_de mo.abc"])
def test_a_token_that_names_no_org_is_a_bad_token(token: str) -> None:
    """Only agent tokens (``clm_<org>.<secret>``) are looked at; anything else is denied as a bad token."""
    verdict = check(seed_registry(), "deploy:staging", token=token)
    assert (verdict.outcome, verdict.org) == ("DENY", "")
    assert verdict.reason == "auth:bad-token -- not an agent token of any org (agent deploy-bot)"


def test_the_same_agent_id_in_two_orgs_is_two_agents() -> None:
    """Agent ids are unique within an org only; each org's token reaches its own agent, never the other."""
    other_token = "clm_other.deploy-bot-token"
    registry = apply_all(seed_registry(), [
        org("other"),
        skill("deploy", 1, ("deploy:production",), org="other"),
        policy("yolo", 1, PolicyDocument(skill="deploy-v1", allow=("deploy:production",)), org="other"),
        agent("deploy-bot", other_token, ("deploy-v1",), "yolo-v1", org="other", anchor="o.ther"),
    ])
    mine, theirs = check(registry, "deploy:production"), check(registry, "deploy:production", token=other_token)
    assert (mine.outcome, mine.org, mine.anchor) == ("DENY", "demo", "s.emp1")
    assert (theirs.outcome, theirs.org, theirs.anchor, theirs.policy) == ("ALLOW", "other", "o.ther", "yolo-v1")
    forged = "clm_other." + DEPLOY_TOKEN.split(".", 1)[1]  # demo's secret presented as other's
    assert check(registry, "deploy:staging", token=forged).reason.startswith("auth:bad-token")


def test_bad_token_is_denied_at_authentication() -> None:
    """A registered agent with the wrong token is denied, and the reason never echoes the token."""
    verdict = check(seed_registry(), "deploy:staging", token="clm_demo.wrong-token-zzzz")
    assert (verdict.outcome, verdict.reason, verdict.rule, verdict.org, verdict.anchor) == (
        "DENY", "auth:bad-token -- token does not match agent deploy-bot", "authenticate", "demo", "s.emp1")
    assert "wrong-token-zzzz" not in verdict.reason


def test_suspended_agent_is_denied() -> None:
    """An agent whose status is not active is denied even with the right token."""
    registry = seed_registry()
    key = ("demo", "deploy-bot")
    registry.agents[key] = dataclasses.replace(registry.agents[key], status="suspended")
    verdict = check(registry, "deploy:staging")
    assert (verdict.outcome, verdict.reason, verdict.rule) == (
        "DENY", "agent:suspended -- agent deploy-bot is suspended", "agent-active")


def test_agent_with_unresolved_skill_is_denied() -> None:
    """An agent bound to a skill version that does not exist is denied, naming the missing reference."""
    registry = with_agent("lost-bot", ("deploy-v2", "deploy-v9"), "no-prod-v1")
    verdict = check(registry, "deploy:staging", "lost-bot", token_of("lost-bot"))
    assert (verdict.outcome, verdict.reason, verdict.rule) == (
        "DENY", "skill:deploy-v9 -- skill version not found", "skill")


@pytest.mark.parametrize("policy_ref", ["missing-v1", "missing", "no-prod-v7", ""])
def test_agent_without_a_resolvable_policy_is_denied(policy_ref: str) -> None:
    """An agent whose policy reference resolves to nothing is denied with policy:none."""
    registry = with_agent("loose-bot", ("deploy-v2",), policy_ref)
    verdict = check(registry, "deploy:staging", "loose-bot", token_of("loose-bot"))
    assert (verdict.outcome, verdict.reason, verdict.rule, verdict.skill) == (
        "DENY", "policy:none -- agent has no bound policy", "policy", "deploy-v2")


def test_deny_wins_over_allow_for_the_same_action() -> None:
    """An action in both the allow and the deny list is denied."""
    doc = PolicyDocument(skill="deploy-v2", allow=("deploy:staging", "health:check"), deny=("deploy:staging",))
    registry = with_agent("torn-bot", ("deploy-v2",), "torn-v1", policy("torn", 1, doc))
    verdict = check(registry, "deploy:staging", "torn-bot", token_of("torn-bot"))
    assert (verdict.outcome, verdict.reason, verdict.rule) == (
        "DENY", "policy:torn-v1 -- action explicitly denied", "deny[0]: deploy:staging")


def test_deny_pattern_wins_over_allow_wildcard() -> None:
    """A wildcard allow does not override a specific deny."""
    doc = PolicyDocument(skill="deploy-v2", allow=("deploy:*",), deny=("deploy:prod*",))
    registry = with_agent("wild-bot", ("deploy-v2",), "wild-v1", policy("wild", 1, doc))
    tok = token_of("wild-bot")
    assert check(registry, "deploy:production", "wild-bot", tok).rule == "deny[0]: deploy:prod*"
    assert check(registry, "deploy:staging", "wild-bot", tok).rule == "allow[0]: deploy:*"


# -- patterns -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("deploy:*", "deploy:staging", True),
        ("deploy:*staging", "deploy:staging", True),
        ("deploy:*", "deploy", False),
        ("deploy:*", "deploy:a:b", False),
        ("*:check", "health:check", True),
        ("*:check", "health:deep:check", False),
        ("*:check", "check", False),
        ("de*y:st*g", "deploy:staging", True),
        ("deploy:*-staging", "deploy:rollback-staging", True),
        ("deploy:*-staging", "deploy:rollback-production", False),
        ("deploy.x:*", "deployAx:y", False),
        ("deploy:staging", "deploy:staging", True),
        ("deploy:staging", "deploy:stagingx", False),
        ("deploy:staging", "Deploy:staging", False),
    ],
)
def test_wildcards_stay_within_a_segment(pattern: str, action: str, expected: bool) -> None:
    """'*' matches any run of characters inside one ':'-segment, and everything else is literal."""
    assert matches(pattern, action) is expected


def test_skill_actions_may_be_wildcards() -> None:
    """A skill whose actions are patterns covers every action they match, and only those."""
    registry = apply_all(seed_registry(), [
        skill("ops", 1, ("*:check", "deploy:*")),
        policy("ops", 1, PolicyDocument(skill="ops", allow=("*",), deny=())),
        agent("ops-bot", token_of("ops-bot"), ("ops",), "ops"),
    ])
    tok = token_of("ops-bot")
    assert check(registry, "db:check", "ops-bot", tok).outcome == "DENY"  # '*' is one segment: no ':'
    assert check(registry, "db:check", "ops-bot", tok).rule == "default-deny"
    assert check(registry, "db:migrate", "ops-bot", tok).rule == "skill"


def test_first_match_returns_the_first_index() -> None:
    """first_match gives the index of the first matching pattern, or None."""
    assert first_match(("a:b", "a:*", "*:b"), "a:b") == 0
    assert first_match(("x:y", "a:*", "*:b"), "a:b") == 1
    assert first_match(("x:y",), "a:b") is None


# -- versions -----------------------------------------------------------------------------------


def test_bare_policy_name_follows_the_latest_version_and_pinned_stays() -> None:
    """After v2 of a policy is published, an agent bound by bare name gets v2 and one pinned to v1 keeps v1."""
    v1 = PolicyDocument(skill="deploy-v2", allow=("deploy:staging",))
    v2 = PolicyDocument(skill="deploy-v2", allow=("deploy:production",))
    registry = apply_all(seed_registry(), [
        policy("moving", 1, v1),
        agent("latest-bot", token_of("latest-bot"), ("deploy-v2",), "moving"),
        agent("pinned-bot", token_of("pinned-bot"), ("deploy-v2",), "moving-v1"),
    ])
    assert check(registry, "deploy:staging", "latest-bot", token_of("latest-bot")).policy == "moving-v1"
    apply_all(registry, [policy("moving", 2, v2)])
    latest = check(registry, "deploy:production", "latest-bot", token_of("latest-bot"))
    assert (latest.outcome, latest.policy) == ("ALLOW", "moving-v2")
    pinned = check(registry, "deploy:production", "pinned-bot", token_of("pinned-bot"))
    assert (pinned.outcome, pinned.policy, pinned.rule) == ("DENY", "moving-v1", "default-deny")
    assert check(registry, "deploy:staging", "pinned-bot", token_of("pinned-bot")).outcome == "ALLOW"


def test_bare_skill_name_follows_the_latest_version() -> None:
    """An agent holding the bare skill name is judged against the latest skill version."""
    registry = apply_all(seed_registry(), [agent("bare-bot", token_of("bare-bot"), ("deploy",), "no-prod-v1")])
    verdict = check(registry, "deploy:rollback-staging", "bare-bot", token_of("bare-bot"))
    assert (verdict.outcome, verdict.skill) == ("ALLOW", "deploy-v2")
    pinned = apply_all(seed_registry(), [agent("old-bot", token_of("old-bot"), ("deploy-v1",), "no-prod-v1")])
    assert check(pinned, "deploy:rollback-staging", "old-bot", token_of("old-bot")).rule == "skill"


def test_agent_update_keeps_the_token_and_rebinds_the_policy() -> None:
    """AgentUpdated changes skills and policy while the original token still authenticates."""
    registry = apply_all(seed_registry(), [
        policy("strict", 1, PolicyDocument(skill="deploy-v2", deny=("deploy:staging",))),
        agent_update("deploy-bot", ("deploy-v2",), "strict-v1"),
    ])
    verdict = check(registry, "deploy:staging")
    assert (verdict.outcome, verdict.policy, verdict.rule) == ("DENY", "strict-v1", "deny[0]: deploy:staging")


def test_registry_is_per_org() -> None:
    """A skill published in another org is not visible to agents of this org."""
    registry = apply_all(seed_registry(), [
        org("other"),
        skill("secret", 1, ("db:drop",), org="other"),
        agent("cross-bot", token_of("cross-bot"), ("secret-v1",), "no-prod-v1"),
    ])
    assert check(registry, "db:drop", "cross-bot", token_of("cross-bot")).reason == (
        "skill:secret-v1 -- skill version not found")


# -- references and patterns --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("deploy", ("deploy", None)),
        ("deploy-v2", ("deploy", 2)),
        ("no-prod-v1", ("no-prod", 1)),
        ("no-prod", ("no-prod", None)),
        ("a_b-v10", ("a_b", 10)),
        ("deploy-v", ("deploy-v", None)),
        ("deploy-version", ("deploy-version", None)),
        ("0", ("0", None)),
    ],
)
def test_parse_ref_valid(ref: str, expected: tuple[str, int | None]) -> None:
    """A reference splits into its name and, when pinned, its version."""
    assert parse_ref(ref) == expected


@pytest.mark.parametrize(
    "ref", ["", "Deploy", "-deploy", "_deploy", "deploy-v0", "deploy-v01", "deploy v2", "deploy:v2", "deploy.v2",
            "déploy"],
)
def test_parse_ref_invalid(ref: str) -> None:
    """Anything that is not NAME or NAME-vN with N >= 1 is rejected with a ValueError."""
    with pytest.raises(ValueError, match="is not a reference"):
        parse_ref(ref)


@pytest.mark.parametrize("pattern", ["deploy:*", "*", "*:check", "de*y:st*g", "a.b-c_d:E9"])
def test_check_pattern_valid(pattern: str) -> None:
    """Well-formed patterns pass check_pattern."""
    check_pattern(pattern)


@pytest.mark.parametrize(
    "pattern", ["", ":", "deploy:", ":deploy", "deploy::x", "deploy:**", "**", "dep loy", "deploy/x", "deploy:st?g",
                "deploy,x", "déploy"],
)
def test_check_pattern_invalid(pattern: str) -> None:
    """Malformed patterns raise ValueError explaining the pattern syntax."""
    with pytest.raises(ValueError, match="is not an action pattern"):
        check_pattern(pattern)


@pytest.mark.parametrize("fn", [check_pattern, parse_ref])
def test_trailing_newline_is_rejected(fn: object) -> None:
    """A pattern or reference with a trailing newline is invalid."""
    with pytest.raises(ValueError):
        fn("deploy-v2\n")  # type: ignore[operator]


# -- properties ---------------------------------------------------------------------------------


@given(ACTIONS)
def test_a_pattern_equal_to_the_action_matches(action: str) -> None:
    """Every action matches itself as a pattern, and matches with any one segment replaced by '*'."""
    assert matches(action, action)
    check_pattern(action)
    segments = action.split(":")
    for i in range(len(segments)):
        assert matches(":".join([*segments[:i], "*", *segments[i + 1:]]), action)


@given(ACTIONS)
def test_an_action_in_skill_and_allow_list_is_allowed(action: str) -> None:
    """An action listed in the agent's skill and its policy's allow list is allowed by that allow rule."""
    registry = apply_all(seed_registry(), [
        skill("any", 1, (action,)),
        policy("any", 1, PolicyDocument(skill="any-v1", allow=(action,))),
        agent("any-bot", token_of("any-bot"), ("any-v1",), "any-v1"),
    ])
    verdict = check(registry, action, "any-bot", token_of("any-bot"))
    assert (verdict.outcome, verdict.rule) == ("ALLOW", f"allow[0]: {action}")


@given(
    agent_id=st.sampled_from(["deploy-bot", "ghost"]) | st.text(min_size=1, max_size=20),
    token=st.sampled_from([DEPLOY_TOKEN, "clm_wrong"]) | st.text(min_size=1, max_size=20),
    action=ACTIONS | st.sampled_from(["deploy:staging", "deploy:production", "health:check", "infra:destroy"]),
)
def test_evaluation_is_deterministic(agent_id: str, token: str, action: str) -> None:
    """The same registry and request always give the same verdict, and evaluation leaves the registry as it was."""
    registry = seed_registry()
    before = copy.deepcopy(registry)
    request = CheckRequest(agent_id=agent_id, token=token, action=action)
    first = evaluate(registry, request, SECRET)
    assert evaluate(registry, request, SECRET) == first
    assert evaluate(copy.deepcopy(registry), request, SECRET) == first
    assert registry == before
    assert first.outcome == "DENY" or (agent_id, token) == ("deploy-bot", DEPLOY_TOKEN)


RULE_ACTIONS = st.sampled_from(["deploy:staging", "deploy:production", "deploy:*", "*:production", "health:check",
                                "ops:a", "ops:*", "*"])
RULE_TARGETS = st.none() | st.sampled_from(["prod-*", "prod-db", "*", "api-?"])


@given(rules=st.lists(st.one_of(RULE_ACTIONS, st.builds(Rule, action=RULE_ACTIONS, target=RULE_TARGETS)),
                      max_size=60),
       action=st.sampled_from(["deploy:staging", "deploy:production", "health:check", "ops:a", "ops:b", "x:y"]),
       target=st.sampled_from(["prod-db", "prod-web", "api-1", ""]))
def test_the_rule_index_finds_the_first_matching_rule(rules: list[RuleLike], action: str, target: str) -> None:
    """Long rule lists are looked up through an index: it finds the same rule as trying every rule in order."""
    in_order = next((i for i, rule in enumerate(rules)
                     if (matches(rule, action) if isinstance(rule, str)
                         else matches(rule.action, action) and target_matches(rule.target, target))), None)
    assert first_rule(tuple(rules), action, target) == in_order
