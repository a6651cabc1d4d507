"""The admin UI's forms, navigation counts, error pages and exports, rendered without a server: what a form
keeps after a refusal, what the navigation counts, how long cells carry their whole value, and how a search
is exported."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import msgspec
import pytest
from claiim_admin import nav
from claiim_admin.export import COLUMNS, csv_cell, csv_lines, jsonl_lines
from claiim_admin.pages_forms import agent_bundle, bundle_of, context_lines, split_names
from claiim_admin.sessions import Session, Sessions
from claiim_admin.web import templates
from claiim_core.schemas import AdminInfo, ChronRecord, RegistryQueryReply


def person(name: str = "alice", role: str = "admin") -> Session:
    return Sessions(idle=100, absolute=1000, clock=lambda: 0.0).create(token="t", org="demo", name=name, role=role)


def page(template: str, session: Session | None, path: str = "/", status: int = 200, **context: Any) -> str:
    return templates().get_template(template).render(session=session, flashes=[], path=path, status=status,
                                                     **context)


def record(i: int, **fields: Any) -> ChronRecord:
    values: dict[str, Any] = {
        "chron_id": f"chr_01jdq7x9k2m3n4p5q6r7s8t9v{i}", "kind": "decision",
        "recorded_at": "2026-11-28T10:00:01+00:00", "occurred_at": "2026-11-28T10:00:00+00:00", "stream": "d",
        "stream_seq": i, "subject": "s", "org": "demo", "agent_id": "deploy-bot-with-a-rather-long-name",
        "actor": "", "outcome": "DENY", "action": "deploy:production", "target": "api-v2", "anchor": "s.emp1",
        "policy": "no-prod-v1", "skill": "deploy-v2",
        "reason": "policy no-prod-v1 denies deploy:production: production deploys need a change ticket",
        "rule": "deny[0]", "gate": "g1", "control_seq": 3, "leaf_index": i, "event": msgspec.Raw(b'{"i":1}')}
    return ChronRecord(**(values | fields))


def test_the_navigation_counts_what_waits_and_shows_no_zero() -> None:
    """An admin's navigation shows the pending proposals and approvals as counts; a zero shows nothing."""
    alice = person()
    alice.counts = {"proposals": 3, "approvals": 0}
    html = page("overview.html", alice, data={"rate": 0, "allow": 0, "deny": 0, "minutes": [], "verification": None,
                                              "chron": {"error": "x", "problems": []}})
    assert re.search(r'href="/proposals"[^>]*>Proposals <span class="count" id="nav-proposals-count"[^>]*>3</span>',
                     html)
    assert "nav-approvals-count" not in html
    assert re.findall(r'<li><a href="([^"]+)"', html)[-3:] == ["/explain", "/admins", "/checkpoints"]


def test_an_anchor_sees_the_count_of_its_approvals_only() -> None:
    """An anchor's navigation counts the approvals the API shows it, and has no proposals link to count."""
    anchor = person("s.emp1", "anchor")
    anchor.counts = {"approvals": 2}
    html = page("approvals.html", anchor, path="/approvals", approvals=[], closed=False)
    assert '<span class="count" id="nav-approvals-count"' in html and "/proposals" not in html


def test_the_counts_are_read_again_after_their_time_or_a_post() -> None:
    """Counts never read, or read TTL seconds ago or more, are due; fresher ones are not."""
    alice = person()
    assert nav.due(alice, 100.0)
    alice.counted_at = 100.0
    assert not nav.due(alice, 100.0 + nav.TTL - 0.1)
    assert nav.due(alice, 100.0 + nav.TTL)
    assert nav.DECIDE_PROPOSALS == ("admin", "operator")


@pytest.mark.parametrize(("status", "heading"),
                         [(404, "Not found"), (403, "Forbidden"), (409, "Something was refused")])
def test_an_error_is_a_page_of_the_site(status: int, heading: str) -> None:
    """An unknown page or a refusal renders in the site's layout (navigation, stylesheet, icon) with its status."""
    html = page("error.html", person(), path="/nope", status=status, message="there is no page /nope")
    assert f'<h1 id="error-heading">{heading} <span class="hint">{status}</span></h1>' in html
    assert '<nav class="side">' in html and 'href="/static/favicon.svg"' in html
    assert "there is no page /nope" in html


