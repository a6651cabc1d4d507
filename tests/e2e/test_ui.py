"""The admin web UI in a real browser (Debian's chromium driven by Playwright, headless) against a
real stack: gate, control, Chron and the UI on real NATS and PostgreSQL.

Screenshots of the main pages go to ``test-output/screenshots/``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from claiim import AsyncAdmin, AsyncGate, UnauthorizedError
from claiim.transport import NatsTransport
from claiim_core.checkpoint import Signer
from claiim_core.names import Names
from claiim_core.proofs import InclusionProof, check_inclusion
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import RunningServices, start_services
from claiim_server.servers import NatsCredentials, ensure_database
from claiim_server.stack import DEMO_ADMINS, demo_bundle
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.conftest import AUTH_ON, backend, connect_as, new_settings, secured_nats
from tests.integration.test_approvals import gated

pytestmark = pytest.mark.e2e
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


def chromium() -> str:
    """Debian's chromium (``scripts/test`` installs it); never a downloaded browser."""
    path = os.environ.get("CLAIIM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("chromium is not installed: run ./scripts/test (it installs Debian's chromium) "
                    "or set CLAIIM_CHROMIUM")
    return path


@dataclass
class UiStack:
    settings: Settings
    running: RunningServices
    url: str
    operator: AsyncAdmin
    tokens: dict[str, str]
    """Agent tokens."""
    admins: dict[str, str]
    """alice, bob (admins) and audrey (auditor) of the demo org to their tokens."""
    browser: Browser

    def gate(self, agent: str) -> AsyncGate:
        return AsyncGate(agent, self.tokens[agent], self.settings.url, namespace=self.settings.namespace)

    async def login(self, who: str) -> tuple[BrowserContext, Page]:
        context = await self.browser.new_context(accept_downloads=True, viewport={"width": 1440, "height": 900})
        page = await context.new_page()
        await page.goto(self.url + "/")
        await expect(page).to_have_url(re.compile(r"/login"))
        await page.fill("#token", self.admins[who])
        await page.click("button[type=submit]")
        await expect(page.locator("#who-name")).to_have_text(who)
        return context, page


@pytest.fixture(scope="module")
async def ui(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[UiStack]:
    namespace = f"t{secrets.token_hex(5)}"
    with secured_nats(tmp_path_factory.mktemp("nats"), Names(namespace)) as (url, credentials):
        async for stack in _ui(url, credentials, namespace, pg_url):
            yield stack


async def _ui(url: str, credentials: NatsCredentials | None, namespace: str, pg_url: str) -> AsyncIterator[UiStack]:
    key = Signer.from_seed("claiim-ui-test", secrets.token_bytes(32))
    base = new_settings(url, await ensure_database(pg_url, f"t_{secrets.token_hex(6)}"), namespace, credentials)
    settings = Settings(**{**base.model_dump(), "checkpoint_key": str(key), "checkpoint_verifier": str(key.verifier),
                           "checkpoint_interval": 1.0, "ui_port": 0})
    running = await start_services(settings, (*backend(settings), "admin"), instance="ui-test")
    assert running.admin is not None
    operator = AsyncAdmin(settings.url, settings.require_admin_token(), org="demo", namespace=settings.namespace)
    tokens = dict((await operator.apply(demo_bundle())).tokens)
    admins = {name: await operator.enrol_admin(name, role) for name, role in DEMO_ADMINS}
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium(), headless=True)
        try:
            yield UiStack(settings, running, running.admin.url, operator, tokens, admins, browser)
        finally:
            await browser.close()
            await operator.close()
            await running.stop()


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_login_is_required_and_a_wrong_token_is_refused(ui: UiStack) -> None:
    """Every page sends a stranger to the login form; a wrong token gets a refusal, not a session."""
    context = await ui.browser.new_context()
    page = await context.new_page()
    await page.goto(ui.url + "/agents")
    await expect(page).to_have_url(re.compile(r"/login\?next=/agents"))
    await shot(page, "login")
    await page.fill("#token", "cla_demo.not-a-real-token")
    await page.click("button[type=submit]")
    await expect(page.locator(".flash-error")).to_contain_text("login refused")
    assert (await context.request.get(ui.url + "/api/overview")).status == 401
    await context.close()


async def test_an_admin_logs_in_and_sees_the_overview_of_the_org(ui: UiStack) -> None:
    """Alice sees her org, her role, decision counts and a chart, Chron's lag and a checkpoint verification."""
    async with ui.gate("deploy-bot") as gate:
        for _ in range(3):
            await gate.check("deploy:staging", "api-v2")
        await gate.check("deploy:production", "api-v2")
    context, page = await ui.login("alice")
    await expect(page.locator(".side .org")).to_contain_text("demo")
    await expect(page.locator(".role")).to_have_text("admin")
    await expect(page.locator("#m-allow")).not_to_have_text("0")
    await expect(page.locator("#m-deny")).not_to_have_text("0")
    await expect(page.locator("#chart rect.allow").first).to_be_visible()
    await expect(page.locator("#m-verify")).to_have_text("OK", timeout=15_000)
    await expect(page.locator("#m-lag")).to_have_text(re.compile(r"^\d+$"))
    await shot(page, "overview")
    await context.close()


async def test_a_decision_appears_live_after_an_sdk_call(ui: UiStack) -> None:
    """The live page shows a new decision without a reload, the moment JetStream has it."""
    context, page = await ui.login("alice")
    await page.goto(ui.url + "/live")
    await expect(page.locator("#live-state")).to_have_class(re.compile(r"\bon\b"))
    async with ui.gate("review-bot") as gate:
        result = await gate.check("pr:comment", "repo-" + secrets.token_hex(3))
    row = page.locator(f'#feed tr[data-chron-id="{result.chron_id}"]')
    await expect(row).to_be_visible()
    await expect(row).to_contain_text("review-bot")
    await expect(row).to_contain_text(result.outcome)
    await shot(page, "live")
    await context.close()


async def test_search_filters_and_pages_through_chron(ui: UiStack) -> None:
    """Search by agent, action prefix and outcome finds exactly those records; Older/Newer pages neither
    skip nor repeat one; a chron id opens its record."""
    target = "svc-" + secrets.token_hex(3)
    async with ui.gate("deploy-bot") as gate:
        ids = [(await gate.check("deploy:staging", target)).chron_id for _ in range(55)]
        denied = (await gate.check("deploy:production", target)).chron_id
    for _ in range(100):
        if len(await ui.operator.chron_list(agent_id="deploy-bot", limit=1000)) >= 56:
            break
    context, page = await ui.login("alice")
    await page.goto(ui.url + "/search")
    await page.fill("input[name=agent]", "deploy-bot")
    await page.fill("input[name=action]", "deploy:prod*")
    await page.select_option("select[name=outcome]", "DENY")
    await page.click("#search button[type=submit]")
    rows = page.locator("#records tbody tr")
    await expect(rows.first).to_contain_text(denied)
    assert all("DENY" in t and "deploy:production" in t for t in await rows.all_inner_texts())
    await shot(page, "search")

    await page.goto(ui.url + "/search?agent=deploy-bot&action=deploy:staging")
    first = await page.locator("#records tbody tr td:last-child").all_inner_texts()
    assert len(first) == 50 and first[0] == ids[-1]
    await page.click("#older")
    second = await page.locator("#records tbody tr td:last-child").all_inner_texts()
    assert second and not set(first) & set(second)
    assert first[-1] == ids[-50] and second[0] == ids[-51]
    await page.click("#newer")
    assert await page.locator("#records tbody tr td:last-child").all_inner_texts() == first

    await page.goto(ui.url + "/search")
    await page.fill("input[name=chron_id]", denied)
    await page.click("#search button[type=submit]")
    await expect(page).to_have_url(re.compile(f"/decisions/{denied}$"))
    await context.close()


async def test_a_decision_answers_five_questions_and_its_proof_verifies(ui: UiStack, tmp_path: Path) -> None:
    """The detail page names agent, anchor, outcome, policy and skill versions and links the decision's trace;
    Verify checks the inclusion proof with the log's key, and the downloaded proof verifies offline too."""
    trace = secrets.token_hex(16)
    async with ui.gate("deploy-bot") as gate:
        result = await gate.check("deploy:production", "api-v2", traceparent=f"00-{trace}-00f067aa0ba902b7-01")
    context, page = await ui.login("bob")
    await page.goto(f"{ui.url}/decisions/{result.chron_id}")
    await expect(page.locator("#anchor")).to_have_text(result.anchor)
    await expect(page.locator(".questions")).to_contain_text("no-prod-v1")
    await expect(page.locator(".questions")).to_contain_text("deploy-v2")
    await expect(page.locator(".rule.deny").first).to_contain_text("deploy:production")
    for _ in range(3):  # the decision is in a signed checkpoint within a second or so
        await page.click("#verify")
        await expect(page.locator("#verify-result")).to_be_visible()
        if await page.locator("#verify-result").inner_text() == "proof verified":
            break
        await page.wait_for_timeout(1000)
    await expect(page.locator("#verify-result")).to_have_text("proof verified")
    await expect(page.locator("#verify-steps li.bad")).to_have_count(0)
    await shot(page, "decision")
    async with page.expect_download() as info:
        await page.click("#download-proof")
    saved = tmp_path / "proof.json"
    await (await info.value).save_as(saved)
    proven = check_inclusion(msgspec.json.decode(saved.read_bytes(), type=InclusionProof),
                             ui.settings.require_checkpoint_verifier())
    assert proven.event["chron_id"] == result.chron_id and proven.event["outcome"] == "DENY"
    await page.click("#trace")
    await expect(page).to_have_url(re.compile(f"/search\\?trace_id={trace}$"))
    await expect(page.locator("#records tbody tr")).to_have_count(1)
    await expect(page.locator("#records tbody tr")).to_contain_text(result.chron_id)
    await context.close()


async def test_a_policy_proposed_by_one_admin_is_applied_when_another_approves(ui: UiStack) -> None:
    """Alice proposes no-prod v2 in the UI; she cannot approve it herself; Bob approves it and v2
    exists, with its side-by-side diff against v1."""
    alice, page = await ui.login("alice")
    await page.goto(ui.url + "/policies/no-prod")
    text = await page.locator("#new-version textarea").input_value()
    await page.fill("#new-version textarea", text.replace("deny:\n", "deny:\n- infra:wipe\n"))
    await page.click("#new-version button")
    flash = page.locator(".flash-ok")
    await expect(flash).to_contain_text("proposal")
    proposal_id = re.search(r"proposal (\S+) created", await flash.inner_text())
    assert proposal_id, await flash.inner_text()
    pid = proposal_id.group(1)
    assert [v.label for v in await ui.operator.policy_versions("no-prod")] == ["no-prod-v1"]

    await page.goto(f"{ui.url}/proposals/{pid}")
    await expect(page.locator("#change")).to_contain_text("infra:wipe")
    await expect(page.locator(".proposal-diff tr.d-added, .proposal-diff tr.d-changed").first).to_contain_text(
        "infra:wipe")
    await page.click("#approve")
    await expect(page.locator(".flash-error")).to_contain_text("approve")
    await expect(page.locator("#proposal-status")).to_have_text("pending")
    await alice.close()

    bob, page = await ui.login("bob")
    await page.goto(ui.url + "/proposals")
    await expect(page.locator("#pending")).to_contain_text(pid)
    await shot(page, "proposals")
    await page.click(f"#pending a:text('{pid}')")
    await shot(page, "proposal")
    await page.fill("#approve-form input[name=reason]", "reviewed")
    await page.click("#approve")
    await expect(page.locator("#proposal-status")).to_have_text("applied")
    assert [v.label for v in await ui.operator.policy_versions("no-prod")] == ["no-prod-v1", "no-prod-v2"]
    await page.goto(ui.url + "/policies/no-prod?a=1&b=2")
    added = page.locator("#diff tr.d-added, #diff tr.d-changed")
    await expect(added.first).to_contain_text("infra:wipe")
    await shot(page, "policy-diff")
    await bob.close()


async def test_suspending_an_agent_denies_its_next_check(ui: UiStack) -> None:
    """Alice suspends review-bot from its page, at once; its next check is denied as suspended."""
    context, page = await ui.login("alice")
    await page.goto(ui.url + "/agents")
    await shot(page, "agents")
    await page.click("#agents a:text('review-bot')")
    await page.fill("#suspend-form input[name=reason]", "misbehaving")
    await page.click("#suspend")
    await expect(page.locator("#agent-status")).to_have_text("suspended")
    if AUTH_ON:  # its NATS access ended with the suspension
        with pytest.raises(UnauthorizedError):
            async with ui.gate("review-bot") as gate:
                await gate.check("pr:comment", "repo-x")
    carrier = NatsTransport(ui.settings.url, user="deploy-bot", token=ui.tokens["deploy-bot"])
    async with AsyncGate("review-bot", ui.tokens["review-bot"], ui.settings.url, namespace=ui.settings.namespace,
                         transport=carrier) as gate:
        result = await gate.check("pr:comment", "repo-x")
    assert result.outcome == "DENY" and "suspended" in result.reason
    await shot(page, "agent")
    await context.close()


async def test_an_auditor_sees_everything_and_changes_nothing(ui: UiStack) -> None:
    """Audrey reads agents, approvals and checkpoints but has no buttons, and a forged form post is
    refused by the admin API itself."""
    context, page = await ui.login("audrey")
    await expect(page.locator(".role")).to_have_text("auditor")
    await page.goto(ui.url + "/agents/deploy-bot")
    await expect(page.locator("#suspend")).to_have_count(0)
    csrf = await page.locator('meta[name="csrf"]').get_attribute("content")
    forged = await context.request.post(ui.url + "/agents/deploy-bot/suspend", max_redirects=0,
                                        form={"csrf": csrf or "", "reason": "x", "back": "/agents/deploy-bot"})
    assert forged.status == 303
    await page.goto(ui.url + "/agents/deploy-bot")
    await expect(page.locator(".flash-error")).to_contain_text("read-only")
    await expect(page.locator("#agent-status")).to_have_text("active")
    await page.goto(ui.url + "/checkpoints")
    await page.click("#verify-now")
    await expect(page.locator("#results tbody tr").first).to_contain_text("OK")
    await expect(page.locator("#checkpoints .pill-allow").first).to_have_text("valid")
    await shot(page, "checkpoints")
    await context.close()


async def test_a_form_post_without_the_session_csrf_token_is_refused(ui: UiStack) -> None:
    """A post carrying the session cookie but not its CSRF token changes nothing."""
    context, _ = await ui.login("alice")
    response = await context.request.post(ui.url + "/agents/deploy-bot/suspend", form={"reason": "csrf"})
    assert response.status == 403
    assert (await ui.operator.agent("deploy-bot")).status == "active"
    await context.close()


async def test_a_forged_decision_makes_the_overview_say_chron_is_not_ready(ui: UiStack) -> None:
    """A decision forged with the gate's NATS password is parked: the overview says Chron is not ready until the
    operator acknowledges it."""
    nc = await connect_as(ui.settings, "gate")
    try:
        await nc.jetstream().publish(ui.settings.names.decision_subject("demo", "deploy-bot", "allow"),
                                     b'{"forged": "by the UI test"}', headers={"Nats-Msg-Id": secrets.token_hex(8)})
    finally:
        await nc.close()
    context, page = await ui.login("alice")
    await expect(page.locator("#m-problems")).to_be_visible(timeout=15_000)
    await expect(page.locator("#m-problems-text")).to_contain_text("1 parked message(s) not acknowledged")
    await shot(page, "overview-not-ready")
    assert len(await ui.operator.chron_acknowledge_parked([], "UI test: forged on purpose")) == 1
    await expect(page.locator("#m-problems")).to_be_hidden(timeout=15_000)
    await context.close()


async def test_a_log_only_candidate_is_attached_from_the_agents_page_and_its_report_shows_what_would_change(
        ui: UiStack) -> None:
    """Alice attaches a stricter candidate to deploy-bot from its page (no proposal: it changes no outcome); a
    staging deploy is still allowed, and the report page shows that the candidate would have denied it."""
    await ui.operator.apply({"org": "demo", "policies": [{"name": "strict", "version": 1, "skill": "deploy-v2",
                                                          "allow": ["health:check"], "deny": ["deploy:*"]}]})
    context, page = await ui.login("alice")
    await page.goto(ui.url + "/agents/deploy-bot")
    await page.fill("#shadow-form input[name=policy]", "strict-v1")
    await page.click("#set-shadow")
    await expect(page.locator("#shadow")).to_have_text("strict-v1")
    async with ui.gate("deploy-bot") as gate:
        allowed = await gate.check("deploy:staging", "shadowed")
    assert allowed.outcome == "ALLOW"
    for _ in range(50):  # the decision reaches Chron a moment after the reply
        if [r.chron_id for r in await ui.operator.chron_list(agent_id="deploy-bot", limit=1)] == [allowed.chron_id]:
            break
        await page.wait_for_timeout(100)
    await page.click("#shadow-report")
    await expect(page.locator("#shadow-summary")).to_contain_text("1 would change (ALLOW -> DENY: 1)")
    await expect(page.locator("#shadow-changed tbody tr").first).to_contain_text(allowed.chron_id)
    await shot(page, "shadow-report")
    await ui.operator.set_shadow("deploy-bot", "")
    await context.close()


@pytest.fixture
async def gated_deploys(ui: UiStack) -> AsyncIterator[None]:
    """deploy-bot's production deploys wait for its anchor s.emp1, enrolled, until the test ends; then
    deploy-bot is the demo's again."""
    await ui.operator.apply(gated())
    ui.admins["s.emp1"] = await ui.operator.enrol_admin("s.emp1", "anchor")
    yield
    demo = next(a for a in demo_bundle()["agents"] if a["id"] == "deploy-bot")
    await ui.operator.apply({"org": "demo", "agents": [demo]})


@pytest.mark.usefixtures("gated_deploys")
async def test_an_anchor_grants_an_approval_in_the_ui_and_the_waiting_agent_gets_allow(ui: UiStack) -> None:
    """Alice, an admin, sees the approval but cannot grant it; s.emp1 signs in with its anchor token to its
    approvals only and grants it, bound to the request it reviewed; the agent's wait gets ALLOW, and the
    approval's page says who granted it and links the PENDING decision and the ALLOW that ended it."""
    async with ui.gate("deploy-bot") as gate:
        pending = await gate.check("deploy:production", "api-v2", {"ticket": "CHG-7"})
        assert pending.outcome == "PENDING"
        reviewed = await ui.operator.approval(pending.approval_id)
        alice, page = await ui.login("alice")
        await page.goto(f"{ui.url}/approvals/{pending.approval_id}")
        await page.fill("#grant-form input[name=reason]", "I approve")
        await page.click("#grant")
        await expect(page.locator(".flash-error")).to_contain_text("only deploy-bot's anchor s.emp1")
        await expect(page.locator("#approval-status")).to_have_text("pending")
        await alice.close()

        context, page = await ui.login("s.emp1")
        await expect(page).to_have_url(re.compile(r"/approvals$"))
        await expect(page.locator(".role")).to_have_text("anchor")
        await expect(page.locator(".side a")).to_have_text([re.compile(r"^Approvals"), "Chron search", "Checkpoints"])
        await expect(page.locator("#nav-approvals-count")).to_have_text("1")
        assert (await context.request.get(ui.url + "/live")).status == 403
        row = page.locator("#approvals tbody tr", has_text=pending.approval_id)
        await expect(row).to_contain_text("deploy:production")
        await expect(row.locator(".pill")).to_have_text("pending")
        await shot(page, "approvals")
        await row.locator(f"a:text('{pending.approval_id}')").click()
        await expect(page.locator("#request-hash")).to_have_text(reviewed.request_hash)
        await expect(page.locator(".facts")).to_contain_text("ticket=CHG-7")
        await shot(page, "approval")
        await page.fill("#grant-form input[name=reason]", "change CHG-7 reviewed")
        await page.click("#grant")
        await expect(page.locator(".flash-ok")).to_contain_text(f"granted approval {pending.approval_id}")
        await expect(page.locator("#approval-status")).to_have_text("granted")
        await expect(page.locator("#decided")).to_contain_text("granted by s.emp1")
        allowed = await gate.wait(pending.approval_id, 10)
    assert (allowed.outcome, allowed.approval_id) == ("ALLOW", pending.approval_id)
    for _ in range(50):  # control learns of the ALLOW from the decision stream a moment after the reply
        await page.reload()
        if await page.locator("#final").count():
            break
        await page.wait_for_timeout(100)
    await expect(page.locator("#final")).to_have_text(allowed.chron_id)
    await shot(page, "approval-granted")
    await page.click("#pending-decision")
    await expect(page).to_have_url(re.compile(f"/decisions/{pending.approval_id}$"))
    await expect(page.locator("#approval")).to_have_attribute("href", f"/approvals/{pending.approval_id}")
    await context.close()


CUT_CELLS = """() => Array.from(document.querySelectorAll("table.grid td"))
  .filter((td) => !td.hidden && td.offsetParent !== null && td.scrollWidth > td.clientWidth + 1)
  .map((td) => ({title: td.title, text: td.textContent.trim()}))"""
"""The table cells the browser cut short (their content is wider than the cell), with title and text."""
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"
"""How far the page is wider than the window: above 0 the whole page scrolls sideways."""


async def test_the_main_pages_fit_wide_and_narrow_screens_and_cut_cells_carry_their_value(ui: UiStack) -> None:
    """At 1280 and 1440 px every main page fits the window, its tables cut long values to one line and every cut
    cell holds the whole value in its title; at 420 px no page scrolls sideways (tables scroll in their box)."""
    async with ui.gate("deploy-bot") as gate:
        denied = await gate.check("deploy:production", "api-" + "very-long-target-name-" * 3)
    context, page = await ui.login("alice")
    pages = [("overview", "/"), ("live", "/live"), ("search", "/search?agent=deploy-bot"), ("agents", "/agents"),
             ("agent", "/agents/deploy-bot"), ("policies", "/policies"), ("policy", "/policies/no-prod"),
             ("proposals", "/proposals"), ("approvals", "/approvals?closed=1"), ("explain", "/explain"),
             ("admins", "/admins"), ("register", "/register"), ("checkpoints", "/checkpoints"),
             ("decision", f"/decisions/{denied.chron_id}")]
    cut_on: dict[str, int] = {}
    for width in (1440, 1280, 420):
        await page.set_viewport_size({"width": width, "height": 900})
        for name, path in pages:
            await page.goto(ui.url + path)
            await expect(page.locator("main h1")).to_be_visible()
            assert await page.evaluate(OVERFLOW) <= 0, f"{path} at {width} px scrolls sideways"
            if width == 420:
                await shot(page, f"narrow-{name}")
                continue
            cut = await page.evaluate(CUT_CELLS)
            assert all(c["title"] == c["text"] for c in cut), f"{path} at {width} px: {cut}"
            cut_on[name] = max(cut_on.get(name, 0), len(cut))
            if width == 1440:
                await shot(page, f"wide-{name}")
    assert cut_on["search"] > 0 and cut_on["live"] > 0, cut_on  # the chron ids at least are cut: the check ran
    await page.set_viewport_size({"width": 420, "height": 900})
    await page.goto(ui.url + "/search?agent=deploy-bot")
    records = page.locator("#records").locator("xpath=..")
    assert await records.evaluate("(box) => box.scrollWidth > box.clientWidth")  # the table scrolls in its box
    await context.close()


async def test_unknown_pages_and_records_get_a_page_of_the_site_and_the_icon_is_served(ui: UiStack) -> None:
    """An unknown URL and an unknown chron id answer 404 with the site's layout; the icon is linked and served."""
    context, page = await ui.login("alice")
    for path, text in (("/no-such-page", "there is no page /no-such-page"),
                       ("/decisions/chr_00000000000000000000000000", "no record chr_00000000000000000000000000"),
                       ("/agents/no-such-agent", "no-such-agent")):
        response = await page.goto(ui.url + path)
        assert response is not None and response.status == 404, path
        await expect(page.locator("#error-heading")).to_contain_text("Not found")
        await expect(page.locator("#error-message")).to_contain_text(text)
        await expect(page.locator("nav.side")).to_be_visible()
    await shot(page, "not-found")
    assert await page.locator('link[rel="icon"]').get_attribute("href") == "/static/favicon.svg"
    for path in ("/favicon.ico", "/static/favicon.svg"):
        icon = await context.request.get(ui.url + path)
        assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
        assert (await icon.text()).startswith("<svg")
    await context.close()


async def test_a_refused_proposal_keeps_what_the_admin_typed(ui: UiStack) -> None:
    """A policy the API refuses (its skill does not exist) and one that does not parse come back in the form as
    typed, with the reason; nothing is proposed."""
    before = await ui.operator.proposals("pending")
    context, page = await ui.login("alice")
    await page.goto(ui.url + "/policies")
    typed = "skill: no-such-skill-v9\nallow:\n  - deploy:staging\ndeny: []"
    await page.fill("#new-policy input[name=name]", "kept-typed")
    await page.fill("#new-policy textarea", typed)
    await page.click("#new-policy button")
    await expect(page.locator("#new-policy-error")).to_contain_text("no-such-skill-v9")
    await expect(page.locator("#new-policy input[name=name]")).to_have_value("kept-typed")
    assert (await page.locator("#new-policy textarea").input_value()).strip() == typed
    await shot(page, "policy-refused")
    await page.goto(ui.url + "/policies/no-prod")
    await page.fill("#new-version textarea", "skill: [unclosed")
    await page.click("#new-version button")
    await expect(page.locator("#new-version-error")).to_contain_text("problems")
    await expect(page.locator("#new-version textarea")).to_have_value("skill: [unclosed")
    assert len(await ui.operator.proposals("pending")) == len(before)
    await context.close()


async def test_the_live_feed_pauses_and_filters(ui: UiStack) -> None:
    """Paused, the feed holds new decisions and says how many; resumed, they appear; the filter shows only the
    rows whose agent, outcome, action or target contain every word typed, new rows included."""
    context, page = await ui.login("alice")
    await page.goto(ui.url + "/live")
    await expect(page.locator("#live-state")).to_have_class(re.compile(r"\bon\b"))
    await page.click("#feed-pause")
    await expect(page.locator("#feed-pause")).to_have_text("Resume")
    async with ui.gate("deploy-bot") as deploy:  # review-bot is suspended by an earlier test
        held = await deploy.check("deploy:staging", "repo-" + secrets.token_hex(3))
        await expect(page.locator("#feed-held")).to_have_text("1 new while paused")
        assert await page.locator(f'#feed tr[data-chron-id="{held.chron_id}"]').count() == 0
        await page.click("#feed-pause")
        await expect(page.locator(f'#feed tr[data-chron-id="{held.chron_id}"]')).to_be_visible()
        await page.fill("#feed-filter", "deploy-bot deny")
        later = await deploy.check("deploy:production", "filtered")
        other = await deploy.check("deploy:staging", "filtered")
    await expect(page.locator(f'#feed tr[data-chron-id="{later.chron_id}"]')).to_be_visible()
    await expect(page.locator(f'#feed tr[data-chron-id="{other.chron_id}"]')).to_be_hidden()
    await expect(page.locator(f'#feed tr[data-chron-id="{held.chron_id}"]')).to_be_hidden()
    await expect(page.locator("#feed-shown")).to_contain_text(" shown")
    assert await page.locator("#feed").get_attribute("data-cap") == "200"
    await shot(page, "live-filtered")
    await context.close()


async def test_a_search_is_exported_as_json_lines_and_csv(ui: UiStack, tmp_path: Path) -> None:
    """The export links download every record the search finds, across pages, in both formats."""
    target = "export-" + secrets.token_hex(3)
    async with ui.gate("deploy-bot") as gate:
        ids = [(await gate.check("deploy:staging", target)).chron_id for _ in range(60)]
    for _ in range(100):  # the last decision reaches Chron a moment after the reply
        if [r.chron_id for r in await ui.operator.chron_list(agent_id="deploy-bot", limit=1)] == ids[-1:]:
            break
        await asyncio.sleep(0.1)
    expected = [r.chron_id for r in await ui.operator.chron_list(agent_id="deploy-bot", action="deploy:staging",
                                                                 limit=1000)]
    assert set(ids) <= set(expected) and len(expected) > 50  # more than one page of the search
    context, page = await ui.login("alice")
    await page.goto(ui.url + "/search?agent=deploy-bot&action=deploy:staging")
    await expect(page.locator("#export")).to_contain_text("100,000 records at most")
    async with page.expect_download() as info:
        await page.click("#export-jsonl")
    saved = tmp_path / "export.jsonl"
    await (await info.value).save_as(saved)
    lines = saved.read_bytes().splitlines()
    assert [msgspec.json.decode(line)["chron_id"] for line in lines] == expected
    async with page.expect_download() as info:
        await page.click("#export-csv")
    saved = tmp_path / "export.csv"
    await (await info.value).save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert [r["chron_id"] for r in rows] == expected and {r["agent_id"] for r in rows} == {"deploy-bot"}
    await context.close()


async def test_agents_admins_and_the_approval_rule_are_proposed_in_the_ui_and_explain_records_nothing(
        ui: UiStack) -> None:
    """Alice registers an agent with the form: it becomes a proposal, its token is shown once, the navigation
    counts the proposal, and the agent works once Bob approves. A bundle with a problem comes back as typed.
    She enrols an auditor and sets the approval rule (proposals too) and revokes an admin (at once). Explain
    shows the steps and records nothing; a bad context line comes back with what was typed."""
    agent = "ui-bot-" + secrets.token_hex(3)
    context, page = await ui.login("alice")
    await page.goto(ui.url + "/agents")
    await page.click("#register-link")
    await page.fill("#register-form input[name=id]", agent)
    await page.fill("#register-form input[name=anchor]", "j.smith")
    await page.fill("#register-form input[name=skills]", "review-v1")
    await page.fill("#register-form input[name=policy]", "review-v2")
    await page.click("#register")
    await expect(page).to_have_url(re.compile(r"/proposals/\S+$"))
    pid = page.url.rsplit("/", 1)[1]
    secret = await page.locator(".flash-secret").inner_text()
    assert f"token for {agent} (shown once" in secret and "valid once the proposal is applied" in secret
    token = secret.rsplit(": ", 1)[1].strip()
    await expect(page.locator("#nav-proposals-count")).to_be_visible()
    await shot(page, "registered-proposal")
    await page.reload()
    await expect(page.locator(".flash-secret")).to_have_count(0)  # shown once

    await page.goto(ui.url + "/register")
    broken = f"agents:\n  - id: {agent}-2\n    anchor: j.smith\n    skills: [review-v1]\n    policy: no-such-v1\n"
    await page.fill("#bundle-form textarea", broken)
    await page.click("#apply-bundle")
    await expect(page.locator("#register-error")).to_contain_text("no-such-v1")
    await expect(page.locator("#bundle-form textarea")).to_have_value(broken)
    await shot(page, "register-refused")
    await page.set_input_files("#bundle-form input[type=file]", files=[{
        "name": "bundle.yaml", "mimeType": "text/yaml",
        "buffer": broken.replace("no-such-v1", "review-v2").encode()}])
    await page.click("#apply-bundle")
    await expect(page.locator(".flash-secret")).to_contain_text(f"token for {agent}-2")

    ui.admins["dave"] = await ui.operator.enrol_admin("dave", "auditor")
    await page.goto(ui.url + "/admins")
    await expect(page.locator("#admins")).to_contain_text("dave")
    await page.fill("#enrol-form input[name=name]", "carol")
    await page.select_option("#enrol-form select[name=role]", "auditor")
    await page.click("#enrol")
    await expect(page.locator(".flash-ok")).to_contain_text("proposal")
    await expect(page.locator(".flash-secret")).to_contain_text("token for carol")
    await page.goto(ui.url + "/admins")
    await page.fill("#approvals-rule input[name=approvals]", "1")
    await page.click("#set-approvals")
    await expect(page.locator(".flash-ok")).to_contain_text("proposal")
    await page.goto(ui.url + "/admins")
    row = page.locator("#admins tbody tr", has_text="dave")
    await row.locator("input[name=reason]").fill("left the team")
    await row.locator("button").click()
    await expect(page.locator(".flash-ok")).to_contain_text("dave")
    await expect(page.locator("#admins")).not_to_contain_text("dave")
    await shot(page, "admins")

    await page.goto(ui.url + "/explain")
    await page.fill("#explain-form input[name=agent]", "deploy-bot")
    await page.fill("#explain-form input[name=action]", "deploy:production")
    await page.fill("#explain-form input[name=target]", "api-v2")
    await page.fill("#explain-form textarea", "ticket=CHG-1\nnot a pair")
    await page.click("#explain")
    await expect(page.locator("#explain-error")).to_contain_text("context line 2")
    await expect(page.locator("#explain-form input[name=action]")).to_have_value("deploy:production")
    before = [r.chron_id for r in await ui.operator.chron_list(limit=1)]
    await page.fill("#explain-form textarea", "ticket=CHG-1")
    await page.click("#explain")
    await expect(page.locator("#explain-result .pill")).to_have_text("DENY")
    await expect(page.locator("#explain-steps li").first).to_be_visible()
    await shot(page, "explain")
    assert [r.chron_id for r in await ui.operator.chron_list(limit=1)] == before
    await context.close()

    bob, page = await ui.login("bob")
    await page.goto(f"{ui.url}/proposals/{pid}")
    await page.fill("#approve-form input[name=reason]", "reviewed")
    await page.click("#approve")
    await expect(page.locator("#proposal-status")).to_have_text("applied")
    await bob.close()
    async with AsyncGate(agent, token, ui.settings.url, namespace=ui.settings.namespace) as gate:
        assert (await gate.check("pr:comment", "repo-ui")).outcome == "ALLOW"
