"""Signing in as a person would: keyboard only, in Chromium, against the real ASGI server."""

import pytest

from tests.browser.conftest import sign_in
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_agent_signs_in_with_the_keyboard_and_sees_their_tenant(asgi_server, page, acme_agent, globex_agent):
    page.goto(f"{asgi_server.url}/")
    assert page.url.startswith(f"{asgi_server.url}/accounts/login/")

    page.keyboard.type("acme-agent1")  # the username field has focus on arrival
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{asgi_server.url}/")

    heading = page.get_by_role("heading", level=1)
    assert "Agent1's desktop" in heading.inner_text()
    assert "Acme Support" in page.locator("main").inner_text()
    assert "Globex" not in page.content()


def test_wrong_password_shows_an_error_and_stays_on_sign_in(asgi_server, page, acme_agent):
    page.goto(f"{asgi_server.url}/accounts/login/")
    page.get_by_label("Username").fill("acme-agent1")
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").is_visible()
    assert "/accounts/login/" in page.url


def test_member_page_opens_its_live_websocket(asgi_server, page, acme_agent):
    # The desktop keeps one websocket open through htmx's ws extension (served from static/).
    with page.expect_websocket(predicate=lambda ws: ws.url.endswith("/ws/member/")) as socket_info:
        sign_in(page, asgi_server.url, "acme-agent1", PASSWORD)
    socket = socket_info.value
    page.wait_for_timeout(300)
    assert not socket.is_closed()


def test_sign_out_returns_to_sign_in(asgi_server, page, acme_agent):
    sign_in(page, asgi_server.url, "acme-agent1", PASSWORD)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{asgi_server.url}/accounts/login/")
    page.goto(f"{asgi_server.url}/")
    assert "/accounts/login/" in page.url
