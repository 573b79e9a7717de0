"""An agent's day on the desktop, in Chromium, against the real ASGI server and a real Celery worker
and beat: customers text acme's number through the signed Twilio webhook, routing offers the work
live, and the agent answers from the keyboard."""

import re
import time

import pytest
import requests
from playwright.sync_api import expect
from twilio.request_validator import RequestValidator

from conversations.models import Activity, Message, ReplyTemplate
from tasks.models import AgentStatus, BreakReason, Disposition, Offer, OfferStatus, Queue
from tasks.services import agent_choose_queues, agent_set_status, agent_state_for
from tests.browser.conftest import in_tenant_thread, sign_in
from tests.channels_inbound.conftest import ACME_NUMBER, ACME_SID, ACME_TOKEN, inbound_sms, make_endpoint
from tests.conftest import PASSWORD, make_member

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MESSAGING = "/webhooks/twilio/messaging"
OFFER_SECONDS = 8


def customer_writes(server_url: str, sender: str, body: str) -> None:
    """A signed inbound SMS, posted to the server as Twilio would."""
    fields = inbound_sms(sender=sender, body=body)
    signature = RequestValidator(ACME_TOKEN).compute_signature(server_url + MESSAGING, fields)
    response = requests.post(server_url + MESSAGING, data=fields, headers={"X-Twilio-Signature": signature}, timeout=10)
    assert response.status_code == 200, response.text


