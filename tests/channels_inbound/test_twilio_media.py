"""Media announced by inbound messages is fetched with retries, stored once, and never silently lost."""

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from channels_inbound.models import InboundMedia, MediaFetchStatus
from channels_inbound.twilio.services import MediaFetchFailed, inbound_media_fetch, inbound_media_recover
from contactcenter.tenancy import tenant_context
from tests.channels_inbound.conftest import ACME_SID, inbound_sms

MESSAGING = "/webhooks/twilio/messaging"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def announce(twilio, acme, urls_and_types) -> list[InboundMedia]:
    fields = inbound_sms(body="", NumMedia=str(len(urls_and_types)))
    for index, (url, content_type) in enumerate(urls_and_types):
        fields[f"MediaUrl{index}"], fields[f"MediaContentType{index}"] = url, content_type
    assert twilio.post(MESSAGING, fields).status_code == 200
    with tenant_context(acme):
        return list(InboundMedia.objects.select_related("endpoint", "message").order_by("pk"))


def fetch(acme, media, **kwargs) -> InboundMedia:
    with tenant_context(acme):
        inbound_media_fetch(media=InboundMedia.objects.select_related("endpoint").get(pk=media.pk), **kwargs)
        return InboundMedia.objects.select_related("attachment").get(pk=media.pk)


def test_announced_media_is_recorded_with_the_message_and_stored_as_an_attachment(twilio, fake_twilio, acme_sms, acme):
    url = fake_twilio.add_media(ACME_SID, "image/png", PNG)
    [media] = announce(twilio, acme, [(url, "image/png")])
    assert media.status == MediaFetchStatus.PENDING and media.message.body == ""

    fetched = fetch(acme, media)
    assert fetched.status == MediaFetchStatus.STORED
    assert fetched.attachment.content_type == "image/png"
    assert fetched.attachment.size == len(PNG)
    with fetched.attachment.file.open("rb") as stored:
        assert stored.read() == PNG
    assert fetched.attachment.message_id == media.message_id


def test_a_temporary_failure_is_retried_and_the_file_stored_once(twilio, fake_twilio, acme_sms, acme):
    url = fake_twilio.add_media(ACME_SID, "image/png", PNG)
    [media] = announce(twilio, acme, [(url, "image/png")])
    fake_twilio.fail_next(503, 20503, "Service unavailable")
    with pytest.raises(MediaFetchFailed):
        fetch(acme, media, final_attempt=False)
    assert fetch(acme, media).status == MediaFetchStatus.STORED
    again = fetch(acme, media)  # a duplicate job
    with tenant_context(acme):
        assert again.message.attachments.count() == 1
    assert again.attempts == 2


def test_a_file_that_cannot_be_fetched_stays_visible_as_failed(twilio, fake_twilio, acme_sms, acme):
    missing = fake_twilio.base_url + f"/2010-04-01/Accounts/{ACME_SID}/Messages/MM{'0' * 32}/Media/ME{'0' * 32}"
    [media] = announce(twilio, acme, [(missing, "image/jpeg")])
    failed = fetch(acme, media, final_attempt=False)  # 404 is permanent: no retry needed
    assert failed.status == MediaFetchStatus.FAILED
    assert "404" in failed.last_error
    assert failed.attachment is None


def test_the_last_attempt_of_a_temporary_failure_is_recorded(twilio, fake_twilio, acme_sms, acme):
    url = fake_twilio.add_media(ACME_SID, "image/png", PNG)
    [media] = announce(twilio, acme, [(url, "image/png")])
    fake_twilio.fail_next(503, 20503, "Service unavailable")
    failed = fetch(acme, media, final_attempt=True)
    assert failed.status == MediaFetchStatus.FAILED and "503" in failed.last_error


def test_each_file_of_one_message_gets_a_fetch_job_of_its_own(
    twilio, fake_twilio, acme_sms, acme, broker, django_capture_on_commit_callbacks
):
    # Two files in one MMS: a callback closing over the loop variable enqueued the last one twice.
    first = fake_twilio.add_media(ACME_SID, "image/png", PNG)
    second = fake_twilio.add_media(ACME_SID, "image/png", PNG + b"2")
    with django_capture_on_commit_callbacks(execute=True):
        media = announce(twilio, acme, [(first, "image/png"), (second, "image/png")])
    jobs = [json.loads(raw)["headers"] for raw in broker.lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1)]
    fetches = sorted(job["argsrepr"] for job in jobs if job["task"] == "channels_inbound.jobs.fetch_inbound_media")
    assert fetches == sorted(repr((acme.pk, row.pk)) for row in media)


def test_a_file_whose_fetch_job_was_lost_is_fetched_after_all_once(twilio, fake_twilio, acme_sms, acme, broker):
    # The webhook's enqueue is dropped (the on-commit callbacks never run: a broker outage), as for a
    # job lost with a killed worker; the recovery sweep enqueues the fetch of what stayed pending.
    lost, fresh = (fake_twilio.add_media(ACME_SID, "image/png", PNG + bytes([n])) for n in range(2))
    old_media, _new_media = announce(twilio, acme, [(lost, "image/png"), (fresh, "image/png")])
    with tenant_context(acme):
        InboundMedia.objects.filter(pk=old_media.pk).update(created_at=timezone.now() - timedelta(minutes=6))

    def fetch_jobs():
        jobs = [json.loads(raw)["headers"] for raw in broker.lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1)]
        return [job["argsrepr"] for job in jobs if job["task"] == "channels_inbound.jobs.fetch_inbound_media"]

    assert fetch_jobs() == []
    assert inbound_media_recover() == 1
    assert fetch_jobs() == [repr((acme.pk, old_media.pk))]  # not the one announced a moment ago
    assert inbound_media_recover() == 0  # enqueued once per period, not at every sweep
    assert fetch(acme, old_media).status == MediaFetchStatus.STORED  # what the job does
    assert inbound_media_recover() == 0
