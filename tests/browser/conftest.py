"""Browser tests: the real ASGI server (uvicorn, as in production) and Debian's Chromium via Playwright.

The server runs in a subprocess against the test database, so tests use `transactional_db`: rows a
test creates are committed and visible to the server.
"""

import os
from pathlib import Path

import pytest

from tests.servers import AsgiServer, database_url_of_test_database, free_port  # noqa: F401 - used by browser tests

CHROMIUM = "/usr/bin/chromium"
# Flags for a machine with no network beyond localhost: without them Chromium keeps trying to
# reach Google's services at start-up.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def asgi_server(transactional_db, tmp_path):
    server = AsgiServer(tmp_path / "uvicorn.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module. Not per session: while Playwright's sync API is alive it keeps
    an event loop registered on the main thread, and async tests in other modules could not run."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run the tests with ./switchboard test, which installs it")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in the test thread, and Django's ORM then refuses to
    # run there. Browser tests touch the database only between browser steps, never during them, so
    # the check is lifted while this module's browser lives, and only then.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def sign_in(page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/")


def in_tenant_thread(tenant, work):
    """Run `work()` inside `tenant` in another thread and return its result. Playwright's sync API runs an
    event loop in the test thread, where async_to_sync (every realtime push) refuses to run."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from contactcenter.tenancy import tenant_context

    def run():
        try:
            with tenant_context(tenant):
                return work()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()
