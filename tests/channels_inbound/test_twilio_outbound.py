"""Agent replies reach Twilio's REST API (a local server speaking its wire format) correctly."""

import pytest
from django.test import Client

from channels_inbound.models import Channel
from contactcenter.tenancy import tenant_context
from conversations.delivery import TemporaryFailure
from conversations.models import DeliveryStatus, Message
from conversations.services import message_deliver, message_send_reply
from tests.channels_inbound.conftest import (
    ACME_NUMBER,
    ACME_SID,
    ACME_TOKEN,
    GLOBEX_SID,
    GLOBEX_TOKEN,
    inbound_sms,
    make_endpoint,
)

MESSAGING = "/webhooks/twilio/messaging"


def conversation_from_inbound(twilio, acme, fields):
    assert twilio.post(MESSAGING, fields).status_code == 200
    with tenant_context(acme):
        return Message.objects.select_related("conversation__contact").get(provider_message_id=fields["MessageSid"]).conversation


def reply_and_deliver(acme, conversation, author, body, *, final_attempt=True) -> Message:
    with tenant_context(acme):
        message = message_send_reply(conversation=conversation, author=author, body=body)
        message_deliver(message=Message.objects.select_related("conversation__contact").get(pk=message.pk), final_attempt=final_attempt)
        return Message.objects.get(pk=message.pk)


def test_an_agent_reply_reaches_twilio_with_the_right_to_from_and_body(twilio, fake_twilio, acme_sms, acme, acme_agent):
    conversation = conversation_from_inbound(twilio, acme, inbound_sms(sender="+15551230001", body="Hi"))
    message = reply_and_deliver(acme, conversation, acme_agent, "Hello Dana, happy to help 🙂")

    [sent] = fake_twilio.messages_sent()
    assert sent.account_sid == ACME_SID
    assert (sent.field("To"), sent.field("From"), sent.field("Body")) == ("+15551230001", ACME_NUMBER, "Hello Dana, happy to help 🙂")
    assert message.delivery_status == DeliveryStatus.SENT
    assert message.provider_message_id.startswith("SM") and len(message.provider_message_id) == 34


def test_whatsapp_replies_use_whatsapp_addresses(twilio, fake_twilio, acme, acme_agent):
    make_endpoint(acme, address="whatsapp:+15005550001", account_sid=ACME_SID, token=ACME_TOKEN, channel=Channel.WHATSAPP)
    fields = inbound_sms(to="whatsapp:+15005550001", sender="whatsapp:+447700900123", ProfileName="Ana", WaId="447700900123")
    conversation = conversation_from_inbound(twilio, acme, fields)
    reply_and_deliver(acme, conversation, acme_agent, "Olá Ana")
    [sent] = fake_twilio.messages_sent()
    assert (sent.field("To"), sent.field("From")) == ("whatsapp:+447700900123", "whatsapp:+15005550001")


def test_a_permanent_twilio_error_fails_the_message_with_twilios_reason(twilio, fake_twilio, acme_sms, acme, acme_agent):
    conversation = conversation_from_inbound(twilio, acme, inbound_sms())
    fake_twilio.fail_next(400, 21211, "The 'To' number is not a valid phone number.")
    message = reply_and_deliver(acme, conversation, acme_agent, "Hello")
    assert message.delivery_status == DeliveryStatus.FAILED
    assert message.error_code == "21211"
    assert "not a valid phone number" in message.error_reason


def test_a_temporary_twilio_error_is_retried_and_then_sent_once(twilio, fake_twilio, acme_sms, acme, acme_agent):
    conversation = conversation_from_inbound(twilio, acme, inbound_sms())
    fake_twilio.fail_next(503, 20503, "Service unavailable")
    with pytest.raises(TemporaryFailure):
        reply_and_deliver(acme, conversation, acme_agent, "Retry me", final_attempt=False)
    with tenant_context(acme):
        message = Message.objects.select_related("conversation__contact").get(body="Retry me")
        assert message.delivery_status == DeliveryStatus.QUEUED  # released for the retry
        message_deliver(message=message)  # the retry
        message_deliver(message=message)  # a duplicate job: claims nothing, sends nothing
        message.refresh_from_db()
    assert message.delivery_status == DeliveryStatus.SENT
    assert len(fake_twilio.messages_sent()) == 2  # the failed attempt and the one that went through


