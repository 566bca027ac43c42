"""The Dagster UI as a user sees it: `dagster dev` over a lake with one real day, driven by headless Chromium.

Needs Debian's chromium + chromium-driver (.ci/run installs them); skips only when they are absent.
Screenshots: ``$RECSYS_SCREENSHOT_DIR/ui_*.png`` (default: the test's tmp folder); paths are printed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from recsys_assets_tests.defs import tiny_world as tw

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
LOCATION = "recsys_assets.definitions:defs"

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(base: str, query: str) -> dict:
    req = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _wait_for_location(base: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    """Until the webserver answers and the code location is LOADED."""
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dagster dev exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            entries = _graphql(base, query)["data"]["workspaceOrError"]["locationEntries"]
            last = entries
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        except OSError as exc:
            last = exc
        time.sleep(1.0)
    raise AssertionError(f"dagster dev not ready after {timeout:.0f} s ({last}):\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM lets dagster dev stop its webserver, daemon and code servers; SIGKILL its group if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this test started (start_new_session=True)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=10)


def _materialize_one_day(lake_root: str) -> None:
    """Runs of the real jobs (catalog_job, events_job, day_job) into the DAGSTER_HOME instance."""
    from recsys_assets import runner

    models = {"config": {k: v for k, v in tw.tiny_models().model_dump().items()}}
    inst = runner.instance()
    runner.run_job("catalog_job", inst)
    tags = {"dagster/asset_partition_range_start": tw.DAYS[0].isoformat(),
            "dagster/asset_partition_range_end": tw.LAST_DAY.isoformat()}
    runner.run_job("events_job", inst, tags=tags)
    runner.run_job("day_job", inst, partition_key=tw.LAST_DAY.isoformat(), run_config_resources={"models": models})


@pytest.fixture
def ui_home(tmp_path, monkeypatch):
    home, lake = tmp_path / "dagster_home", tmp_path / "lake"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("RECSYS_LAKE", str(lake))
    tw.make_world(str(lake))
    _materialize_one_day(str(lake))
    return home, lake


def test_lineage_and_lift_report_in_the_ui(ui_home, tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(f"headless Chromium not installed ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    home, lake = ui_home
    shots = Path(os.environ.get("RECSYS_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "dagster_dev.log"
    env = {**os.environ, "DAGSTER_HOME": str(home), "RECSYS_LAKE": str(lake), "PYTHONUNBUFFERED": "1"}
    dagster = str(Path(sys.executable).with_name("dagster"))
    with log.open("wb") as log_fh:
        proc = subprocess.Popen([dagster, "dev", "-w", "workspace.yaml", "-p", str(port), "-h", "127.0.0.1"],
                                cwd=REPO, env=env, stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True)
    driver = None
    try:
        _wait_for_location(base, proc, log)
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1600,1000", f"--user-data-dir={tmp_path / 'chrome'}"):
            opts.add_argument(arg)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        wait = WebDriverWait(driver, 90, poll_frequency=0.5)

        def body() -> str:
            return driver.find_element(By.TAG_NAME, "body").text

        def dismiss_popups() -> None:
            for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
                if button.is_displayed():
                    button.click()

        def shot(name: str) -> Path:
            path = shots / f"ui_{name}.png"
            driver.save_screenshot(str(path))
            print(f"screenshot: {path}")
            return path

        # 1. Lineage of the lift report: every stage's assets, by name, in their groups.
        driver.get(f"{base}/assets/lift_rollup?view=lineage&lineageScope=upstream&lineageDepth=12")
        names = ("staged_events", "events", "items", "item_embeddings", "als_model", "content_to_cf", "candidates",
                 "rankers", "recommendations", "cold_start_eval", "cold_start_lift", "lift_rollup")
        wait.until(lambda d: all(n in body().split("\n") for n in names))
        dismiss_popups()
        text = body()
        for group in ("ingest", "features", "ranking", "reports"):
            assert group in text.split("\n")
        shot("lineage")

        # 2. The latest materialization of cold_start_lift: partition, metadata and the lift table.
        driver.get(f"{base}/assets/cold_start_lift?view=events")
        wait.until(lambda d: "lift (recall@20)" in body())
        dismiss_popups()
        text = body()
        assert f"Partition {tw.LAST_DAY.isoformat()} materialized" in text
        assert "ranker_tfidf-vs-no_text" in text and "primary_lift_rows" in text
        link = driver.find_elements(By.XPATH, "//a[normalize-space()='[Show Markdown]']")
        assert link, "the markdown lift table has no [Show Markdown] link"
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", link[-1])
        link[-1].click()
        wait.until(lambda d: "arm vs baseline" in body())
        table = body()
        assert "ranker_tfidf vs ranker_no_text" in table and "95% CI" in table
        shot("cold_start_lift")

        # 3. The rollup's partition page: the headline first (as in reports.headline), the HTML report's path.
        from recsys_assets.lib.evaluation.answer import headline_texts
        from recsys_assets.lib.evaluation.headline import read_headline

        headline = read_headline(lake / "warehouse.duckdb")
        driver.get(f"{base}/assets/lift_rollup?view=events")
        wait.until(lambda d: "pooled lift (recall@20)" in body())
        dismiss_popups()
        text = body()
        assert str(lake / "reports" / "index.html") in text
        lines = text.split("\n")
        assert "headline" in lines and lines.index("headline") < lines.index("pooled lift (recall@20)")
        if headline.height:
            for key, line in headline_texts(headline).items():
                assert key in lines and line in text, (key, line)
        else:
            assert "no reports.headline rows for this partition" in text
        shot("lift_rollup")
        # 4. The asset's overview page: what the asset answers, and its latest headline.
        driver.get(f"{base}/assets/lift_rollup")
        wait.until(lambda d: "Answers the question" in body())
        dismiss_popups()
        shot("lift_rollup_overview")
    finally:
        if driver is not None:
            driver.quit()
        _stop(proc)
