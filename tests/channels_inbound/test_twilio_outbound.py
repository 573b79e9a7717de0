"""Agent replies reach Twilio's REST API (a local server speaking its wire format) correctly."""

import pytest
from django.test import override_settings

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
from tests.fakes.twilio_api import FakeTwilioApi

MESSAGING = "/webhooks/twilio/messaging"


@pytest.fixture
def fake_twilio():
    api = FakeTwilioApi({ACME_SID: ACME_TOKEN, GLOBEX_SID: GLOBEX_TOKEN}).start()
    with override_settings(TWILIO_API_BASE_URL=api.base_url):
        yield api
    api.stop()


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


def test_a_reply_with_a_file_fails_visibly_rather_than_losing_the_file(twilio, fake_twilio, acme_sms, acme, acme_agent):
    conversation = conversation_from_inbound(twilio, acme, inbound_sms())
    with tenant_context(acme):
        message = message_send_reply(
            conversation=conversation, author=acme_agent, body="Here it is", files=[("photo.png", b"\x89PNG\r\n\x1a\n" + b"0" * 16)]
        )
        message_deliver(message=Message.objects.select_related("conversation__contact").get(pk=message.pk))
        message.refresh_from_db()
    assert message.delivery_status == DeliveryStatus.FAILED
    assert "files cannot be sent on sms yet" in message.error_reason
    assert fake_twilio.messages_sent() == []
