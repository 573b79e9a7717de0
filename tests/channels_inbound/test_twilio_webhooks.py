"""Twilio's messaging and status webhooks: authenticated, validated, idempotent, tenant-routed."""

import threading

import pytest
from django.db import connection
from django.test import Client, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels_inbound.models import InboundEvent, InboundOutcome, UnroutedInboundEvent
from contactcenter.tenancy import dangerously_all_tenants, tenant_context
from conversations.models import Conversation, DeliveryStatus, Direction, Message
from tests.channels_inbound.conftest import (
    ACME_NUMBER,
    ACME_SID,
    GLOBEX_TOKEN,
    TwilioSigner,
    inbound_sms,
    message_sid,
)

MESSAGING = "/webhooks/twilio/messaging"
STATUS = "/webhooks/twilio/status"


def all_messages():
    with dangerously_all_tenants():
        return list(Message.objects.select_related("conversation__contact"))


def events_of(tenant):
    with tenant_context(tenant):
        return list(InboundEvent.objects.order_by("received_at", "pk"))


def test_signed_inbound_sms_creates_one_message_and_conversation_in_the_right_tenant(twilio, acme_sms, globex_sms, acme):
    response = twilio.post(MESSAGING, inbound_sms(body="Où est ma commande? 📦", ProfileName="Dana"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.decode().strip().endswith("<Response />")

    [message] = all_messages()
    assert message.tenant_id == acme.pk
    assert message.body == "Où est ma commande? 📦"
    assert message.direction == Direction.INBOUND
    assert message.conversation.channel == "sms"
    assert message.conversation.contact.name == "Dana"
    [event] = events_of(acme)
    assert event.outcome == InboundOutcome.STORED
    assert event.body["Body"] == "Où est ma commande? 📦"
    assert event.headers["signature_present"] is True


def test_the_same_request_three_times_yields_one_message(twilio, acme_sms, acme):
    fields = inbound_sms()
    assert [twilio.post(MESSAGING, fields).status_code for _ in range(3)] == [200, 200, 200]
    assert len(all_messages()) == 1
    assert [event.outcome for event in events_of(acme)] == ["stored", "duplicate", "duplicate"]


@pytest.mark.django_db(transaction=True)
def test_the_same_request_sent_concurrently_yields_one_message(acme_sms):
    fields = inbound_sms(sender="+15557770000")
    barrier = threading.Barrier(4)
    statuses = []

    def deliver():
        try:
            barrier.wait(timeout=10)
            statuses.append(TwilioSigner(Client()).post(MESSAGING, fields).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200, 200, 200, 200]
    assert len(all_messages()) == 1
    with dangerously_all_tenants():
        assert Conversation.objects.count() == 1


def test_a_wrong_signature_is_403_and_stores_nothing(twilio, acme_sms, acme):
    response = twilio.post(MESSAGING, inbound_sms(), signature="bm90LWEtc2lnbmF0dXJl")
    assert response.status_code == 403
    assert all_messages() == []
    [event] = events_of(acme)
    assert event.outcome == InboundOutcome.BAD_SIGNATURE


def test_a_missing_signature_is_403(acme_sms):
    assert Client().post(MESSAGING, inbound_sms()).status_code == 403
    assert all_messages() == []


def test_another_tenants_token_cannot_sign_for_this_number(twilio, acme_sms, globex_sms):
    response = twilio.post(MESSAGING, inbound_sms(), token=GLOBEX_TOKEN)
    assert response.status_code == 403
    assert all_messages() == []


def test_unknown_to_is_404_and_logged_for_the_operator_only(twilio, acme_sms, acme):
    response = twilio.post(MESSAGING, inbound_sms(to="+15009999999"))
    assert response.status_code == 404
    assert all_messages() == []
    assert events_of(acme) == []
    assert UnroutedInboundEvent.objects.get().detail == "no endpoint for +15009999999"


def test_a_known_number_under_another_account_is_404(twilio, acme_sms):
    response = twilio.post(MESSAGING, inbound_sms(account_sid="AC" + "c" * 32))
    assert response.status_code == 404


@pytest.mark.parametrize(
    "bad_fields, reason",
    [
        ({"NumMedia": "abc"}, "NumMedia"),
        ({"NumMedia": "2"}, "MediaUrl0"),
        ({"MessageSid": "not-a-sid"}, "MessageSid"),
        ({"Body": ""}, "a message needs a Body or media"),
        ({"From": "not a phone"}, "is not a phone number"),
    ],
    ids=["num-media-not-a-number", "media-missing", "bad-sid", "empty", "bad-from"],
)
def test_malformed_bodies_are_400_with_the_reason_and_store_nothing(twilio, acme_sms, acme, bad_fields, reason):
    response = twilio.post(MESSAGING, inbound_sms(**bad_fields))
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert all_messages() == []
    with tenant_context(acme):
        assert not Conversation.objects.exists()
    assert events_of(acme)[-1].outcome == InboundOutcome.MALFORMED


def test_a_missing_to_is_400(twilio, acme_sms):
    fields = inbound_sms()
    del fields["To"]
    assert twilio.post(MESSAGING, fields).status_code == 400


@override_settings(PUBLIC_BASE_URL="https://support.example.com")
def test_behind_a_proxy_the_signature_is_checked_against_the_public_url(acme_sms):
    public = TwilioSigner(Client(), base_url="https://support.example.com")
    internal = TwilioSigner(Client(), base_url="http://testserver")
    assert internal.post(MESSAGING, inbound_sms()).status_code == 403
    assert public.post(MESSAGING, inbound_sms()).status_code == 200


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    fields=st.dictionaries(
        keys=st.sampled_from(["Body", "From", "NumMedia", "MediaUrl0", "MediaContentType0", "ProfileName", "WaId",
                              "MessageSid", "SmsStatus", "Unexpected"]),
        values=st.text(max_size=40),
        max_size=6,
    )
)  # fmt: skip
def test_no_signed_body_can_cause_a_server_error(twilio, acme_sms, fields):
    body = {"To": ACME_NUMBER, "AccountSid": ACME_SID, "MessageSid": message_sid(), **fields}
    body = {key: value.replace("\x00", "") for key, value in body.items()}  # forms cannot carry NUL
    response = twilio.post(MESSAGING, body)
    assert response.status_code in (200, 400), response.content[:300]


# --- status callbacks -----------------------------------------------------------------------


def outbound_message(acme, provider_id: str) -> Message:
    from conversations.services import contact_find_or_create, conversation_start

    with tenant_context(acme):
        contact, _ = contact_find_or_create(kind="phone", value="+15551230001")
        conversation = conversation_start(contact=contact, channel="sms")
        return Message.objects.create(
            tenant=acme, conversation=conversation, direction=Direction.OUTBOUND, body="Hi",
            delivery_status=DeliveryStatus.SENT, provider_message_id=provider_id,
        )  # fmt: skip


def status_callback(sid: str, status: str, **extra) -> dict:
    return {"MessageSid": sid, "AccountSid": ACME_SID, "From": ACME_NUMBER, "To": "+15551230001",
            "MessageStatus": status, **extra}  # fmt: skip


def test_status_callbacks_never_move_a_message_backwards(twilio, acme_sms, acme):
    sid = message_sid()
    message = outbound_message(acme, sid)
    assert twilio.post(STATUS, status_callback(sid, "delivered")).status_code == 204
    assert twilio.post(STATUS, status_callback(sid, "sent")).status_code == 204  # late, out of order
    with tenant_context(acme):
        assert Message.objects.get(pk=message.pk).delivery_status == DeliveryStatus.DELIVERED
    assert [event.outcome for event in events_of(acme)] == ["stored", "duplicate"]


def test_a_failed_status_keeps_twilios_error_code(twilio, acme_sms, acme):
    sid = message_sid()
    message = outbound_message(acme, sid)
    response = twilio.post(STATUS, status_callback(sid, "undelivered", ErrorCode="30003", ErrorMessage="Unreachable"))
    assert response.status_code == 204
    with tenant_context(acme):
        stored = Message.objects.get(pk=message.pk)
    assert (stored.delivery_status, stored.error_code) == (DeliveryStatus.UNDELIVERED, "30003")


def test_status_callback_with_a_bad_signature_changes_nothing(twilio, acme_sms, acme):
    sid = message_sid()
    message = outbound_message(acme, sid)
    assert twilio.post(STATUS, status_callback(sid, "failed"), signature="x").status_code == 403
    with tenant_context(acme):
        assert Message.objects.get(pk=message.pk).delivery_status == DeliveryStatus.SENT
