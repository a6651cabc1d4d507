"""The admin UI's pure parts: decision counts over time, side-by-side diffs and sessions."""

from __future__ import annotations

from claiim_admin.diff import document, proposed, side_by_side
from claiim_admin.sessions import Sessions
from claiim_admin.stats import MINUTES, DecisionStats
from claiim_core.policytest import parse_policy
from claiim_core.schemas import PolicyVersionInfo

NOW = 1_800_000_000.0  # a minute boundary: 30,000,000 minutes


def test_counts_land_in_their_minute_and_old_ones_are_forgotten() -> None:
    """Each decision counts in the minute it was taken; the chart covers exactly MINUTES minutes."""
    stats = DecisionStats()
    stats.add("demo", NOW - 30, True, {}, NOW)
    stats.add("demo", NOW - 30, False, {}, NOW)
    stats.add("demo", NOW - 90, True, {}, NOW)
    stats.add("demo", NOW - MINUTES * 60 - 1, True, {}, NOW)  # older than the chart
    snap = stats.snapshot("demo", NOW)
    assert len(snap.minutes) == MINUTES
    assert snap.minutes[-1] == (NOW, 0, 0)
    assert snap.minutes[-2] == (NOW - 60, 1, 1)
    assert snap.minutes[-3] == (NOW - 120, 1, 0)
    assert (snap.allow, snap.deny) == (2, 1)


def test_the_rate_counts_the_last_ten_whole_seconds() -> None:
    """Decisions per second average the ten seconds before the current one, which is still filling."""
    stats = DecisionStats()
    for i in range(20):
        stats.add("demo", NOW - 5 + 0.01 * i, True, {}, NOW)
    stats.add("demo", NOW + 0.5, True, {}, NOW + 0.5)
    stats.add("demo", NOW - 30, True, {}, NOW)
    assert stats.snapshot("demo", NOW + 0.6).rate == 2.0


def test_orgs_are_counted_apart() -> None:
    """One org's decisions never show in another's counts or feed."""
    stats = DecisionStats()
    stats.add("acme", NOW - 1, True, {"chron_id": "chr_a"}, NOW)
    assert stats.snapshot("demo", NOW).allow == 0
    assert stats.recent("demo") == [] and stats.recent("acme") == [{"chron_id": "chr_a"}]


def policy(version: int, allow: tuple[str, ...], deny: tuple[str, ...]) -> PolicyVersionInfo:
    return PolicyVersionInfo(label=f"p-v{version}", name="p", version=version, description="", skill="deploy-v2",
                             allow=allow, deny=deny, content_hash="h")


def test_a_side_by_side_diff_aligns_unchanged_lines_and_marks_changes() -> None:
    """Unchanged lines sit side by side; an added rule shows only on the right, a removed one only on the left."""
    old = document(policy(1, ("deploy:staging", "health:check"), ("deploy:production",)))
    new = document(policy(2, ("deploy:staging",), ("deploy:production", "infra:destroy")))
    rows = side_by_side(old, new)
    assert next((r.left, r.right) for r in rows if r.kind == "same") == ("skill: deploy-v2", "skill: deploy-v2")
    assert [r.left for r in rows if r.kind in ("removed", "changed")] == ["- health:check"]
    assert [r.right for r in rows if r.kind in ("added", "changed")] == ["- infra:destroy"]
    assert [r.left for r in rows if r.left_no is not None] == old.splitlines()
    assert [r.right for r in rows if r.right_no is not None] == new.splitlines()


def test_the_document_reads_back_as_a_policy_file() -> None:
    """What the UI shows (and pre-fills for a new version) is a policy file ``claiim policy publish`` accepts."""
    parsed = parse_policy(document(policy(1, ("deploy:staging",), ("deploy:production",))), "p.yaml")
    assert parsed.document.skill == "deploy-v2"
    assert list(parsed.document.allow) == ["deploy:staging"] and list(parsed.document.deny) == ["deploy:production"]


def test_sessions_end_when_idle_and_after_the_absolute_limit() -> None:
    """A session lives while used, ends after the idle time, and ends at the absolute limit however used."""
    now = [0.0]
    sessions = Sessions(idle=100, absolute=250, clock=lambda: now[0])
    s = sessions.create(token="cla_demo.x", org="demo", name="alice", role="admin")
    for t in (90, 180, 240):
        now[0] = t
        assert sessions.get(s.sid) is s
    now[0] = 251
    assert sessions.get(s.sid) is None
    idle = sessions.create(token="cla_demo.y", org="demo", name="bob", role="admin")
    now[0] = 352
    assert sessions.get(idle.sid) is None and len(sessions) == 0


def test_a_session_checks_its_csrf_token_and_shows_a_flash_once() -> None:
    """Only the session's own CSRF token passes; a flash message is shown once."""
    sessions = Sessions(idle=100, absolute=1000, clock=lambda: 0.0)
    s = sessions.create(token="t", org="demo", name="alice", role="auditor")
    assert s.read_only and s.csrf_ok(s.csrf) and not s.csrf_ok("") and not s.csrf_ok(s.csrf + "x")
    s.flash("ok", "done")
    assert s.take_flashes() == [("ok", "done")] and s.take_flashes() == []


def test_a_proposed_policy_version_reads_like_a_published_one() -> None:
    """The version a stored policy.published event would create shows as the same document as once published."""
    event = {"type": "policy.published", "name": "p", "version": 1, "description": "",
             "document": {"skill": "deploy-v2", "allow": ["deploy:staging"], "deny": ["deploy:production"]}}
    version = proposed(event)
    assert version is not None and version.label == "p-v1"
    assert document(version) == document(policy(1, ("deploy:staging",), ("deploy:production",)))
    assert proposed({"type": "agent.suspended", "agent_id": "x"}) is None
