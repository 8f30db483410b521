"""Driving the web page in Debian's headless chromium with Selenium, for tests/e2e/test_web_*.py.

`browser` starts one chromium per test module (a new empty profile, no network but this machine);
`Page` signs in with a role's key, opens paths, waits for what a user would wait for, and saves
screenshots under var/screenshots/ (git-ignored; CI keeps them as artifacts).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT_SECONDS = 15
# What the probe of this kind of machine found it needs: no sandbox as root, and no background
# connections (the closed network refuses them, many at a time).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1366,1000", "--lang=en-US")


def unique(prefix: str = "web") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            return f"{path} is not installed (make browser: apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (make venv installs requirements-browser.txt)"
    return None


@pytest.fixture(scope="module")
def browser():
    """A headless chromium driven by Selenium; on CI a missing browser fails, elsewhere it skips."""
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="roster-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """The page as a user meets it, through one browser."""

    def __init__(self, driver, base_url: str, api_keys: dict, name: str):
        self.driver = driver
        self.base_url = base_url
        self.api_keys = api_keys
        self.name = re.sub(r"[^\w.-]+", "-", name)
        self.shots = 0

    # ---- getting there ----

    def sign_in_with_form(self, role: str) -> None:
        """Open /app/ without a key, type the role's key into the prompt."""
        self.driver.get(f"{self.base_url}/app/")
        self.driver.execute_script("sessionStorage.clear()")
        self.driver.get(f"{self.base_url}/app/")
        self.find("#api-key").send_keys(self.api_keys[role])
        self.find("#key-form button[type=submit]").click()
        self.wait_text("#whoami", f"Key role: {role}")

    def open(self, path: str, role: str = "owner") -> None:
        """Open `path` as a user whose key (of `role`) is already in the tab's session."""
        self.driver.get(f"{self.base_url}/app/")
        self.driver.execute_script("sessionStorage.setItem('roster.apiKey', arguments[0])", self.api_keys[role])
        self.driver.get(f"{self.base_url}{path}")
        self.wait_text("#whoami", f"Key role: {role}")

    def open_customer(self, uuid_: str, role: str = "owner") -> None:
        self.open(f"/app/customers/{uuid_}", role)
        self.wait_visible("#details .detail[data-field=uuid]")
        self.wait_text("#live-state", "live")

    # ---- finding and waiting ----

    def find(self, css: str):
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str):
        from selenium.webdriver.common.by import By
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait(self, condition, what: str, seconds: float = WAIT_SECONDS):
        """Return condition(driver) once truthy; fail naming `what` (with a screenshot) when it never is."""
        from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, seconds, poll_frequency=0.05,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(condition)
        except TimeoutException:
            shot = self.screenshot("timeout")
            logs = "\n".join(entry["message"] for entry in self.driver.get_log("browser"))
            pytest.fail(f"Waited {seconds}s for {what}; screenshot {shot}\nbrowser log:\n{logs}", pytrace=False)

    def wait_visible(self, css: str, seconds: float = WAIT_SECONDS):
        def visible(driver):
            found = self.find_all(css)
            return found[0] if found and found[0].is_displayed() else None
        return self.wait(visible, f"{css} to show", seconds)

    def wait_text(self, css: str, text: str, seconds: float = WAIT_SECONDS):
        """Wait until the element's text contains `text`; return the element."""
        def has_text(driver):
            found = self.find_all(css)
            return found[0] if found and text in found[0].text else None
        return self.wait(has_text, f"{css} to contain {text!r}", seconds)

    def wait_gone(self, css: str, seconds: float = WAIT_SECONDS) -> None:
        self.wait(lambda driver: not [e for e in self.find_all(css) if e.is_displayed()], f"{css} to go", seconds)

    def text(self, css: str) -> str:
        return self.find(css).text

    # ---- doing ----

    def click(self, css: str) -> None:
        """Click the element, finding it again if a live refresh redrew it meanwhile."""
        def clicked(driver):
            self.find(css).click()
            return True
        self.wait(clicked, f"{css} to be clickable")

    def type_into(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def screenshot(self, step: str) -> Path:
        """Save what the page shows now as var/screenshots/<test>-<n>-<step>.png; return the path."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.shots += 1
        path = SCREENSHOTS / f"{self.name}-{self.shots:02d}-{step}.png"
        self.driver.save_screenshot(str(path))
        return path

    def console_errors(self) -> list[str]:
        """Return the browser console's errors (a failed request the test caused on purpose included)."""
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.fixture
def page(browser, gateway_url, api_keys, request):
    return Page(browser, gateway_url, api_keys, request.node.name)
