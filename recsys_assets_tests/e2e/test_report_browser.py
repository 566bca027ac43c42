"""The HTML report as a reader sees it: headless Chromium opens the page, the answer card and every chart render.

Needs Debian's chromium + chromium-driver (.ci/run installs them); skips only when they are absent.
Screenshots: ``$RECSYS_SCREENSHOT_DIR/report_*.png`` (default: the test's tmp folder); paths are printed.
``RECSYS_REPORT_HTML=<path>`` checks that report (e.g. a demo's ``<lake>/reports/index.html``) too.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from upath import UPath

from recsys_assets.lib.evaluation.html_report import write_html_report
from recsys_assets_tests.lib.evaluation.report_fixtures import daily_headline, headline_frame, report_frames

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.browser


@pytest.fixture
def driver(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(f"headless Chromium not installed ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path / 'chrome'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


def _shots(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("RECSYS_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def check_report_page(driver, page: Path, shots: Path, name: str) -> dict:
    """Open ``page``; assert the answer card comes first and every chart draws; save screenshots."""
    from selenium.webdriver.common.by import By

    driver.get(page.resolve().as_uri())
    card = driver.find_element(By.ID, "answer")
    assert card.is_displayed()
    first_section = driver.execute_script("return document.querySelector('h1').nextElementSibling.id")
    assert first_section == "answer", "the page must open on the answer card"
    card_text = card.text
    assert "Window:" in card_text
    # Open every collapsed section so that every chart is laid out, then measure each one.
    driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    charts = driver.execute_script(
        """return Array.from(document.querySelectorAll('figure.chart')).map(f => {
             const svg = f.querySelector('svg'); const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
             return {name: f.dataset.chart, width: r.width, height: r.height,
                     marks: svg ? svg.querySelectorAll('path, use, line, rect').length : 0,
                     texts: svg ? svg.querySelectorAll('text').length : 0};
           })"""
    )
    assert charts, "no chart on the page"
    for chart in charts:
        assert chart["width"] > 200 and chart["height"] > 100, chart
        assert chart["marks"] > 5 and chart["texts"] > 2, chart
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors
    driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = false); window.scrollTo(0, 0)")
    top = shots / f"report_{name}_top.png"
    driver.save_screenshot(str(top))
    height = min(int(driver.execute_script("return document.documentElement.scrollHeight")), 8000)
    driver.set_window_size(1400, height)
    full = shots / f"report_{name}_full.png"
    driver.save_screenshot(str(full))
    driver.set_window_size(1400, 1000)
    print(f"screenshot: {top}\nscreenshot: {full}")
    return {"card": card_text, "charts": charts}


def test_report_page_answer_card_and_charts_render(driver, tmp_path):
    rollup, daily, warm, cost = report_frames()
    page = tmp_path / "reports" / "index.html"
    write_html_report(UPath(page), rollup, daily, warm, cost, "Cold-start lift (fixture)", headline_frame(), daily_headline())
    seen = check_report_page(driver, page, _shots(tmp_path), "fixture")
    card = seen["card"]
    assert "ranker_minilm-l6 lifts recall@20 over ranker_no_text (+0.062, 95% CI [+0.010, +0.100])" in card
    for verdict in ("1 lift", "2 no detectable lift", "1 harm", "1 too few"):
        assert verdict in card
    names = [c["name"] for c in seen["charts"]]
    assert names.count("lift_over_days") == 2 and names.count("warmup") == 1 and names.count("cost") == 1 and "forest" in names


@pytest.mark.skipif(not os.environ.get("RECSYS_REPORT_HTML"), reason="set RECSYS_REPORT_HTML to check a demo's report")
def test_a_real_report_renders(driver, tmp_path):
    page = Path(os.environ["RECSYS_REPORT_HTML"])
    seen = check_report_page(driver, page, _shots(tmp_path), "demo")
    assert "primary endpoints" in seen["card"], seen["card"][:500]
