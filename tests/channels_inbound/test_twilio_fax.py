"""Inbound faxes: a message on a fax task, the PDF fetched and attached once."""

import pytest

from channels_inbound.models import Channel, InboundMedia, MediaFetchStatus
from channels_inbound.twilio.services import inbound_media_fetch
from contactcenter.tenancy import tenant_context
from conversations.models import Message
from tasks.models import Queue, Task, TaskStatus
from tests.channels_inbound.conftest import ACME_SID, ACME_TOKEN, GLOBEX_TOKEN, make_endpoint

FAX = "/webhooks/twilio/fax"
ACME_FAX = "+15005550021"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"


@pytest.fixture
def acme_fax(acme):
    make_endpoint(acme, address=ACME_FAX, account_sid=ACME_SID, token=ACME_TOKEN, channel=Channel.FAX)
    with tenant_context(acme):
        return Queue.objects.create(tenant=acme, name="Back office", channels=["fax", "email"])


def inbound_fax(fake_twilio, *, to=ACME_FAX, **extra) -> dict:
    sid, url = fake_twilio.add_fax_media(ACME_SID, PDF)
    return {"FaxSid": sid, "AccountSid": ACME_SID, "From": "+15551230009", "To": to, "MediaUrl": url,
            "NumPages": "3", "FaxStatus": "received", "ApiVersion": "v1", **extra}  # fmt: skip


def stored(acme):
    with tenant_context(acme):
        return (
            list(Message.objects.select_related("conversation").order_by("pk")),
            list(InboundMedia.objects.select_related("endpoint").order_by("pk")),
            list(Task.objects.order_by("pk")),
        )


def test_a_received_fax_becomes_a_message_on_a_fax_task_and_its_pdf_an_attachment(twilio, fake_twilio, acme_fax, acme):
    fields = inbound_fax(fake_twilio)
    response = twilio.post(FAX, fields)
    assert response.status_code == 200
    assert response.content.decode().strip().endswith("<Response />")

    [message], [media], [task] = stored(acme)
    assert (message.body, message.provider_message_id) == ("Fax received (3 pages)", fields["FaxSid"])
    assert message.conversation.channel == Channel.FAX
    assert (media.status, media.url, media.declared_content_type) == (
        MediaFetchStatus.PENDING, fields["MediaUrl"], "application/pdf",
    )  # fmt: skip
    assert (task.conversation_id, task.channel, task.queue_id, task.status) == (
        message.conversation_id, "fax", acme_fax.pk, TaskStatus.PENDING,
    )  # fmt: skip

    with tenant_context(acme):
        inbound_media_fetch(media=media)
        fetched = InboundMedia.objects.select_related("attachment").get(pk=media.pk)
        assert fetched.status == MediaFetchStatus.STORED
        assert (fetched.attachment.content_type, fetched.attachment.message_id) == ("application/pdf", message.pk)
        assert fetched.attachment.file.name.endswith(".pdf")
        with fetched.attachment.file.open("rb") as pdf:
            assert pdf.read() == PDF


def test_the_same_fax_delivered_twice_is_stored_once(twilio, fake_twilio, acme_fax, acme):
    fields = inbound_fax(fake_twilio)
    assert [twilio.post(FAX, fields).status_code for _ in range(2)] == [200, 200]
    messages, media, tasks = stored(acme)
    assert (len(messages), len(media), len(tasks)) == (1, 1, 1)


def test_a_second_fax_from_the_same_sender_joins_the_open_task(twilio, fake_twilio, acme_fax, acme):
    twilio.post(FAX, inbound_fax(fake_twilio))
    twilio.post(FAX, inbound_fax(fake_twilio, NumPages="1"))
    messages, media, tasks = stored(acme)
    assert [message.body for message in messages] == ["Fax received (3 pages)", "Fax received (1 page)"]
    assert (len(media), len(tasks)) == (2, 1)


def test_a_fax_that_was_not_received_stores_nothing(twilio, fake_twilio, acme_fax, acme):
    fields = inbound_fax(fake_twilio, FaxStatus="failed", MediaUrl="")
    assert twilio.post(FAX, fields).status_code == 200
    assert stored(acme) == ([], [], [])


@pytest.mark.parametrize(
    "bad_fields, reason",
    [
        ({"FaxSid": "FX123"}, "FaxSid"),
        ({"MediaUrl": ""}, "a received fax needs its MediaUrl"),
        ({"MediaUrl": "file:///etc/passwd"}, "MediaUrl"),
        ({"NumPages": "many"}, "NumPages"),
    ],
    ids=["bad-sid", "no-document", "not-http", "pages-not-a-number"],
)
def test_malformed_faxes_are_400_with_the_reason(twilio, fake_twilio, acme_fax, acme, bad_fields, reason):
    response = twilio.post(FAX, inbound_fax(fake_twilio, **bad_fields))
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert stored(acme) == ([], [], [])


def test_a_fax_to_a_number_not_set_up_for_faxes_is_refused(twilio, fake_twilio, acme_fax, acme_sms, acme):
    response = twilio.post(FAX, inbound_fax(fake_twilio, to=acme_sms.address))
    assert response.status_code == 400
    assert "not for faxes" in response.content.decode()
    assert stored(acme) == ([], [], [])


def test_globex_cannot_sign_for_acmes_fax_number(twilio, fake_twilio, acme_fax, globex_sms, acme):
    assert twilio.post(FAX, inbound_fax(fake_twilio), token=GLOBEX_TOKEN).status_code == 403
    assert twilio.post(FAX, inbound_fax(fake_twilio, to="+15009999999")).status_code == 404
    assert stored(acme) == ([], [], [])