def test_long_cells_carry_their_whole_value_in_a_title() -> None:
    """In a records table every cell that may be cut (agent, action, target, anchor, policy, reason, chron id)
    has its whole value as its title, and the table sits in a container that scrolls on a narrow screen."""
    r = record(7)
    html = templates().get_template("macros.html").module.records_table([r])  # type: ignore[attr-defined]
    assert '<div class="scroll">\n<table class="grid wide" id="records">' in str(html)
    for value in (r.agent_id, r.action, r.target, r.anchor, r.policy, r.reason, r.chron_id):
        assert f'title="{value}"' in str(html), value


def test_a_refused_policy_comes_back_as_typed() -> None:
    """After a refusal the policy and skill forms show what the admin typed and why it was refused."""
    typed = "skill: deploy-v2\nallow:\n  - deploy:stagin g\n"
    html = page("policies.html", person(), path="/policies", policies=[], skills=[],
                policy_form={"name": "no-prod", "document": typed}, policy_error="the policy has problems:\nallow[0]",
                skill_form={"name": "ops", "description": "d", "actions": "a:b\nc:d"}, skill_error="conflict")
    assert 'value="no-prod"' in html and "deploy:stagin g" in html
    assert '<div class="flash flash-error" role="alert" id="new-policy-error">the policy has problems:' in html
    assert 'id="new-skill-error">conflict</div>' in html and ">a:b\nc:d</textarea>" in html


def test_the_new_forms_post_with_the_csrf_token_and_keep_what_was_typed() -> None:
    """Register, enrol, the approval rule and explain post the session's CSRF token and show typed values and
    errors; an auditor gets no form that changes anything."""
    alice = person()
    pages = [
        page("register.html", alice, path="/register", skills=[], policies=[], mode="form",
             form={"id": "ops-bot", "anchor": "k.lee", "skills": "deploy-v2", "policy": "no-prod-v1"},
             bundle="agents: []", error="no skill nope", problems=["bundle:3: agents[0].skills[0]: unknown"]),
        page("admins.html", alice, path="/admins", admins=[AdminInfo(org="demo", name="bob", role="admin")],
             required=1, roles=("admin", "auditor", "anchor"), enrol={"name": "carol", "role": "anchor"},
             enrol_error="already enrolled", rule="", rule_error=""),
        page("explain.html", alice, path="/explain", agents=["deploy-bot"], error="",
             form={"agent": "deploy-bot", "action": "deploy:production", "target": "api-v2",
                   "context": "ticket=CHG-1"},
             result=RegistryQueryReply(ok=True, outcome="DENY", reason="policy:deny", rule="deny[0]",
                                       steps=["agent deploy-bot: active", "deny[0] matches"])),
    ]
    for html in pages:
        forms = re.findall(r'<form method="post"[^>]*>(.*?)</form>', html, re.S)
        assert forms and all(f'name="csrf" value="{alice.csrf}"' in f for f in forms)
    register, admins, explain = pages
    assert 'value="ops-bot"' in register and "bundle:3: agents[0].skills[0]: unknown" in register
    assert 'enctype="multipart/form-data"' in register
    assert 'value="carol"' in admins and '<option value="anchor" selected>' in admins and "already enrolled" in admins
    assert 'action="/admins/bob/revoke"' in admins
    assert ">ticket=CHG-1</textarea>" in explain and "<li>deny[0] matches</li>" in explain
    auditor = person("audrey", "auditor")
    for html in (page("register.html", auditor, path="/register", skills=[], policies=[], mode="form", form={},
                      bundle="", error="", problems=[]),
                 page("admins.html", auditor, path="/admins", admins=[], required=2, roles=(), enrol={},
                      enrol_error="", rule="", rule_error="")):
        assert "<button" not in html.split("</nav>")[1]


