"""Pictures for the README: the `make dev` system with demo data, photographed by headless Chromium.

    .venv/bin/python scripts/screenshots.py     (needs Debian's chromium; the stack up)

Starts Dagster webserver + daemon and the webhook on a fresh Dagster database, seeds demo
studies (ingested by the triggers), runs a Study Date backfill through the daemon, and
saves docs/images/{lineage,runs,study-run,backfill}.png.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dicom_pipeline_dev.seed.runner import seed_studies  # noqa: E402
from dicom_pipeline_dev.seed.synth import SeedPlan  # noqa: E402

from dicom_pipeline.settings import get_settings  # noqa: E402
from tests.e2e.system import running_system  # noqa: E402
from tests.helpers import clear_change_log  # noqa: E402

IMAGES = REPO / "docs" / "images"
BACKFILL_DATES = ["2024-06-03", "2024-06-04", "2024-06-05"]

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""
STUDY_RUN = """
query { runsOrError(filter: {pipelineName: "ingest_study", statuses: [SUCCESS]}, limit: 1) {
  ... on Runs { results { runId } } } }
"""
BACKFILL_STATUS = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }
"""


def graphql(url: str, query: str, variables: dict[str, object]) -> dict[str, object]:
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=60)
    response.raise_for_status()
    data: dict[str, object] = response.json()["data"]
    return data


def screenshot(url: str, target: Path, wait_for_text: str) -> None:
    """Open the page in headless Chromium, dismiss Dagster's first-visit dialog, save a PNG."""
    from selenium import webdriver
    from selenium.common.exceptions import NoSuchElementException, TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        raise SystemExit("needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1440,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 60)
        try:
            wait.until(expected_conditions.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Skip']")))
            driver.find_element(By.XPATH, "//button[normalize-space()='Skip']").click()
        except (TimeoutException, NoSuchElementException):
            pass
        try:
            WebDriverWait(driver, 30).until(
                expected_conditions.presence_of_element_located((By.XPATH, f"//*[contains(., '{wait_for_text}')]"))
            )
        except TimeoutException:
            print(f"warning: {wait_for_text!r} not seen on {url}")
        time.sleep(3)  # let the graph layout settle
        driver.save_screenshot(str(target))
    finally:
        driver.quit()
    print(f"saved {target.relative_to(REPO)}")


def main() -> None:
    settings = get_settings()
    IMAGES.mkdir(parents=True, exist_ok=True)
    clear_change_log(settings)  # the pictures show this demo, not the archive
    with tempfile.TemporaryDirectory() as tmp, running_system(settings, Path(tmp), sensor=True) as system:
        system.start_dagster()
        system.start_webhook()
        dates = tuple(dt.date.fromisoformat(d) for d in BACKFILL_DATES)
        seed_studies(
            settings,
            SeedPlan(studies=6, instances_per_series=2, rows=64, columns=64, dates=dates, seed=int(time.time())),
        )
        time.sleep(30)  # the webhook and the sensor ingest them
        launched = graphql(
            system.dagster_url,
            LAUNCH_BACKFILL,
            {
                "params": {
                    "selector": {
                        "partitionSetName": "backfill_by_study_date_partition_set",
                        "repositorySelector": {
                            "repositoryLocationName": "dicom_pipeline",
                            "repositoryName": "__repository__",
                        },
                    },
                    "partitionNames": BACKFILL_DATES,
                }
            },
        )["launchPartitionBackfill"]
        assert isinstance(launched, dict) and "backfillId" in launched, launched
        backfill_id = str(launched["backfillId"])
        for _ in range(120):
            status = graphql(system.dagster_url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            if isinstance(status, dict) and str(status.get("status", "")).startswith(("COMPLETED", "FAILED")):
                break
            time.sleep(2)
        time.sleep(5)
        screenshot(f"{system.dagster_url}/asset-groups", IMAGES / "lineage.png", "dicom_metadata_v1")
        screenshot(f"{system.dagster_url}/runs?q%5B%5D=job%3Aingest_study", IMAGES / "runs.png", "ingest_study")
        runs = graphql(system.dagster_url, STUDY_RUN, {})["runsOrError"]
        assert isinstance(runs, dict) and runs["results"], runs
        run_id = runs["results"][0]["runId"]
        screenshot(f"{system.dagster_url}/runs/{run_id}", IMAGES / "study-run.png", "publish_events")
        screenshot(f"{system.dagster_url}/runs/b/{backfill_id}?tab=runs", IMAGES / "backfill.png", "Success")


if __name__ == "__main__":
    main()
