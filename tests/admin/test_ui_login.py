"""The web UI's foundation in headless Chromium on a live server: the open loopback mode goes
straight in; once an admin exists a page sends the browser to the login page and back; the
login works from the keyboard alone; a wrong password is said in words; a non-admin is told
the pages are for administrators. axe-core checks every page; screenshots go to
test-output/ui/. The tests run in order on one server (the first makes the admin)."""

from __future__ import annotations

from typing import Any

import httpx
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

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


def _active_id(driver: Any) -> str:
    return str(driver.execute_script("return document.activeElement.id"))


def test_the_open_loopback_mode_goes_straight_in(browser: Any, ui_server: ServerProcess) -> None:
    browser.get(f"{ui_server.base_url}/ui/login")  # no account exists: nothing to sign in to
    wait_for(browser, lambda d: d.current_url.endswith("/ui"))
    wait_text(browser, "[data-testid=subject]", "anonymous")
    wait_text(browser, "[data-testid=engine-state]", "ready")
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-logout]")  # no session to end
    check_accessibility(browser, "dashboard, open loopback mode")


def test_a_page_sends_the_browser_to_login_and_back_by_keyboard(
    browser: Any, ui_server: ServerProcess
) -> None:
    made = httpx.post(  # still open: the loopback caller is the anonymous admin
        f"{ui_server.base_url}/admin/users",
        json={"username": UI_ADMIN, "password": UI_ADMIN_PASSWORD, "role": "admin"},
    )
    assert made.status_code == 201, made.text
    browser.get(f"{ui_server.base_url}/ui?from=test")
    wait_for(browser, lambda d: "/ui/login?next=/ui%3Ffrom%3Dtest" in d.current_url)
    check_accessibility(browser, "login")
    screenshot(browser, "login")

    # Keyboard only: Tab from the top of the page to the user name, type, Tab, type, Enter.
    for _ in range(4):
        if _active_id(browser) == "username":
            break
        ActionChains(browser).send_keys(Keys.TAB).perform()
    assert _active_id(browser) == "username"
    keys = ActionChains(browser).send_keys(UI_ADMIN).send_keys(Keys.TAB)
    keys.send_keys(UI_ADMIN_PASSWORD).send_keys(Keys.ENTER).perform()
    wait_for(browser, lambda d: d.current_url.endswith("/ui?from=test"))
    wait_text(browser, "[data-testid=subject]", UI_ADMIN)
    wait_text(browser, "[data-testid=engine-state]", "ready")
    check_accessibility(browser, "dashboard")
    screenshot(browser, "dashboard-signed-in")


def test_a_wrong_password_is_said_in_words(browser: Any, ui_server: ServerProcess) -> None:
    browser.delete_all_cookies()
    browser.get(f"{ui_server.base_url}/ui/login")
    browser.find_element(By.ID, "username").send_keys(UI_ADMIN)
    browser.find_element(By.ID, "password").send_keys("not the password")
    browser.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    said = wait_text(browser, "#login-error", "password")
    assert "Traceback" not in said and "{" not in said
    assert "/ui/login" in browser.current_url


def test_a_non_admin_is_told_so_and_can_log_out(browser: Any, ui_server: ServerProcess) -> None:
    signup = httpx.post(
        f"{ui_server.base_url}/auth/register",
        json={"username": "pat", "password": "pats-password-1"},
    )
    assert signup.status_code == 201 and signup.json()["pending_approval"] is True
    browser.delete_all_cookies()
    login(browser, ui_server.base_url, "pat", "pats-password-1")
    wait_text(browser, "h1", "Administrators only")
    assert "approval" in browser.find_element(By.ID, "forbidden-reason").text
    assert not browser.find_elements(By.CSS_SELECTOR, "nav[aria-label=Main]")
    check_accessibility(browser, "forbidden")
    screenshot(browser, "forbidden")

    browser.find_element(By.CSS_SELECTOR, "[data-logout]").click()
    wait_for(browser, lambda d: d.current_url.endswith("/ui/login"))
    browser.get(f"{ui_server.base_url}/ui")
    wait_for(browser, lambda d: "/ui/login?next=" in d.current_url)


def test_the_accessibility_check_can_fail(browser: Any) -> None:
    """The axe-core helper fails a page with an unlabelled field and an image without text."""
    browser.get("data:text/html,<html><body><input id=x><img src=x.png></body></html>")
    try:
        check_accessibility(browser, "broken page")
    except AssertionError as failure:
        assert "label" in str(failure) and "image-alt" in str(failure)
    else:
        raise AssertionError("axe-core passed a page with no labels")