def test_the_search_page_links_exports_of_the_same_search() -> None:
    """The export links repeat the search's filters (never its page) and say the limit."""
    f = dict.fromkeys(("agent", "anchor", "action", "outcome", "kind", "since", "until", "trace_id", "chron_id"), "")
    html = page("search.html", person(), path="/search", f=f | {"agent": "deploy-bot"}, records=[], error="",
                older=None, newer=None, export_query="agent=deploy-bot", export_limit=100_000)
    assert 'href="/search/export?agent=deploy-bot&amp;format=csv"' in html
    assert 'href="/search/export?agent=deploy-bot&amp;format=jsonl"' in html and "100,000 records at most" in html


def test_context_lines_and_the_registration_form_make_what_the_api_takes() -> None:
    """KEY=VALUE lines become a context (a bad line is named); the form becomes a one-agent bundle."""
    assert context_lines("ticket=CHG-1\n\n env = prod \nnote=a=b") == {"ticket": "CHG-1", "env": "prod", "note": "a=b"}
    with pytest.raises(ValueError, match="context line 2"):
        context_lines("a=1\njust words")
    assert split_names("deploy-v2, review-v1\nops-v3") == ["deploy-v2", "review-v1", "ops-v3"]
    assert agent_bundle("demo", {"id": "x", "anchor": "k", "skills": "a-v1 b-v2", "policy": "p-v1"}) == {
        "org": "demo", "agents": [{"id": "x", "anchor": "k", "skills": ["a-v1", "b-v2"], "policy": "p-v1",
                                   "description": ""}]}


def test_a_pasted_bundle_takes_the_org_of_the_session_unless_it_names_one() -> None:
    """A bundle without org is the person's org's; YAML that is not a mapping or does not parse is refused."""
    assert bundle_of("demo", "agents: []") == {"org": "demo", "agents": []}
    assert bundle_of("demo", "org: acme\nagents: []")["org"] == "acme"
    with pytest.raises(ValueError, match="a mapping"):
        bundle_of("demo", "- a\n- b")
    with pytest.raises(ValueError, match=r"^line \d+: not valid YAML"):
        bundle_of("demo", "agents:\n  - id: [x\n")


def test_a_csv_export_has_every_column_and_defuses_formulas() -> None:
    """The CSV has a header and one row per record with every column but the event; text a spreadsheet would
    run as a formula starts with an apostrophe, numbers stay numbers."""
    text = csv_lines([record(1, target="=HYPERLINK(\"http://x\")"), record(2)], header=True)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(COLUMNS) and len(rows) == 3
    target, leaf = COLUMNS.index("target"), COLUMNS.index("leaf_index")
    assert rows[1][target] == "'=HYPERLINK(\"http://x\")" and rows[2][target] == "api-v2" and rows[1][leaf] == "1"
    assert [csv_cell(v) for v in ("-1", "@a", "+a", "a-b", 3, None)] == ["'-1", "'@a", "'+a", "a-b", "3", ""]


def test_a_jsonl_export_is_one_record_a_line_as_the_api_returns_it() -> None:
    """Each line decodes back to the record, the stored event included."""
    lines = jsonl_lines([record(1), record(2)]).splitlines()
    assert [msgspec.json.decode(line, type=ChronRecord).leaf_index for line in lines] == [1, 2]
    assert msgspec.json.decode(lines[0])["event"] == {"i": 1}


def test_the_live_page_has_pause_and_filter_and_says_its_cap() -> None:
    """The live page offers Pause and a filter, tells its script the cap, and each row's cells carry titles."""
    row = {"chron_id": "chr_01x", "decided_at": "2026-11-28T10:00:00+00:00", "outcome": "ALLOW",
           "agent_id": "deploy-bot", "action": "deploy:staging", "target": "api-v2", "anchor": "s.emp1",
           "policy": "no-prod-v1", "reason": "allowed"}
    html = page("live.html", person(), path="/live", rows=[row], cap=200)
    assert html.count('id="feed-pause"') == 1 and html.count('id="feed-filter"') == 1
    assert 'data-cap="200"' in html and "keeps the newest 200" in html
    assert 'title="deploy-bot"' in html and '<td class="mono" title="chr_01x"><a href="/decisions/chr_01x">' in html
