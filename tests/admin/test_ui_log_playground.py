"""The playground and the request log in headless Chromium on a live server, signed in as an
admin (a cookie session, so the streamed POST must carry the CSRF header): a reply streams
from a text model with who answered, time to first token and tokens per second; an image is
sent to a vision model; an unknown model is said in words; the log lists those requests,
filters by model and opens one request's detail. axe-core checks both pages; screenshots go to
test-output/ui/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from tests.fixtures.browser import (
    UI_ADMIN,
    UI_ADMIN_PASSWORD,
    check_accessibility,
    login,
    screenshot,
    text_of,
    wait_for,
    wait_text,
)
from tests.fixtures.server import ServerProcess, serving


@pytest.fixture(scope="module")
def log_server(
    tiny_model_dirs: dict[str, Path],
    tiny_smolvlm_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    """A text model (`tiny`) and a vision model (`vlm`), audit rows flushed every 50 ms, and
    an admin account (made while the server is still in the open loopback mode)."""
    root = tmp_path_factory.mktemp("ui_log")
    flags = ("--model", f"tiny={tiny_model_dirs['llama']}", "--model", f"vlm={tiny_smolvlm_dir}")
    with serving(
        *flags, "--kv-cache-gb", "0.05", "--audit-flush-ms", "50", log_dir=root
    ) as process:
        made = httpx.post(
            f"{process.base_url}/admin/users",
            json={"username": UI_ADMIN, "password": UI_ADMIN_PASSWORD, "role": "admin"},
        )
        assert made.status_code == 201, made.text
        yield process


@pytest.fixture(scope="module")
def signed_in(browser: Any, log_server: ServerProcess) -> Any:
    login(browser, log_server.base_url, UI_ADMIN, UI_ADMIN_PASSWORD, "/ui/playground")
    return browser


def _field(driver: Any, element_id: str, text: str) -> None:
    """Replace a field's text with key presses (Selenium's clear() fires no input event, so
    Alpine's x-model would keep the old value)."""
    field = driver.find_element(By.ID, element_id)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    if text:
        field.send_keys(text)


def _send(driver: Any, message: str) -> None:
    _field(driver, "pg-message", message)
    driver.find_element(By.ID, "pg-message").send_keys(Keys.CONTROL, Keys.ENTER)


def _answered(driver: Any) -> bool:
    return text_of(driver, "[data-testid=pg-finish]") not in ("–", "")


def test_a_reply_streams_with_who_answered_and_its_speed(
    signed_in: Any, log_server: ServerProcess
) -> None:
    driver = signed_in
    driver.get(f"{log_server.base_url}/ui/playground?model=tiny")
    wait_for(driver, lambda d: d.find_element(By.ID, "pg-model").get_attribute("value") == "tiny")
    _field(driver, "pg-max-tokens", "8")
    _send(driver, "Say hello.")
    wait_for(driver, _answered)
    assert text_of(driver, "[data-testid=pg-sent]") == "Say hello."
    assert text_of(driver, "[data-testid=pg-reply]")  # random weights: some text
    assert text_of(driver, "[data-testid=pg-backend]") == "local/tiny"
    assert text_of(driver, "[data-testid=pg-left]") == "false"
    assert text_of(driver, "[data-testid=pg-ttft]").endswith(" ms")
    assert text_of(driver, "[data-testid=pg-tokens]").endswith(" / 8")
    assert text_of(driver, "[data-testid=pg-finish]") == "length"
    assert float(text_of(driver, "[data-testid=pg-tps]").replace(",", "")) > 0
    assert not driver.find_element(By.CSS_SELECTOR, "[data-testid=pg-problem]").is_displayed()
    check_accessibility(driver, "playground")
    screenshot(driver, "playground")


def test_an_image_goes_to_a_vision_model(
    signed_in: Any, log_server: ServerProcess, tmp_path: Path
) -> None:
    picture = tmp_path / "red.png"
    Image.new("RGB", (48, 32), (200, 30, 30)).save(picture)
    driver = signed_in
    driver.get(f"{log_server.base_url}/ui/playground?model=vlm")
    wait_for(driver, lambda d: d.find_element(By.ID, "pg-model").get_attribute("value") == "vlm")
    _field(driver, "pg-max-tokens", "4")
    driver.find_element(By.ID, "pg-image").send_keys(str(picture))
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=pg-image-preview]"))
    _send(driver, "Describe.")
    wait_for(driver, _answered)
    assert driver.find_elements(By.CSS_SELECTOR, ".turn.user img.thumb")  # the image was sent
    assert text_of(driver, "[data-testid=pg-backend]") == "local/vlm"
    prompt = text_of(driver, "[data-testid=pg-tokens]").split(" / ")[0]
    assert int(prompt) > 30  # "Describe." with one image is a 43-token prompt (its tiles)
    screenshot(driver, "playground-image")


def test_an_unknown_model_is_said_in_words(signed_in: Any, log_server: ServerProcess) -> None:
    driver = signed_in
    driver.get(f"{log_server.base_url}/ui/playground?model=no-such-model")
    wait_for(driver, lambda d: d.find_element(By.ID, "pg-model").get_attribute("value"))
    _send(driver, "Hello?")
    problem = wait_text(driver, "[data-testid=pg-problem]", "no-such-model")
    assert "Traceback" not in problem
    assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid=pg-reply]")


def test_the_log_filters_by_model_and_shows_a_request(
    signed_in: Any, log_server: ServerProcess
) -> None:
    driver = signed_in
    driver.get(f"{log_server.base_url}/ui/requests")
    wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=log-row]")) >= 3)
    models = {e.text for e in driver.find_elements(By.CSS_SELECTOR, "[data-testid=log-model]")}
    assert {"tiny", "vlm", "no-such-model"} <= models
    check_accessibility(driver, "request log")
    screenshot(driver, "request-log")

    _field(driver, "filter-model", "vlm")
    driver.find_element(By.ID, "filter-model").send_keys(Keys.ENTER)
    wait_for(driver, lambda d: "model=vlm" in d.current_url)
    wait_text(driver, "[data-testid=log-count]", "1")
    rows = driver.find_elements(By.CSS_SELECTOR, "[data-testid=log-row]")
    assert [r.find_element(By.CSS_SELECTOR, "[data-testid=log-model]").text for r in rows] == [
        "vlm"
    ]

    rows[0].find_element(By.TAG_NAME, "button").click()
    detail = wait_text(driver, "[data-testid=log-detail]", "Request ")
    assert "Backend\nlocal" in detail and "openai.chat" in detail and "vlm / vlm" in detail
    check_accessibility(driver, "request log, one request")
    screenshot(driver, "request-log-detail")

    Select(driver.find_element(By.ID, "filter-status")).select_by_value("4xx")
    _field(driver, "filter-model", "")
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver, lambda d: "status=4xx" in d.current_url)
    wait_for(
        driver,
        lambda d: (
            {e.text for e in d.find_elements(By.CSS_SELECTOR, "[data-testid=log-model]")}
            == {"no-such-model"}
        ),
    )
