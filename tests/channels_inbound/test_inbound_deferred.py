"""Inbound messages are answered once logged and stored by a job: in order, once, and never lost."""

import json
import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from channels_inbound.models import InboundEvent, InboundOutcome
from channels_inbound.twilio.intake import PROCESS_MAX_ATTEMPTS, inbound_events_recover, twilio_events_process
from channels_inbound.twilio.replay import twilio_event_replay
from contactcenter.tenancy import dangerously_all_tenants, tenant_context
from conversations.models import Message
from tests.channels_inbound.conftest import TwilioSigner, inbound_sms

MESSAGING = "/webhooks/twilio/messaging"


def processing_jobs(broker) -> list[str]:
    jobs = [json.loads(raw)["headers"] for raw in broker.lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1)]
    return [job["argsrepr"] for job in jobs if job["task"] == "channels_inbound.jobs.process_inbound_events"]


def events(tenant) -> list[InboundEvent]:
    with tenant_context(tenant):
        return list(InboundEvent.objects.order_by("received_at", "pk"))


def test_a_message_is_answered_once_logged_and_stored_by_one_job(
    twilio, acme_sms, acme, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = twilio.post(MESSAGING, inbound_sms(body="First"), deferred=False)
        second = twilio.post(MESSAGING, inbound_sms(body="Second"), deferred=False)
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.content.decode().strip().endswith("<Response />")
    with tenant_context(acme):
        assert not Message.objects.exists()
    assert [event.outcome for event in events(acme)] == ["received", "received"]
    assert processing_jobs(broker) == [repr((acme.pk,))]  # one job waits for the tenant, not one per message

    assert twilio_events_process(tenant_id=acme.pk) == 2  # what the job does
    with tenant_context(acme):
        assert list(Message.objects.order_by("created_at", "pk").values_list("body", flat=True)) == ["First", "Second"]
    assert [event.outcome for event in events(acme)] == ["stored", "stored"]
    assert twilio_events_process(tenant_id=acme.pk) == 0


def test_the_same_message_twice_is_stored_once(twilio, acme_sms, acme):
    fields = inbound_sms()
    assert twilio.post(MESSAGING, fields, deferred=False).status_code == 200
    assert twilio.post(MESSAGING, fields, deferred=False).status_code == 200
    assert twilio_events_process(tenant_id=acme.pk) == 2
    with tenant_context(acme):
        assert Message.objects.count() == 1
    assert [event.outcome for event in events(acme)] == ["stored", "duplicate"]


def test_a_sender_that_is_no_phone_number_is_refused_at_once_and_nothing_waits(twilio, acme_sms, acme, broker):
    response = twilio.post(MESSAGING, inbound_sms(sender="not-a-number"), deferred=False)
    assert response.status_code == 400
    assert "is not a phone number" in response.content.decode()
    [event] = events(acme)
    assert (event.outcome, event.body["From"]) == (InboundOutcome.MALFORMED, "not-a-number")
    assert "is not a phone number" in event.detail
    assert twilio_events_process(tenant_id=acme.pk) == 0
    assert processing_jobs(broker) == []


def test_a_forged_message_is_logged_as_rejected_and_never_stored(twilio, acme_sms, acme):
    assert twilio.post(MESSAGING, inbound_sms(), signature="forged", deferred=False).status_code == 403
    [event] = events(acme)
    assert event.outcome == InboundOutcome.BAD_SIGNATURE
    assert twilio_events_process(tenant_id=acme.pk) == 0
    with tenant_context(acme):
        assert not Message.objects.exists()


@pytest.fixture
def messages_saying_boom_fail():
    """A database fault for one message body: a trigger that raises on its INSERT (rolled back with
    the test), until `SET test.boom = 'mended'`."""
    with connection.as_table_owner(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.body = 'boom' AND current_setting('test.boom', true) IS DISTINCT FROM 'mended'"
            " THEN RAISE EXCEPTION 'disk on fire'; END IF; RETURN NEW; END $$;"
            " CREATE TRIGGER test_boom BEFORE INSERT ON conversations_message"
            " FOR EACH ROW EXECUTE FUNCTION test_boom();"
        )
    yield


def test_a_message_that_fails_to_store_is_retried_then_left_for_replay_and_others_are_stored(
    twilio, acme_sms, acme, messages_saying_boom_fail
):
    twilio.post(MESSAGING, inbound_sms(sender="+15550000001", body="boom"), deferred=False)
    twilio.post(MESSAGING, inbound_sms(sender="+15550000002", body="fine"), deferred=False)

    assert twilio_events_process(tenant_id=acme.pk) == 1  # the other one is stored
    failing, stored = events(acme)
    assert (failing.outcome, failing.attempts) == (InboundOutcome.RECEIVED, 1)
    assert "disk on fire" in failing.detail
    assert stored.outcome == InboundOutcome.STORED
    for _ in range(PROCESS_MAX_ATTEMPTS - 1):  # later jobs (the sweep enqueues them) try again
        assert twilio_events_process(tenant_id=acme.pk) == 0
    with tenant_context(acme):
        failing.refresh_from_db()
    assert (failing.outcome, failing.attempts) == (InboundOutcome.FAILED, PROCESS_MAX_ATTEMPTS)
    assert twilio_events_process(tenant_id=acme.pk) == 0  # no longer waiting

    with connection.cursor() as cursor:
        cursor.execute("SET test.boom = 'mended'")
    with tenant_context(acme):
        assert twilio_event_replay(event=failing, replayed_by="Sam") == InboundOutcome.STORED
        assert sorted(Message.objects.values_list("body", flat=True)) == ["boom", "fine"]


def test_waiting_messages_whose_job_was_lost_are_recovered_by_the_sweep(twilio, acme_sms, globex_sms, acme, broker):
    # No on-commit callback runs here: the webhook's enqueue is lost, as in a broker outage.
    twilio.post(MESSAGING, inbound_sms(body="Lost"), deferred=False)
    twilio.post(MESSAGING, inbound_sms(body="Just now"), deferred=False)
    lost, _just_now = events(acme)
    with tenant_context(acme):
        InboundEvent.objects.filter(pk=lost.pk).update(received_at=timezone.now() - timedelta(seconds=4))
    assert processing_jobs(broker) == []
    assert inbound_events_recover() == 1
    assert processing_jobs(broker) == [repr((acme.pk,))]
    assert twilio_events_process(tenant_id=acme.pk) == 2  # the job takes the recent one along
    assert inbound_events_recover() == 0


@pytest.mark.django_db(transaction=True)
def test_two_jobs_at_once_store_one_senders_messages_once_and_in_order(acme_sms, acme):
    signer = TwilioSigner(Client())
    bodies = [f"part {n}" for n in range(30)]
    for body in bodies:
        assert signer.post(MESSAGING, inbound_sms(body=body), deferred=False).status_code == 200
    barrier, counts = threading.Barrier(2), []

    def job():
        try:
            barrier.wait(timeout=10)
            counts.append(twilio_events_process(tenant_id=acme.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=job) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(counts) == len(bodies)
    with dangerously_all_tenants():
        assert list(Message.objects.order_by("created_at", "pk").values_list("body", flat=True)) == bodies
        assert {event.outcome for event in InboundEvent.objects.all()} == {InboundOutcome.STORED}


def test_a_new_auth_token_works_at_once_though_the_endpoint_was_read_before(twilio, acme_sms, acme):
    from channels_inbound.models import ChannelEndpoint
    from contactcenter.credentials import encrypt_secret

    assert twilio.post(MESSAGING, inbound_sms(body="before")).status_code == 200  # the endpoint is now kept
    # Rotated by another process (no save here, so nothing in this process hears of it).
    with tenant_context(acme):
        ChannelEndpoint.objects.filter(pk=acme_sms.pk).update(auth_token_encrypted=encrypt_secret("rotated-token"))
    assert twilio.post(MESSAGING, inbound_sms(body="after"), token="rotated-token").status_code == 200
    assert twilio.post(MESSAGING, inbound_sms(body="old token")).status_code == 403

    with tenant_context(acme):
        acme_sms.refresh_from_db()
        acme_sms.set_auth_token("saved-here")
        acme_sms.save()  # saved in this process: forgotten at once, the old token refused at once
    assert twilio.post(MESSAGING, inbound_sms(body="stale"), token="rotated-token").status_code == 403
    assert twilio.post(MESSAGING, inbound_sms(body="fresh"), token="saved-here").status_code == 200
    with tenant_context(acme):
        assert sorted(Message.objects.values_list("body", flat=True)) == ["after", "before", "fresh"]
