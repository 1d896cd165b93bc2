"""Browser tests: Playwright for Python driving Debian's Chromium against a live server.

The browser is never downloaded (this machine cannot): `make test` installs Debian's `chromium`
package, and a missing browser fails these tests with the command that installs it, rather than
skipping them (CI checks that they ran, scripts/check_test_results.py).

Each test gets a fresh browser context in German (the clinics' default language). A failing test
leaves a screenshot in var/e2e-screenshots/; `shot(page, name)` saves one on purpose (the
closing notes of the portal issue list them).
"""

import os
import re
from pathlib import Path

import pytest
from django.conf import settings

CHROMIUM = os.environ.get("PATTERM_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "e2e-screenshots"
# Without these, Chromium tries to reach Google's hosts on a machine with a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is not at {CHROMIUM}: install it with `apt-get install chromium` "
            "(make test does so when run as root), or set PATTERM_CHROMIUM."
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # itself (factories, assertions) are still plain synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, live_server, request):
    """Open pages in fresh contexts (one per user); each saves a screenshot if the test fails."""
    contexts = []

    def open_page(locale="de-DE"):
        context = browser.new_context(
            base_url=live_server.url, locale=locale, accept_downloads=True
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    failed = getattr(request.node, "report_call", None)
    for number, context in enumerate(contexts):
        if failed is not None and failed.failed:
            for page in context.pages:
                shot(page, f"FAILED-{request.node.name}-{number}")
        context.close()


@pytest.fixture
def page(new_page):
    return new_page()


def shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / (re.sub(r"[^\w.-]+", "_", name) + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path


_AXE = None


def assert_accessible(page) -> None:
    """axe-core (WCAG 2 A/AA and 2.1 AA rules) finds nothing on the page as it is shown."""
    global _AXE
    if _AXE is None:
        from axe_playwright_python.sync_playwright import Axe

        _AXE = Axe()
    results = _AXE.run(page, options={"runOnly": ["wcag2a", "wcag2aa", "wcag21aa"]})
    assert results.violations_count == 0, results.generate_report()
