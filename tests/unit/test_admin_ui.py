"""The admin UI's pure parts: decision counts over time, side-by-side diffs, sessions and the approval pages'
templates."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from claiim_admin.sessions import Session, Sessions
from claiim_admin.stats import MINUTES, DecisionStats
from claiim_admin.web import templates
from claiim_core.diff import document, proposed, side_by_side
from claiim_core.policytest import parse_policy
from claiim_core.schemas import ApprovalView, PolicyVersionInfo

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


WAITING = ApprovalView(approval_id="chr_01pending", org="demo", agent_id="deploy-bot", anchor="s.emp1",
                       action="deploy:production", target="api-v2", context={"ticket": "CHG-1"},
                       rule="approve[0]: deploy:production", policy="gated-v1", skill="deploy-v2", approver="anchor",
                       request_hash="sha256:" + "ab" * 32, requested_at="2026-11-28T10:00:00+00:00",
                       expires_at="2026-11-28T10:01:00+00:00", status="pending")


def person(name: str, role: str) -> Session:
    return Sessions(idle=100, absolute=1000, clock=lambda: 0.0).create(token="t", org="demo", name=name, role=role)


def page(template: str, session: Session, **context: Any) -> str:
    return templates().get_template(template).render(session=session, flashes=[], path="/approvals/x", **context)


def test_an_anchor_sees_its_pages_only_and_its_grant_is_bound_to_the_request_shown() -> None:
    """An anchor's page links only the pages it may use; both forms post the request hash shown, with the CSRF
    token and a required reason; the PENDING decision is linked."""
    anchor = person("s.emp1", "anchor")
    html = page("approval.html", anchor, a=WAITING)
    assert re.findall(r'<li><a href="([^"]+)"', html) == ["/approvals", "/search", "/checkpoints"]
    forms = re.findall(r'<form method="post" action="(/approvals/[^"]+)"[^>]*>(.*?)</form>', html, re.S)
    assert [action for action, _ in forms] == ["/approvals/chr_01pending/grant", "/approvals/chr_01pending/refuse"]
    for _, body in forms:
        assert f'name="request_hash" value="{WAITING.request_hash}"' in body
        assert f'name="csrf" value="{anchor.csrf}"' in body
        assert '<input name="reason" placeholder="reason" required>' in body
    assert 'href="/decisions/chr_01pending"' in html and "decides this approval" not in html


def test_an_admin_is_told_who_decides_and_a_closed_approval_links_its_outcome() -> None:
    """An admin sees every page and that only the anchor decides an anchor's approval; a granted one shows who
    granted it and why, links the decision that ended it, and offers no form."""
    admin = person("alice", "admin")
    waiting = page("approval.html", admin, a=WAITING)
    assert "/proposals" in waiting and "/agents" in waiting
    assert "Only deploy-bot's anchor s.emp1 decides this approval." in waiting
    granted = msgspec.structs.replace(WAITING, status="granted", decided_by="s.emp1",
                                      decided_at="2026-11-28T10:00:30+00:00", note="CHG-1 ok",
                                      final_outcome="ALLOW", final_chron_id="chr_01allow")
    html = page("approval.html", admin, a=granted)
    assert "granted by s.emp1 at 2026-11-28 10:00:30 UTC: CHG-1 ok" in html
    assert '<a id="final" class="mono" href="/decisions/chr_01allow">chr_01allow</a>' in html
    assert 'action="/approvals' not in html
    listed = page("approvals.html", admin, approvals=[granted], closed=True)
    assert 'href="/approvals/chr_01pending"' in listed and 'href="/approvals">Waiting only' in listed
