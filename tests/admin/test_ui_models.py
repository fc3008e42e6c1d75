"""The models page in headless Chromium on a live server (open loopback mode): every servable
model with its badges, load (pinned), unpin, pin, unload, and pool limits applied live (the
idle model unloaded at once); a bad limit is said in words. axe-core checks the page;
screenshots go to test-output/ui/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.fixtures.browser import check_accessibility, screenshot, wait_for, wait_text
from tests.fixtures.server import ServerProcess, serving


@pytest.fixture(scope="module")
def models_server(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("ui_models")
    with serving(
        "--model",
        f"alpha={tiny_model_dirs['llama']}",
        "--model",
        f"beta={tiny_model_dirs['qwen']}",
        "--kv-cache-gb",
        "0.05",
        log_dir=root,
    ) as process:
        yield process


def _row(driver: Any, model: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, f"[data-testid=model-row][data-model={model}]")


def _state(driver: Any, model: str) -> str:
    return str(_row(driver, model).find_element(By.CSS_SELECTOR, "[data-testid=model-state]").text)


def _click(driver: Any, label: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f"button[aria-label='{label}']").click()


def _status(server: ServerProcess) -> dict[str, Any]:
    reply = httpx.get(f"{server.base_url}/admin/models/status")
    assert reply.status_code == 200, reply.text
    return {m["id"]: m for m in reply.json()["models"]}


def _type(driver: Any, element_id: str, text: str) -> None:
    field = driver.find_element(By.ID, element_id)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    if text:
        field.send_keys(text)


def test_models_are_listed_with_badges_and_load_pin_unload(
    browser: Any, models_server: ServerProcess
) -> None:
    driver = browser
    driver.get(f"{models_server.base_url}/ui/models")
    wait_for(
        driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=model-row]")) == 2
    )
    alpha = _row(driver, "alpha").text
    assert "text" in alpha and "tools:" in alpha and "from model" in alpha
    wait_for(driver, lambda d: _state(d, "beta") == "loaded")  # start-up models load at once
    check_accessibility(driver, "models")
    screenshot(driver, "models")

    _click(driver, "Unload beta")
    wait_for(driver, lambda d: _state(d, "beta") == "not loaded")
    assert "beta" not in _status(models_server)
    _click(driver, "Load and pin beta")
    wait_for(driver, lambda d: _state(d, "beta").startswith("loaded, pinned"), timeout=60)
    assert _status(models_server)["beta"]["pinned"] is True
    _click(driver, "Unpin beta")
    wait_for(driver, lambda d: _state(d, "beta") == "loaded")
    assert _status(models_server)["beta"]["pinned"] is False
    _click(driver, "Pin beta")
    wait_for(driver, lambda d: _state(d, "beta").startswith("loaded, pinned"))
    assert _status(models_server)["beta"]["pinned"] is True


def test_limits_apply_live_and_a_bad_one_is_said_in_words(
    browser: Any, models_server: ServerProcess
) -> None:
    driver = browser
    unpinned = httpx.post(f"{models_server.base_url}/admin/models/unpin/beta")
    assert unpinned.status_code == 200, unpinned.text  # both resident, neither pinned
    driver.get(f"{models_server.base_url}/ui/models")
    wait_for(driver, lambda d: _state(d, "alpha") == "loaded" and _state(d, "beta") == "loaded")

    _type(driver, "limit-models", "1")
    driver.find_element(By.CSS_SELECTOR, "[data-testid=limits-form] button[type=submit]").click()
    notice = wait_text(driver, "#notices", "Limits applied")
    assert "unloaded" in notice
    assert len(_status(models_server)) == 1  # the least recently used one went at once
    wait_for(
        driver,
        lambda d: sorted([_state(d, "alpha"), _state(d, "beta")]) == ["loaded", "not loaded"],
    )
    screenshot(driver, "models-limits")

    _type(driver, "limit-models", "-3")
    driver.find_element(By.CSS_SELECTOR, "[data-testid=limits-form] button[type=submit]").click()
    error = wait_text(driver, "#notices .notice.error", "max_models")
    assert "Traceback" not in error

    driver.find_element(By.XPATH, "//button[contains(., 'Back to the start-up flags')]").click()
    wait_text(driver, "#notices", "Limits back to the start-up flags")
    reply = httpx.get(f"{models_server.base_url}/admin/pool/limits").json()
    assert reply["source"] == "flags" and reply["effective"]["max_models"] is None
