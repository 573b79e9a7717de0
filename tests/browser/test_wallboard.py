"""A supervisor watches the wallboard in Chromium while a customer's signed SMS arrives through the
real webhook and is stored by the real worker: the waiting count rises on the open page, without a
reload."""

import pytest
import requests
from playwright.sync_api import expect
from twilio.request_validator import RequestValidator

from contactcenter.tenancy import tenant_context
from tasks.models import Queue
from tests.browser.conftest import sign_in
from tests.channels_inbound.conftest import ACME_NUMBER, ACME_SID, ACME_TOKEN, inbound_sms, make_endpoint
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def customer_texts(server_url: str, body: str) -> None:
    """What Twilio does: POST the message to our webhook, signed with the endpoint's auth token."""
    url = f"{server_url}/webhooks/twilio/messaging"
    fields = inbound_sms(body=body, sender="+15551230077")
    signature = RequestValidator(ACME_TOKEN).compute_signature(url, fields)
    response = requests.post(url, data=fields, headers={"X-Twilio-Signature": signature}, timeout=10)
    assert response.status_code == 200, response.text


def test_the_waiting_count_rises_live_when_a_customer_writes(
    asgi_server, worker_and_beat, page, acme, acme_supervisor, tmp_path
):
    make_endpoint(acme, address=ACME_NUMBER, account_sid=ACME_SID, token=ACME_TOKEN)
    with tenant_context(acme):
        Queue.objects.create(tenant=acme, name="Support", channels=["sms"])
        Queue.objects.create(tenant=acme, name="Billing", channels=["email"])

    sign_in(page, asgi_server.url, "acme-supervisor", PASSWORD)
    page.get_by_role("link", name="Wallboard").click()
    page.wait_for_url(f"{asgi_server.url}/supervisor/")
    support = page.get_by_role("region", name="Support")
    waiting = support.locator('[data-figure="waiting"]')
    expect(waiting).to_have_text("0")
    expect(page.get_by_role("region", name="Billing").locator('[data-figure="waiting"]')).to_have_text("0")
    page.evaluate("window.wallboardPageLoad = 'the same page'")  # gone if the page reloads

    customer_texts(asgi_server.url, "My parcel never arrived")
    expect(waiting).to_have_text("1")
    expect(page.locator('[data-figure="total-waiting"]')).to_have_text("1")
    expect(page.get_by_role("region", name="Billing").locator('[data-figure="waiting"]')).to_have_text("0")
    assert page.evaluate("window.wallboardPageLoad") == "the same page"
    assert support.locator('[data-figure="longest-wait"]').inner_text().endswith("s")
    page.screenshot(path=str(tmp_path / "wallboard.png"), full_page=True)
