"""The Dagster UI in headless Chromium (Debian's package, driven by Playwright): the global asset graph
shows the pipeline's assets, and the leaky repo's failed blocking check shows as failed.

Screenshots land in the test's tmp dir (the server fixture's root) for a human to look at.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from codellm_assets_tests.e2e.conftest import DagsterDevServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--no-first-run", "--disable-sync"]
PIPELINE_ASSETS = ["repo_snapshots", "clean_files", "scrubbed_corpus", "deduped_corpus", "training_dataset",
                   "lora_adapter", "eval_scores", "registered_model", "deployed_endpoint", "packaged_model"]
PAGE_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's browser with `apt-get install -y chromium` "
                    "(.ci/run does); Playwright's own browser download does not work offline")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def open_ui(page, url: str) -> None:
    """Load a UI page and dismiss the "Join the Dagster community" modal a fresh instance shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(url, wait_until="networkidle", timeout=PAGE_TIMEOUT_MS)
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=5_000)
    except PlaywrightTimeout:  # no modal this time
        return
    skip.click()
    skip.wait_for(state="hidden")


def test_global_asset_graph_shows_the_pipeline(page, dagster_server: DagsterDevServer):
    open_ui(page, f"{dagster_server.url}/asset-groups")
    # A graph this size opens with its groups collapsed; expand them all as a user would (⌥E).
    page.get_by_text("training", exact=True).first.wait_for()
    page.keyboard.press("Alt+KeyE")
    page.get_by_text("deployed_endpoint", exact=True).first.wait_for()
    page.screenshot(path=str(dagster_server.root / "asset_graph.png"))
    text = page.inner_text("body")
    assert "Join the Dagster community" not in text
    assert [name for name in PIPELINE_ASSETS if name not in text] == []


def test_failed_check_shows_as_failed(page, dagster_server: DagsterDevServer):
    dagster_server.materialize_partition("leaky")
    open_ui(page, f"{dagster_server.url}/assets/scrubbed_corpus?view=checks")
    page.get_by_text("This is a blocking asset check").wait_for()
    page.get_by_text("Evaluation result", exact=True).first.wait_for()
    page.screenshot(path=str(dagster_server.root / "scrubbed_corpus_checks.png"))
    # The overview's status is whichever partition's evaluation came last (the sensor's runs race the
    # test's): the execution history is the per-partition truth.
    page.get_by_text("Execution history", exact=True).click()
    failed_leaky = page.locator("tr").filter(has_text="leaky").filter(has_text="Failed")
    failed_leaky.first.wait_for()
    page.screenshot(path=str(dagster_server.root / "no_leftover_secrets_history.png"))
    assert page.locator("tr").filter(has_text="clean").filter(has_text="Failed").count() == 0
    assert page.locator("tr").filter(has_text="clean").filter(has_text="Passed").count() >= 1
