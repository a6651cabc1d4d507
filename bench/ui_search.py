"""Page load time of the admin UI's Chron search on a large log.

Run: ``.venv/bin/python bench/ui_search.py [--rows 1000000] [--repeat 20]``

It starts its own nats-server and PostgreSQL (pgserver) in a temporary directory, writes a log of
``--rows`` decisions of one org with ``ChronStore.append`` (10,000 per transaction: 50 agents, 10
anchors, mostly deploy:staging, 25% deploy:production, 0.1% infra:destroy, one decision every
100 ms), starts control, Chron and the admin UI on it, logs in as an org admin, and times:

  (1) HTTP: each search page (the whole round trip: browser -> UI -> NATS -> Chron -> PostgreSQL
      and back, rendered as HTML), ``--repeat`` times each, reported as p50/p95/max; first right
      after the load, before PostgreSQL has statistics of the new rows, then after ``ANALYZE``
      (which autovacuum runs by itself within about a minute of such a load);
  (2) paging: 20 "Older" pages in a row from the newest, following the page's own link;
  (3) browser: with Debian's chromium (when installed), the time from navigation start to the
      load event of the search page, as the browser reports it (Navigation Timing).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
import stack
from claiim import AsyncAdmin
from claiim_chron.rows import decision_row
from claiim_chron.store import ChronStore
from claiim_core.canonical import canonical_bytes
from claiim_core.checkpoint import Signer
from claiim_core.ids import chron_id, rfc3339
from claiim_core.names import Names
from claiim_core.schemas import DecisionEvent
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import start_services
from claiim_server.servers import ensure_database, free_port, start_nats, start_postgres
from playwright.async_api import async_playwright

START_MS = 1_764_000_000_000
STEP_MS = 100


def decision(i: int) -> DecisionEvent:
    kind = "destroy" if i % 1000 == 7 else "deny" if i % 4 == 0 else "allow"
    action = {"allow": "deploy:staging", "deny": "deploy:production", "destroy": "infra:destroy"}[kind]
    at = START_MS + i * STEP_MS
    return DecisionEvent(
        chron_id=chron_id(at, i.to_bytes(10, "big")), decided_at=rfc3339(at * 1000),
        outcome="ALLOW" if kind == "allow" else "DENY",
        reason="policy:no-prod-v1 -- " + ("action allowed" if kind == "allow" else "action explicitly denied"),
        rule="allow[0]: deploy:staging" if kind == "allow" else "deny[0]: deploy:production", org="demo",
        agent_id=f"bot-{i % 50}", anchor=f"owner-{i % 50 // 5}", action=action, target=f"svc-{i % 200}",
        context={}, request_id=None, policy="no-prod-v1", skill="deploy-v2", gate="bench", control_seq=9)


async def write_log(db_url: str, n: int) -> None:
    store = await ChronStore.open(db_url)
    try:
        started = time.perf_counter()
        for k in range(0, n, 10_000):
            rows = [decision_row("BENCH", i + 1, "bench.decision", canonical_bytes(decision(i)))
                    for i in range(k, min(n, k + 10_000))]
            await store.append(rows, [])
        took = time.perf_counter() - started
        print(f"  wrote {store.frontier.size:,} leaves in {took:.0f} s ({store.frontier.size / took:,.0f}/s)")
    finally:
        await store.close()


def iso(i: int) -> str:
    return rfc3339((START_MS + i * STEP_MS) * 1000)[:19]


def queries(n: int) -> dict[str, str]:
    middle = n // 2
    return {
        "newest page, no filter": "",
        "agent": "agent=bot-7",
        "anchor": "anchor=owner-3",
        "action, exact, rare (0.1%)": "action=infra:destroy",
        "action prefix deploy:*": "action=deploy:*",
        "outcome DENY": "outcome=DENY",
        "agent + outcome + action": "agent=bot-8&outcome=DENY&action=deploy:production",
        "one hour in the middle": f"since={iso(middle)}&until={iso(middle + 36_000)}",
        "agent, one hour long ago": f"agent=bot-9&since={iso(n // 10)}&until={iso(n // 10 + 36_000)}",
        "deep page (before the middle leaf)": f"before={middle}",
        "deep page, agent": f"agent=bot-3&before={n // 10}",
    }


def summary(times: list[float]) -> str:
    times = sorted(times)
    p95 = times[max(0, round(len(times) * 0.95) - 1)]
    return f"p50 {statistics.median(times) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   max {times[-1] * 1000:7.1f} ms"


async def timed_get(http: aiohttp.ClientSession, url: str) -> tuple[float, str]:
    started = time.perf_counter()
    async with http.get(url) as response:
        text = await response.text()
        assert response.status == 200, (url, response.status, text[:500])
    return time.perf_counter() - started, text


async def searches(http: aiohttp.ClientSession, ui_url: str, n: int, repeat: int) -> None:
    for label, q in queries(n).items():
        times, rows = [], 0
        for _ in range(repeat):
            took, text = await timed_get(http, f"{ui_url}/search?{q}")
            times.append(took)
            rows = text.count("<tr>") - 1
        print(f"      {label:38s} {summary(times)}   ({rows} rows)")


async def measure(ui_url: str, db_url: str, token: str, n: int, repeat: int) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(ui_url + "/login", data={"token": token, "org": "", "next": "/search"}) as r:
            assert r.status == 200, await r.text()
        print(f"  (1) HTTP round trip of /search, {repeat} times each, right after the load (no statistics yet):")
        await searches(http, ui_url, n, repeat)
        conn = await asyncpg.connect(db_url)
        await conn.execute("ANALYZE chron_events")
        await conn.close()
        print("  (1) the same after ANALYZE chron_events:")
        await searches(http, ui_url, n, repeat)
        times = []
        url = ui_url + "/search"
        for _ in range(20):
            took, text = await timed_get(http, url)
            times.append(took)
            older = re.search(r'id="older" href="([^"]+)"', text)
            assert older, "no Older link"
            url = ui_url + older.group(1).replace("&amp;", "&")
        print(f"  (2) 20 Older pages in a row: {summary(times)}")
        took, _ = await timed_get(http, f"{ui_url}/decisions/{decision(n // 3).chron_id}")
        print(f"      decision detail page of a record in the middle of the log: {took * 1000:.1f} ms")
    await browser_load(ui_url, token, n, repeat)


async def browser_load(ui_url: str, token: str, n: int, repeat: int) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("  (3) browser: skipped, no chromium (apt-get install -y chromium)")
        return
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, headless=True)
        page = await browser.new_page()
        await page.goto(ui_url + "/login")
        await page.fill("#token", token)
        await page.click("button[type=submit]")
        await page.wait_for_url(re.compile(r"/$"))
        print(f"  (3) chromium, navigation start to load event, {repeat} times each:")
        labels = ("newest page, no filter", "agent", "action, exact, rare (0.1%)", "deep page (before the middle leaf)")
        for label in labels:
            times = []
            for _ in range(repeat):
                await page.goto(f"{ui_url}/search?{queries(n)[label]}")
                ms = await page.evaluate("() => { const t = performance.getEntriesByType('navigation')[0];"
                                         " return t.loadEventEnd - t.startTime; }")
                times.append(ms / 1000)
            print(f"      {label:38s} {summary(times)}")
        await browser.close()


async def main(n: int, repeat: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as d:
        credentials = stack.credentials()
        nats = await asyncio.to_thread(start_nats, free_port(), Path(d) / "nats", credentials=credentials,
                                       names=Names("bench"))
        pg, server_url = await asyncio.to_thread(start_postgres, Path(d) / "pg")
        try:
            db_url = await ensure_database(server_url, "bench_ui")
            print(f"writing a Chron log of {n:,} decisions")
            await write_log(db_url, n)
            key = Signer.from_seed("claiim-bench", secrets.token_bytes(32))
            settings = Settings(**{**stack.settings(nats.url, db_url, credentials).model_dump(), "namespace": "bench",
                                   "checkpoint_key": str(key), "checkpoint_verifier": str(key.verifier), "ui_port": 0})
            running = await start_services(settings, ("control", "chron", "auth", "admin"), instance="bench")
            try:
                operator = AsyncAdmin(settings.url, settings.require_admin_token(), org="demo", namespace="bench")
                await operator.create_org("demo")
                token = await operator.enrol_admin("alice")
                await operator.close()
                assert running.admin is not None
                await measure(running.admin.url, db_url, token, n, repeat)
            finally:
                await running.stop()
        finally:
            await asyncio.to_thread(nats.stop)
            await asyncio.to_thread(pg.cleanup)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.repeat))
