"""Downloads on the models page in headless Chromium: a model fetched from a loopback hub
(tests/fixtures/fake_hub.py, throttled so the progress is seen moving) reaches 100% through
the SSE feed and then shows in the catalog, served by its id; a repository the hub does not
know is said in words. axe-core checks the page; screenshots go to test-output/ui/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from tests.fixtures.browser import check_accessibility, screenshot, wait_for, wait_text
from tests.fixtures.fake_hub import FakeHub
from tests.fixtures.server import ServerProcess, serving
from tests.fixtures.tiny_models import build_test_tokenizer, build_tiny_model

REPO = "tiny-org/tiny-ui"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    root = tmp_path_factory.mktemp("ui-hub")
    model = build_tiny_model("llama", root / "tiny", build_test_tokenizer(root / "tokenizer"))
    fake = FakeHub({REPO: model}).start()
    fake.throttle_bytes_per_s = 200_000  # ~430 kB of weights: about two seconds of progress
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def hub_server(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("ui-downloads")
    (root / "models").mkdir()
    env = {
        "HF_ENDPOINT": hub.url,
        "HF_HUB_CACHE": str(root / "hf-cache"),
        "HF_HUB_OFFLINE": "0",
        "MLX_MANAGER_HUB_TIMEOUT_S": "5",
    }
    flags = ("--model-dir", str(root / "models"), "--kv-cache-gb", "0.05")
    with serving(*flags, env=env, log_dir=root) as process:
        yield process


def _start(driver: Any, repo: str) -> None:
    field = driver.find_element(By.ID, "download-repo")
    field.send_keys(repo)
    driver.find_element(By.CSS_SELECTOR, "[data-testid=download-form] button[type=submit]").click()


def _progress(driver: Any) -> float:
    bar = driver.find_element(
        By.CSS_SELECTOR, f"[data-testid=download-row][data-repo='{REPO}'] progress"
    )
    return float(bar.get_attribute("value") or 0)


def test_a_download_reaches_100_percent_and_is_served(
    browser: Any, hub_server: ServerProcess
) -> None:
    driver = browser
    driver.get(f"{hub_server.base_url}/ui/models")
    wait_for(driver, lambda d: d.find_element(By.ID, "download-repo").is_displayed())
    _start(driver, REPO)
    row = f"[data-testid=download-row][data-repo='{REPO}']"
    wait_text(driver, f"{row} [data-testid=download-state]", "downloading")
    seen = []

    def moving(d: Any) -> bool:
        seen.append(_progress(d))
        return 0 < seen[-1] < 100

    wait_for(driver, moving)  # caught mid-way: the bar moves with the SSE feed
    screenshot(driver, "models-download-running")
    wait_text(driver, f"{row} [data-testid=download-state]", "done", timeout=60)
    assert _progress(driver) == 100
    assert (
        "100% " in driver.find_element(By.CSS_SELECTOR, f"{row} [data-testid=download-bytes]").text
    )
    wait_text(driver, "#notices", "downloaded")
    wait_for(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, f"[data-testid=model-row][data-model='{REPO}']"),
    )
    check_accessibility(driver, "models, a download done")
    screenshot(driver, "models-download-done")


def test_an_unknown_repository_is_said_in_words(browser: Any, hub_server: ServerProcess) -> None:
    driver = browser
    driver.get(f"{hub_server.base_url}/ui/models")
    wait_for(driver, lambda d: d.find_element(By.ID, "download-repo").is_displayed())
    _start(driver, "tiny-org/no-such-model")
    problem = wait_text(driver, "[data-testid=download-problem]", "no-such-model")
    assert problem.startswith("Could not start the download:") and "Traceback" not in problem