def test_the_last_attempt_of_a_temporary_error_records_the_failure(twilio, fake_twilio, acme_sms, acme, acme_agent):
    conversation = conversation_from_inbound(twilio, acme, inbound_sms())
    fake_twilio.fail_next(503, 20503, "Service unavailable")
    message = reply_and_deliver(acme, conversation, acme_agent, "Hello", final_attempt=True)
    assert message.delivery_status == DeliveryStatus.FAILED
    assert "Service unavailable" in message.error_reason


def test_each_tenant_sends_with_its_own_credentials(twilio, fake_twilio, acme_sms, globex_sms, acme, globex, acme_agent, globex_agent):
    acme_conversation = conversation_from_inbound(twilio, acme, inbound_sms())
    reply_and_deliver(acme, acme_conversation, acme_agent, "from acme")
    assert twilio.post(MESSAGING, inbound_sms(to="+15005550002", account_sid=GLOBEX_SID, sid=None), token=GLOBEX_TOKEN).status_code == 200
    with tenant_context(globex):
        globex_conversation = Message.objects.select_related("conversation").get().conversation
    reply_and_deliver(globex, globex_conversation, globex_agent, "from globex")
    assert [(sent.account_sid, sent.field("From"), sent.field("Body")) for sent in fake_twilio.messages_sent()] == [
        (ACME_SID, ACME_NUMBER, "from acme"),
        (GLOBEX_SID, "+15005550002", "from globex"),
    ]


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
GIF = b"GIF89a" + b"\x00" * 24


def reply_with_files_and_deliver(acme, conversation, author, body, files) -> Message:
    with tenant_context(acme):
        message = message_send_reply(conversation=conversation, author=author, body=body, files=files)
        message_deliver(message=Message.objects.select_related("conversation__contact").get(pk=message.pk))
        return Message.objects.get(pk=message.pk)


def test_a_reply_with_pictures_sends_a_media_url_per_file_that_serves_its_bytes(
    twilio, fake_twilio, acme_sms, acme, acme_agent, settings
):
    settings.PUBLIC_BASE_URL = "http://testserver"  # where the test client (standing in for Twilio) fetches
    conversation = conversation_from_inbound(twilio, acme, inbound_sms(sender="+15551230001", body="Label?"))
    files = [("label.png", PNG), ("map.gif", GIF)]
    message = reply_with_files_and_deliver(acme, conversation, acme_agent, "Here it is", files)

    [sent] = fake_twilio.messages_sent()
    assert (sent.field("To"), sent.field("From"), sent.field("Body")) == ("+15551230001", ACME_NUMBER, "Here it is")
    assert len(sent.media_urls) == 2
    assert all(url.startswith("http://testserver/attachments/public/") for url in sent.media_urls)
    fetched = [Client().get(url.removeprefix("http://testserver")) for url in sent.media_urls]  # no session: as Twilio
    assert [(r.status_code, r["Content-Type"], b"".join(r.streaming_content)) for r in fetched] == [
        (200, "image/png", PNG),
        (200, "image/gif", GIF),
    ]
    assert message.delivery_status == DeliveryStatus.SENT


def test_a_reply_without_files_sends_no_media_url(twilio, fake_twilio, acme_sms, acme, acme_agent, settings):
    settings.PUBLIC_BASE_URL = "http://testserver"
    conversation = conversation_from_inbound(twilio, acme, inbound_sms())
    reply_and_deliver(acme, conversation, acme_agent, "Just text")
    [sent] = fake_twilio.messages_sent()
    assert sent.media_urls == [] and "MediaUrl" not in sent.form


def test_files_fail_visibly_when_twilio_could_not_fetch_them(twilio, fake_twilio, acme_sms, acme, acme_agent, settings):
    settings.PUBLIC_BASE_URL = None  # no public address: Twilio cannot reach our files
    conversation = conversation_from_inbound(twilio, acme, inbound_sms())
    message = reply_with_files_and_deliver(acme, conversation, acme_agent, "Here it is", [("photo.png", PNG)])
    assert message.delivery_status == DeliveryStatus.FAILED
    assert "PUBLIC_BASE_URL is not set" in message.error_reason
    assert fake_twilio.messages_sent() == []
