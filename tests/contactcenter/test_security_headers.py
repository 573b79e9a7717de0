"""Security headers and cookies: a Content-Security-Policy that allows no inline script, on every kind
of page, and templates that need none; cookies that scripts cannot read."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD, signed_in_client

INLINE_CODE = [
    (re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE), "an inline <script> (use a static file)"),
    (re.compile(r"\son[a-z]+\s*=", re.IGNORECASE), "an on…= event handler attribute"),
    (re.compile(r"\bhx-on", re.IGNORECASE), "an hx-on attribute (it is evaluated as code)"),
    (re.compile(r"javascript:", re.IGNORECASE), "a javascript: URL"),
]


def csp_directives(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


def assert_strict_csp(response) -> None:
    directives = csp_directives(response)
    assert directives["script-src"] == ["'self'"]
    assert directives["default-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]
    assert "'unsafe-eval'" not in response["Content-Security-Policy"]


@pytest.mark.parametrize("page", ["login", "home", "team", "admin:index", "webchat-demo"])
def test_every_kind_of_page_carries_a_csp_without_inline_scripts(page, acme_admin, acme_widget_key):
    client = Client() if page in ("login", "webchat-demo") else signed_in_client(acme_admin)
    response = client.get(reverse(page), {"key": acme_widget_key} if page == "webchat-demo" else {})
    assert response.status_code == 200
    assert_strict_csp(response)


@pytest.fixture
def acme_widget_key(acme):
    from channels_inbound.models import ChannelEndpoint
    from channels_inbound.webchat.demo import seed_webchat_demo
    from contactcenter.tenancy import tenant_context

    with tenant_context(acme):
        seed_webchat_demo(acme)
        return ChannelEndpoint.objects.get(channel="webchat").address


def template_files() -> list[Path]:
    roots = [Path(directory) for directory in settings.TEMPLATES[0]["DIRS"]]
    roots += [
        Path(settings.BASE_DIR) / app / "templates"
        for app in ("contactcenter", "conversations", "tasks", "channels_inbound", "desktop")
    ]
    files = [path for root in roots if root.exists() for path in root.rglob("*.html")]
    assert len(files) > 5, "the scan must see the templates"
    return files


def test_no_template_carries_code_the_csp_would_block():
    found = [
        f"{path.relative_to(settings.BASE_DIR)}:{text[: match.start()].count(chr(10)) + 1}: {why}"
        for path in template_files()
        for text in [path.read_text()]
        for pattern, why in INLINE_CODE
        for match in pattern.finditer(text)
    ]
    assert found == []


def test_the_scan_recognises_inline_code():
    samples = [
        "<script>alert(1)</script>",
        '<button onclick="go()">',
        '<div hx-on:click="x">',
        '<a href="javascript:x">',
    ]
    assert all(any(pattern.search(sample) for pattern, _ in INLINE_CODE) for sample in samples)
    assert not any(pattern.search('<script src="/static/x.js" defer></script>') for pattern, _ in INLINE_CODE)


def test_session_and_csrf_cookies_cannot_be_read_by_scripts(acme_agent):
    client = Client()
    client.get(reverse("login"))
    csrf = client.cookies[settings.CSRF_COOKIE_NAME]
    response = client.post(reverse("login"), {"username": "acme-agent1", "password": PASSWORD})
    assert response.status_code == 302
    session = response.cookies[settings.SESSION_COOKIE_NAME]
    assert session["httponly"] and session["samesite"] == "Lax"
    assert csrf["httponly"] and csrf["samesite"] == "Lax"
    # Secure follows the public URL (https in production); the local http run could not sign in otherwise.
    assert bool(session["secure"]) == settings.SESSION_COOKIE_SECURE == settings.SECURE_COOKIES
