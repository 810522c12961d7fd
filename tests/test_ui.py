"""The UI in a real browser: Debian's chromium, driven by Playwright (no browser download),
opens the global asset lineage of the tiny platform and filters it to what raw/orders feeds."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from platform_shared import lineage

REPO = Path(__file__).resolve().parents[1]
# Beside the test data of `make run`; docs/global_lineage.png is a copy shown in the README.
SCREENSHOT = REPO / "data" / "screenshots" / "global_lineage.png"
# Debian's chromium, headless, with nothing that reaches the network by itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Group of each location's assets in the graph.
GROUPS = {
    "raw": "ingestion",
    "staging": "analytics_dbt",
    "intermediate": "analytics_dbt",
    "marts": "analytics_dbt",
    "dashboards": "analytics_dbt",
    "ml": "ml_features",
}


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if not path:
        reason = "no chromium: apt-get install chromium (Debian's package; never a browser download)"
        if os.getenv("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return path


def test_the_global_lineage_shows_every_location_and_what_raw_orders_feeds(webserver, chromium):
    from playwright.sync_api import expect, sync_playwright

    graph = lineage.fetch_graph(webserver.url)
    materializable = {n.key for n in graph.nodes if not n.stub and n.role != "dashboard"}
    fed = {n.key for n in graph.downstream("raw/orders")} & materializable
    # The first-visit community dialog opens a moment after the page loads and then takes
    # every click; mark it seen through the webserver's own mutation, as its Skip button does.
    assert lineage.graphql(webserver.url, "mutation { setNuxSeen }")["setNuxSeen"] is True
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=CHROMIUM_ARGS,
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{webserver.url}/asset-groups", wait_until="networkidle")
        expect(page.get_by_text("Global asset lineage")).to_be_visible(timeout=60_000)
        for group in GROUPS:
            expect(page.get_by_text(group, exact=True).first).to_be_visible()
        expect(page.get_by_text(f"Materialize all ({len(materializable)})")).to_be_visible()

        page.locator(".CodeMirror").first.click()
        page.keyboard.type('key:"raw/orders"+')
        page.keyboard.press("Enter")
        # The UI's own count of what raw/orders feeds equals the one from the GraphQL graph.
        expect(page.get_by_text(f"Materialize all ({len(fed) + 1})")).to_be_visible(timeout=30_000)
        # The graph draws collapsed groups; its own shortcut (Alt+E) expands them all, so the
        # picture shows the assets of every location.
        page.keyboard.press("Escape")
        page.mouse.click(1000, 900)
        page.keyboard.press("Alt+KeyE")
        for asset in ("daily_revenue", "customer_features", "revenue_dashboard"):
            expect(page.get_by_text(asset, exact=True).first).to_be_visible(timeout=30_000)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
        browser.close()
    assert SCREENSHOT.stat().st_size > 10_000


COLUMN_SCREENSHOT = REPO / "data" / "screenshots" / "column_lineage.png"


def _closure(start: set, step: dict) -> set:
    seen, todo = set(start), list(start)
    while todo:
        for nxt in step.get(todo.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_column_lineage_page_traces_raw_customers_country_to_dashboards_and_ml(webserver, chromium, tmp_path):
    """`make lineage-page` on the session platform, opened in chromium at raw/customers'
    country: one card per asset that reads it (or that it reads), one edge per column read.
    Then at raw/orders' status, which chooses the rows of customer_cohorts (a filter): every
    column of that mart is hit, by dashed edges."""
    from playwright.sync_api import sync_playwright

    from tools import lineage_page

    columns = lineage.fetch_columns(webserver.url)
    reads = {(a, c): [tuple(d) for d in deps] for a, by in columns.lineage.items() for c, deps in by.items()}
    # A column that chooses an asset's rows is read by every column of it (dashed).
    by_rows = set()
    for asset, choosers in columns.rows.items():
        for chooser in choosers:
            for column in {*columns.schema.get(asset, []), *columns.lineage.get(asset, {})}:
                if tuple(chooser) not in reads.setdefault((asset, column), []):
                    reads[(asset, column)].append(tuple(chooser))
                    by_rows.add((tuple(chooser), (asset, column)))
    read_by: dict = {}
    for column, deps in reads.items():
        for dep in deps:
            read_by.setdefault(dep, []).append(column)

    def expected(asset: str, column: str) -> tuple[set, set]:
        shown = _closure({(asset, column)}, reads) | _closure({(asset, column)}, read_by)
        return shown, {(d, s) for s in shown for d in reads.get(s, []) if d in shown}

    def edge(d, s) -> str:
        return f"{d[0]}::{d[1]}>{s[0]}::{s[1]}"

    page_file = tmp_path / "lineage.html"
    page_file.write_text(lineage_page.page(webserver.url, "raw/customers#country"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1800, "height": 400})
        for n, (asset, column) in enumerate([("raw/customers", "country"), ("raw/orders", "status")]):
            shown, edges = expected(asset, column)
            page.goto(f"{page_file.as_uri()}#{asset}#{column}")
            page.wait_for_function(f"document.querySelector('.col.focus')?.dataset.id === '{asset}::{column}'")
            cards = page.locator(".card").evaluate_all("cards => cards.map(c => c.dataset.asset)")
            drawn = page.locator("path").evaluate_all("ps => ps.map(p => p.dataset.edge)")
            dashed = page.locator("path.rows").evaluate_all("ps => ps.map(p => p.dataset.edge)")
            focus = page.locator(".col.focus").all_text_contents()
            if n == 0:
                assert {"dashboard/customer_value_dashboard", "ml/customer_churn_scores"} <= {a for a, _ in shown}
                COLUMN_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(COLUMN_SCREENSHOT), full_page=True)
            else:
                assert "customer_cohorts" in {a for a, _ in shown}
                assert any(s[0] == "customer_cohorts" for _, s in edges & by_rows)
            assert sorted(cards) == sorted({a for a, _ in shown}), column
            assert sorted(drawn) == sorted(edge(d, s) for d, s in edges), column
            assert sorted(dashed) == sorted(edge(d, s) for d, s in edges & by_rows), column
            assert focus == [column]
        browser.close()
