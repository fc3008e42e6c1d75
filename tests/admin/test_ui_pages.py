"""The web UI's pages in headless Chromium on a live server with a real (tiny) model: the
dashboard shows the engine, the pool and a failed request; an admin approves a sign-up,
creates a key (shown once) that the OpenAI SDK then uses, and revokes it; a rule made in
the UI routes an SDK request (the backend header, the explain box), and disabling it stops
that; a provider's key is write-only; an API refusal is shown in words. axe-core checks every
page; screenshots go to test-output/ui/. The tests run in order on one server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions

from tests.fixtures.browser import (
    UI_ADMIN,
    UI_ADMIN_PASSWORD,
    check_accessibility,
    login,
    screenshot,
    wait_for,
    wait_text,
)
from tests.fixtures.server import ServerProcess

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
UPSTREAM_KEY = "sk-upstream-secret-9f3a1234"


@pytest.fixture(scope="module")
def admin_api(ui_server: ServerProcess) -> Iterator[httpx.Client]:
    """The admin (made while the server is still open), signed in over HTTP for checks."""
    made = httpx.post(
        f"{ui_server.base_url}/admin/users",
        json={"username": UI_ADMIN, "password": UI_ADMIN_PASSWORD, "role": "admin"},
    )
    assert made.status_code == 201, made.text
    with httpx.Client(base_url=ui_server.base_url, timeout=60) as client:
        signed = client.post(
            "/auth/login", json={"username": UI_ADMIN, "password": UI_ADMIN_PASSWORD}
        )
        assert signed.status_code == 200, signed.text
        client.headers["x-csrf-token"] = client.cookies["mlxm_csrf"]
        yield client


@pytest.fixture(scope="module")
def sdk(ui_server: ServerProcess, admin_api: httpx.Client) -> openai.OpenAI:
    key = admin_api.post("/admin/keys", json={"name": "sdk"}).json()["key"]
    return openai.OpenAI(base_url=f"{ui_server.base_url}/v1", api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def page(browser: Any, ui_server: ServerProcess, admin_api: httpx.Client) -> Any:
    login(browser, ui_server.base_url, UI_ADMIN, UI_ADMIN_PASSWORD)
    return browser


def _click(driver: Any, label: str) -> None:
    """Click the button named `label` (its aria-label), as a screen reader would name it."""
    button = wait_for(
        driver,
        expected_conditions.element_to_be_clickable(
            (By.CSS_SELECTOR, f'button[aria-label="{label}"]')
        ),
    )
    button.click()


def _confirm(driver: Any) -> None:
    wait_for(driver, expected_conditions.alert_is_present()).accept()


def _fill(driver: Any, element_id: str, text: str) -> None:
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)


def _submit(driver: Any, form_heading: str) -> None:
    form = driver.find_element(By.CSS_SELECTOR, f'form[aria-labelledby="{form_heading}"]')
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def _notice(driver: Any, expected: str) -> str:
    return wait_text(driver, "#notices", expected)


def test_the_dashboard_shows_the_engine_pool_and_errors(
    page: Any, ui_server: ServerProcess, sdk: openai.OpenAI
) -> None:
    sdk.chat.completions.create(model="tiny", **CHAT)
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="no-such-model", **CHAT)
    page.get(f"{ui_server.base_url}/ui")
    wait_text(page, "[data-testid=engine-state]", "ready")
    wait_text(page, "[data-testid=models-table]", "tiny")
    errors = wait_text(page, "[data-testid=errors-table]", "no-such-model")
    assert "404" in errors
    assert "%" in page.find_element(By.CSS_SELECTOR, "[data-testid=kv-use]").text
    check_accessibility(page, "dashboard")
    screenshot(page, "dashboard")


def test_users_and_keys(page: Any, ui_server: ServerProcess, admin_api: httpx.Client) -> None:
    signup = httpx.post(
        f"{ui_server.base_url}/auth/register",
        json={"username": "dana", "password": "danas-password-1"},
    )
    assert signup.status_code == 201 and signup.json()["pending_approval"] is True
    page.get(f"{ui_server.base_url}/ui/users")
    wait_text(page, "[data-testid=pending-table]", "dana")
    check_accessibility(page, "users & keys, a sign-up waiting")
    _click(page, "Approve dana")
    _notice(page, "dana approved")
    wait_text(page, "[data-testid=pending-table]", "No sign-up is waiting")
    dana = next(u for u in admin_api.get("/admin/users").json()["data"] if u["username"] == "dana")
    assert dana["role"] == "user" and not dana["disabled"]

    # A key for dana, scoped to the tiny model: shown once, then usable by the SDK.
    _fill(page, "key-name", "dana-ci")
    page.find_element(By.CSS_SELECTOR, f"#key-user option[value='{dana['id']}']").click()
    _fill(page, "key-models", "tiny")
    _fill(page, "key-rpm", "100")
    _submit(page, "new-key-heading")
    key = wait_text(page, "[data-testid=issued-key]", "mlxm_")
    row = wait_text(page, "tr[data-key=dana-ci]", "dana-ci")
    assert "tiny" in row and "100" in row and key not in row
    dana_sdk = openai.OpenAI(base_url=f"{ui_server.base_url}/v1", api_key=key, max_retries=0)
    assert dana_sdk.chat.completions.create(model="tiny", **CHAT).choices
    with pytest.raises(openai.PermissionDeniedError):
        dana_sdk.chat.completions.create(model="other", **CHAT)
    screenshot(page, "users-and-keys")
    check_accessibility(page, "users & keys, a key issued")
    page.find_element(By.XPATH, "//button[text()='I have copied it']").click()
    wait_for(  # Alpine hides it on its next tick
        page,
        lambda d: not d.find_element(By.CSS_SELECTOR, "[data-testid=issued-key]").is_displayed(),
    )
    page.refresh()
    wait_text(page, "tr[data-key=dana-ci]", "active")
    assert key not in page.page_source  # shown once: never again

    _click(page, "Revoke key dana-ci")
    _confirm(page)
    wait_text(page, "tr[data-key=dana-ci]", "revoked")
    with pytest.raises(openai.AuthenticationError):
        dana_sdk.chat.completions.create(model="tiny", **CHAT)

    _click(page, "Disable dana")
    wait_text(page, "tr[data-user=dana]", "disabled")
    _click(page, "Enable dana")
    wait_text(page, "tr[data-user=dana]", "active")


def test_a_rule_made_in_the_ui_routes_a_request(
    page: Any, ui_server: ServerProcess, admin_api: httpx.Client, sdk: openai.OpenAI
) -> None:
    with pytest.raises(openai.NotFoundError):  # no model by this name, no rule yet
        sdk.chat.completions.create(model="house-model", **CHAT)
    page.get(f"{ui_server.base_url}/ui/providers")
    wait_text(page, "[data-testid=rules-table]", "No rule")
    _fill(page, "rule-pattern", "house-model")
    _fill(page, "target-model-0", "tiny")
    _submit(page, "rule-form-heading")
    _notice(page, "Rule house-model added")
    row = wait_text(page, "tr[data-rule=house-model]", "local → tiny")
    assert "exact" in row and "enabled" in row

    _fill(page, "explain-model", "house-model")
    page.find_element(By.XPATH, "//button[text()='Explain']").click()
    explained = wait_text(page, "[data-testid=explain-result]", "house-model")
    assert "exact rule" in explained and "local → tiny" in explained

    reply = sdk.chat.completions.with_raw_response.create(model="house-model", **CHAT)
    assert reply.headers["x-mlx-manager-backend"].startswith("local")
    assert reply.parse().choices

    # Disabled in the UI: the name is unknown again, at once.
    _click(page, "Disable rule house-model")
    wait_text(page, "tr[data-rule=house-model]", "disabled")
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="house-model", **CHAT)
    _click(page, "Enable rule house-model")
    wait_text(page, "tr[data-rule=house-model]", "enabled")
    assert sdk.chat.completions.create(model="house-model", **CHAT).choices

    # Edited: the form comes back filled; a second target is added behind the first.
    _click(page, "Edit rule house-model")
    wait_text(page, "#rule-form-heading", "Edit rule house-model")
    assert page.find_element(By.ID, "target-model-0").get_attribute("value") == "tiny"
    page.find_element(By.XPATH, "//button[text()='Add a target']").click()
    _fill(page, "target-model-1", "tiny")
    _submit(page, "rule-form-heading")
    _notice(page, "Rule house-model saved")
    wait_text(page, "tr[data-rule=house-model]", "local → tiny, then local → tiny")
    stored = admin_api.get("/admin/routes").json()["data"]
    assert [len(r["targets"]) for r in stored if r["pattern"] == "house-model"] == [2]


def test_providers_keys_are_write_only(
    page: Any, ui_server: ServerProcess, admin_api: httpx.Client
) -> None:
    page.get(f"{ui_server.base_url}/ui/providers")
    wait_text(page, "[data-testid=providers-table]", "local")
    _fill(page, "provider-name", "upstream")
    _fill(page, "provider-url", "http://127.0.0.1:9/v1")
    _fill(page, "provider-key", UPSTREAM_KEY)
    _submit(page, "provider-form-heading")
    _notice(page, "Provider upstream added")
    row = wait_text(page, "tr[data-provider=upstream]", "…1234")
    assert UPSTREAM_KEY not in page.page_source

    # Edited without a key: the stored key stays.
    _click(page, "Edit provider upstream")
    _fill(page, "provider-url", "http://127.0.0.1:9/v2")
    _submit(page, "provider-form-heading")
    _notice(page, "Provider upstream saved")
    row = wait_text(page, "tr[data-provider=upstream]", "/v2")
    assert "…1234" in row
    stored = admin_api.get("/admin/providers/upstream").json()
    assert stored["api_key_hint"] == "…1234" and stored["base_url"].endswith("/v2")

    _click(page, "Check upstream")
    _notice(page, "upstream does not answer")
    screenshot(page, "providers-and-routing")
    check_accessibility(page, "providers & routing")

    _click(page, "Delete provider upstream")
    _confirm(page)
    _notice(page, "Provider upstream deleted")
    wait_for(page, lambda d: not d.find_elements(By.CSS_SELECTOR, "tr[data-provider=upstream]"))


def test_a_refusal_is_shown_in_words(page: Any, ui_server: ServerProcess) -> None:
    page.get(f"{ui_server.base_url}/ui/providers")
    wait_text(page, "[data-testid=rules-table]", "house-model")
    _fill(page, "rule-pattern", "house-model")  # the same rule twice
    _fill(page, "target-model-0", "tiny")
    _submit(page, "rule-form-heading")
    said = _notice(page, "Adding the rule house-model:")
    assert "Traceback" not in said and '{"error"' not in said
    page.find_element(By.CSS_SELECTOR, "#notices .notice.error")