def eventually(check, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


@pytest.fixture
def floor(acme, asgi_server, worker_and_beat):
    """acme's Support queue (offers time out after OFFER_SECONDS), its SMS number, two agents serving it."""
    make_endpoint(acme, address=ACME_NUMBER, account_sid=ACME_SID, token=ACME_TOKEN)

    def set_up():
        queue = Queue.objects.create(tenant=acme, name="Support", channels=["sms"], offer_timeout_seconds=OFFER_SECONDS)
        agents = [make_member(acme, "acme-agent1"), make_member(acme, "acme-agent2")]
        for agent in agents:
            agent_state_for(agent)
            agent_choose_queues(membership=agent, queues=[queue])
        Disposition.objects.create(tenant=acme, name="Resolved")
        BreakReason.objects.create(tenant=acme, name="Lunch")
        ReplyTemplate.objects.create(tenant=acme, name="Help", shortcut="/help", body="Happy to help! {{agent.name}}")
        return agents

    return in_tenant_thread(acme, set_up)


def set_status(acme, agent, status):
    def change():
        reason = BreakReason.objects.get(name="Lunch") if status == AgentStatus.UNAVAILABLE else None
        agent_set_status(membership=agent, status=status, break_reason=reason)

    in_tenant_thread(acme, change)


def outbound_bodies(acme) -> list[str]:
    return in_tenant_thread(
        acme, lambda: list(Message.objects.filter(direction="outbound").order_by("pk").values_list("body", flat=True))
    )


@pytest.fixture
def globex_screen(browser, asgi_server, globex):
    """A globex agent's desktop open beside acme's, recording every websocket frame it receives."""
    in_tenant_thread(globex, lambda: make_member(globex, "globex-agent1"))
    context = browser.new_context()
    page = context.new_page()
    frames: list[str] = []
    page.on("websocket", lambda socket: socket.on("framereceived", lambda frame: frames.append(str(frame))))
    sign_in(page, asgi_server.url, "globex-agent1", PASSWORD)
    expect(page.locator("[data-connection]")).to_have_text("Live")
    yield frames
    context.close()


def test_an_agent_takes_declines_answers_and_wraps_up_work_as_it_arrives(page, asgi_server, acme, floor, globex_screen):
    agent, teammate = floor
    url = asgi_server.url
    sign_in(page, url, "acme-agent1", PASSWORD)
    expect(page.locator("[data-connection]")).to_have_text("Live")
    page.get_by_role("button", name="Go Available").click()
    expect(page.locator("#agent-status")).to_have_text("Available")

    # An SMS arrives and is offered live; declined, it goes to the teammate.
    customer_writes(url, "+15551110001", "My parcel is late")
    offers = page.locator("#task-list [data-offer]")
    expect(offers).to_have_count(1, timeout=15_000)
    expect(offers.first).to_contain_text("My parcel is late")
    set_status(acme, teammate, AgentStatus.AVAILABLE)
    offers.first.get_by_role("button", name=re.compile("Decline")).click()
    expect(offers).to_have_count(0)
    teammate_offer = eventually(
        lambda: in_tenant_thread(
            acme, lambda: Offer.objects.filter(agent=teammate, status=OfferStatus.PENDING).exists()
        )
    )
    assert teammate_offer, "the declined task was not offered to the teammate"
    set_status(acme, teammate, AgentStatus.UNAVAILABLE)

    # The next one is accepted; replies go out from the keyboard.
    customer_writes(url, "+15551110002", "Where is my refund?")
    expect(offers).to_have_count(1, timeout=15_000)
    expect(offers.first).to_contain_text("Where is my refund?")
    offers.first.get_by_role("button", name=re.compile("Accept")).click()
    reply = page.get_by_label(re.compile("Reply to"))
    expect(reply).to_be_visible()
    expect(page.locator(".history")).to_contain_text("Where is my refund?")

    reply.fill("Hello there")
    reply.press("Enter")
    expect(page.locator(".msg-outbound")).to_have_count(1)
    expect(page.locator(".msg-outbound").last).to_contain_text("Hello there")

    reply = page.get_by_label(re.compile("Reply to"))
    reply.type("line one")
    reply.press("Shift+Enter")
    reply.type("line two")
    expect(reply).to_have_value("line one\nline two")
    reply.press("Enter")
    expect(page.locator(".msg-outbound")).to_have_count(2)

    reply = page.get_by_label(re.compile("Reply to"))
    reply.type("/help")
    reply.press("Tab")
    expect(reply).to_have_value("Happy to help! Agent1")
    reply.press("Enter")
    expect(page.locator(".msg-outbound")).to_have_count(3)

    reply = page.get_by_label(re.compile("Reply to"))
    reply.fill("Card 4111 1111 1111 1111 noted")
    reply.press("Enter")
    warning = page.get_by_role("alert").filter(has_text="card number")
    expect(warning).to_be_visible()
    expect(warning.locator("mark")).to_have_text("4111 1111 1111 1111")
    assert len(outbound_bodies(acme)) == 3  # held back until the agent decides
    page.get_by_role("button", name="Send anyway").click()
    expect(page.locator(".msg-outbound")).to_have_count(4)
    assert outbound_bodies(acme) == [
        "Hello there", "line one\nline two", "Happy to help! Agent1", "Card 4111 1111 1111 1111 noted"
    ]  # fmt: skip
    assert in_tenant_thread(acme, lambda: Activity.objects.filter(kind="sensitive", actor=agent).count()) == 1

    # A second conversation arriving meanwhile raises a badge (and the title counts it).
    customer_writes(url, "+15551110003", "Another question")
    expect(page.locator("#task-list h3 .badge")).to_have_text("1", timeout=15_000)
    expect(page).to_have_title(re.compile(r"^\(1\) "))

    # End chat, wrap up with a disposition, Complete.
    page.get_by_role("button", name="End chat").click()
    wrap_up = page.get_by_role("form", name="Wrap-up")
    wrap_up.get_by_label(re.compile("Disposition")).select_option(label="Resolved")
    wrap_up.get_by_label("Notes").fill("Refund sent")
    wrap_up.get_by_role("button", name="Complete").click()
    expect(page.get_by_text("✓ Handled · Resolved")).to_be_visible()

    # The offer nobody answers times out and leaves the agent's list by itself.
    expect(offers).to_have_count(0, timeout=(OFFER_SECONDS + 10) * 1000)
    timed_out = in_tenant_thread(acme, lambda: Offer.objects.filter(agent=agent, status=OfferStatus.TIMED_OUT).count())
    assert timed_out == 1

    # All the while, the globex agent's browser was connected and received nothing of acme's.
    acme_words = ("parcel", "refund", "Another question", "Agent1", "acme", "Happy to help")
    assert not [frame for frame in globex_screen if any(word in frame for word in acme_words)]


def test_the_page_catches_up_by_itself_after_the_server_restarts(page, asgi_server, acme, floor):
    url = asgi_server.url
    sign_in(page, url, "acme-agent1", PASSWORD)
    page.get_by_role("button", name="Go Available").click()
    customer_writes(url, "+15551110009", "First message")
    offers = page.locator("#task-list [data-offer]")
    expect(offers).to_have_count(1, timeout=15_000)
    offers.first.get_by_role("button", name=re.compile("Accept")).click()
    history = page.locator(".history")
    expect(history).to_contain_text("First message")
    page.get_by_label(re.compile("Reply to")).fill("draft kept")

    asgi_server.kill()
    expect(page.locator("[data-connection]")).to_have_text("Reconnecting…")
    from django.test import Client

    from tests.channels_inbound.conftest import TwilioSigner

    # While the server is down the customer writes again; the webhook lands on another instance.
    in_tenant_thread(
        acme, lambda: TwilioSigner(Client()).post(MESSAGING, inbound_sms(sender="+15551110009", body="Are you there?"))
    )
    asgi_server.start()
    expect(page.locator("[data-connection]")).to_have_text("Live", timeout=15_000)
    expect(history).to_contain_text("Are you there?", timeout=15_000)
    expect(page.get_by_label(re.compile("Reply to"))).to_have_value("draft kept")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload
