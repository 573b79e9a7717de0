"""A queued outbound message whose delivery job was lost, or whose worker died mid-send, is sent once
(conversations.services.outbound_messages_recover), against Twilio's REST API (a local server
speaking its wire format)."""

import base64
import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from channels_inbound.twilio.sender import twilio_message_send, twilio_messages_find_sent
from conversations import delivery
from conversations.jobs import deliver_outbound_message, recover_outbound_messages
from conversations.models import ActivityKind, DeliveryStatus, Message
from conversations.services import message_delivery_update, message_send_reply, outbound_messages_recover
from tests.channels_inbound.conftest import ACME_NUMBER, ACME_SID, ACME_TOKEN, make_endpoint
from tests.conversations.conftest import activity_after, activity_mark, make_contact, make_conversation

CUSTOMER = "+15551230001"


@pytest.fixture
def twilio_sms_sender():
    """The Twilio sender and its lookup on sms, whatever an earlier test left registered; restored after."""
    previous = delivery.sender_for("sms")
    delivery.register_sender("sms", twilio_message_send, find_sent=twilio_messages_find_sent)
    yield
    if previous is not None:
        delivery.register_sender("sms", previous)


@pytest.fixture
def conversation(acme, in_acme, fake_twilio, twilio_sms_sender):
    make_endpoint(acme, address=ACME_NUMBER, account_sid=ACME_SID, token=ACME_TOKEN)
    return make_conversation(make_contact(phone=CUSTOMER), channel="sms")


def queued_reply(conversation, author, body, django_capture_on_commit_callbacks, **columns) -> Message:
    """An agent's reply whose delivery job never ran (its on-commit enqueue is dropped, as a broker
    that lost it would), its columns then set as a test's given state."""
    with django_capture_on_commit_callbacks(execute=False):
        message = message_send_reply(conversation=conversation, author=author, body=body)
    Message.objects.filter(pk=message.pk).update(**columns)
    return Message.objects.select_related("conversation__contact").get(pk=message.pk)


def run_enqueued_deliveries(broker) -> list[int]:
    """Take every job from the queue and run it as the worker would (eagerly, here); the message ids."""
    ran = []
    while raw := broker.lpop(settings.CELERY_TASK_DEFAULT_QUEUE):
        payload = json.loads(raw)
        assert payload["headers"]["task"] == deliver_outbound_message.name
        args, _, _ = json.loads(base64.b64decode(payload["body"]))
        deliver_outbound_message.apply(args=args)
        ran.append(args[1])
    return ran


def recover(django_capture_on_commit_callbacks, **later) -> dict[str, int]:
    with django_capture_on_commit_callbacks(execute=True):
        return outbound_messages_recover(now=timezone.now() + timedelta(**later))


def test_a_queued_message_whose_job_was_lost_is_sent_once(
    conversation, acme_agent, broker, fake_twilio, django_capture_on_commit_callbacks
):
    ago = timezone.now() - timedelta(seconds=50)
    message = queued_reply(conversation, acme_agent, "Lost job", django_capture_on_commit_callbacks, created_at=ago)

    assert recover(django_capture_on_commit_callbacks) == {"requeued": 1, "found_sent": 0, "resent": 0}
    assert recover(django_capture_on_commit_callbacks) == {"requeued": 0, "found_sent": 0, "resent": 0}  # marked
    assert run_enqueued_deliveries(broker) == [message.pk]

    [sent] = fake_twilio.messages_sent()
    assert (sent.field("To"), sent.field("From"), sent.field("Body")) == (CUSTOMER, ACME_NUMBER, "Lost job")
    message.refresh_from_db()
    assert message.delivery_status == DeliveryStatus.SENT
    assert message.provider_message_id == fake_twilio.messages[0]["sid"]
    assert recover(django_capture_on_commit_callbacks, seconds=120) == {"requeued": 0, "found_sent": 0, "resent": 0}
    assert run_enqueued_deliveries(broker) == []
    assert len(fake_twilio.messages_sent()) == 1


def test_a_send_in_doubt_that_twilio_has_is_marked_sent_not_sent_again(
    conversation, acme_agent, broker, fake_twilio, django_capture_on_commit_callbacks
):
    message = queued_reply(conversation, acme_agent, "Reached Twilio", django_capture_on_commit_callbacks)
    twilio_message_send(message)  # the dead worker's call: Twilio took it, nobody heard the answer
    Message.objects.filter(pk=message.pk).update(send_claimed_at=timezone.now() - timedelta(seconds=70))
    mark = activity_mark()

    assert recover(django_capture_on_commit_callbacks) == {"requeued": 0, "found_sent": 1, "resent": 0}

    message.refresh_from_db()
    assert message.delivery_status == DeliveryStatus.SENT
    assert message.provider_message_id == fake_twilio.messages[0]["sid"]
    assert activity_after(mark) == [(ActivityKind.DELIVERY, DeliveryStatus.QUEUED, DeliveryStatus.SENT)]
    [listed] = fake_twilio.messages_listed()
    assert (listed.field("To"), listed.field("From")) == (CUSTOMER, ACME_NUMBER)
    assert listed.field("DateSent>")  # only recent messages are asked for
    assert run_enqueued_deliveries(broker) == []
    assert len(fake_twilio.messages_sent()) == 1  # not sent twice
    assert recover(django_capture_on_commit_callbacks, seconds=120) == {"requeued": 0, "found_sent": 0, "resent": 0}


def test_a_send_in_doubt_that_twilio_does_not_have_is_sent_once(
    conversation, acme_agent, broker, fake_twilio, django_capture_on_commit_callbacks
):
    message = queued_reply(
        conversation, acme_agent, "Never left", django_capture_on_commit_callbacks,
        send_claimed_at=timezone.now() - timedelta(seconds=70),
    )  # fmt: skip
    mark = activity_mark()

    assert recover(django_capture_on_commit_callbacks) == {"requeued": 0, "found_sent": 0, "resent": 1}
    assert activity_after(mark) == [(ActivityKind.DELIVERY, "in doubt", DeliveryStatus.QUEUED)]
    assert len(fake_twilio.messages_listed()) == 1
    assert run_enqueued_deliveries(broker) == [message.pk]

    [sent] = fake_twilio.messages_sent()
    assert sent.field("Body") == "Never left"
    message.refresh_from_db()
    assert (message.delivery_status, message.provider_message_id) == (
        DeliveryStatus.SENT,
        fake_twilio.messages[0]["sid"],
    )
    assert recover(django_capture_on_commit_callbacks, seconds=120) == {"requeued": 0, "found_sent": 0, "resent": 0}
    assert len(fake_twilio.messages_sent()) == 1


def test_an_earlier_identical_message_at_twilio_is_not_taken_for_the_one_in_doubt(
    conversation, acme_agent, broker, fake_twilio, django_capture_on_commit_callbacks
):
    earlier = queued_reply(conversation, acme_agent, "Thanks!", django_capture_on_commit_callbacks)
    message_delivery_update(
        message=earlier, status=DeliveryStatus.SENT, provider_message_id=twilio_message_send(earlier)
    )
    message = queued_reply(
        conversation, acme_agent, "Thanks!", django_capture_on_commit_callbacks,
        send_claimed_at=timezone.now() - timedelta(seconds=70),
    )  # fmt: skip

    assert recover(django_capture_on_commit_callbacks) == {"requeued": 0, "found_sent": 0, "resent": 1}
    assert run_enqueued_deliveries(broker) == [message.pk]
    assert len(fake_twilio.messages_sent()) == 2
    message.refresh_from_db()
    assert message.delivery_status == DeliveryStatus.SENT
    assert message.provider_message_id == fake_twilio.messages[1]["sid"] != earlier.provider_message_id


def test_when_twilio_cannot_be_asked_the_message_stays_in_doubt_and_nothing_is_sent(
    conversation, acme_agent, broker, fake_twilio, django_capture_on_commit_callbacks
):
    message = queued_reply(
        conversation, acme_agent, "Unknown", django_capture_on_commit_callbacks,
        send_claimed_at=timezone.now() - timedelta(seconds=70),
    )  # fmt: skip
    fake_twilio.fail_next(503, 20503, "Service unavailable")

    assert recover(django_capture_on_commit_callbacks) == {"requeued": 0, "found_sent": 0, "resent": 0}
    assert run_enqueued_deliveries(broker) == []
    assert fake_twilio.messages_sent() == []
    message.refresh_from_db()
    assert message.delivery_status == DeliveryStatus.QUEUED
    assert message.send_claimed_at > timezone.now() - timedelta(seconds=5)  # asked again a minute later
    assert recover(django_capture_on_commit_callbacks, seconds=70) == {"requeued": 0, "found_sent": 0, "resent": 1}


def test_fresh_claims_and_fresh_queued_messages_are_left_alone(
    conversation, acme_agent, broker, fake_twilio, django_capture_on_commit_callbacks
):
    sending_now = timezone.now() - timedelta(seconds=10)
    claimed = queued_reply(conversation, acme_agent, "Being sent", django_capture_on_commit_callbacks,
                           send_claimed_at=sending_now)  # fmt: skip
    queued_reply(conversation, acme_agent, "Just queued", django_capture_on_commit_callbacks)

    assert recover(django_capture_on_commit_callbacks) == {"requeued": 0, "found_sent": 0, "resent": 0}
    assert run_enqueued_deliveries(broker) == []
    assert fake_twilio.requests == []
    claimed.refresh_from_db()
    assert (claimed.delivery_status, claimed.send_claimed_at) == (DeliveryStatus.QUEUED, sending_now)


def test_the_sweep_job_runs_the_service(conversation, acme_agent, broker, django_capture_on_commit_callbacks):
    ago = timezone.now() - timedelta(seconds=50)
    message = queued_reply(conversation, acme_agent, "Lost job", django_capture_on_commit_callbacks, created_at=ago)
    with django_capture_on_commit_callbacks(execute=True):
        assert recover_outbound_messages.apply().get() == {"requeued": 1, "found_sent": 0, "resent": 0}
    assert run_enqueued_deliveries(broker) == [message.pk]
