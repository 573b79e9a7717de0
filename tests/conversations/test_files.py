"""Files: told by their bytes, checked against what each channel carries, and a Retry for failed sends."""

import pytest

from conversations.errors import MessageNotAllowed
from conversations.files import AttachmentNotAllowed, outbound_file_check, sniff_content_type
from conversations.models import DeliveryStatus, Message
from conversations.services import message_delivery_retry, message_delivery_update, message_send_reply
from tests.conversations.conftest import snapshot
from tests.conversations.test_services import enqueued_jobs

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PDF = b"%PDF-1.7\n" + b"x" * 32
HTML = b"<html><script>alert(1)</script></html>"
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 "


@pytest.mark.parametrize(
    "content, expected",
    [(PNG, ("image/png", "png")), (PDF, ("application/pdf", "pdf")), (WEBP, ("image/webp", "webp")), (HTML, None), (b"", None)],
    ids=["png", "pdf", "webp", "html", "empty"],
)
def test_the_bytes_say_what_a_file_is(content, expected):
    assert sniff_content_type(content) == expected


@pytest.mark.parametrize(
    "channel, name, content, allowed",
    [
        ("sms", "photo.png", PNG, True),
        ("sms", "invoice.pdf", PDF, False),  # SMS carries images only
        ("whatsapp", "invoice.pdf", PDF, True),
        ("webchat", "invoice.pdf", PDF, True),
        ("sms", "photo.png", HTML, False),  # a page dressed as an image
        ("voice", "photo.png", PNG, False),
        ("sms", "huge.png", PNG + b"\x00" * (5 * 1024 * 1024), False),
    ],
    ids=["sms-image", "sms-pdf", "whatsapp-pdf", "webchat-pdf", "disguised-html", "voice", "too-large"],
)
def test_each_channel_takes_what_it_can_deliver(channel, name, content, allowed):
    if allowed:
        assert outbound_file_check(channel=channel, filename=name, content=content).startswith(("image/", "application/"))
    else:
        with pytest.raises(AttachmentNotAllowed, match="cannot be sent|too large"):
            outbound_file_check(channel=channel, filename=name, content=content)


def test_a_reply_with_an_image_stores_it_on_the_message(world):
    message = message_send_reply(conversation=world.live, author=world.agent, body="", files=[("photo.png", PNG)])
    [attachment] = message.attachments.all()
    assert (attachment.filename, attachment.content_type, attachment.size) == ("photo.png", "image/png", len(PNG))
    assert message.delivery_status == DeliveryStatus.QUEUED


def test_a_reply_with_a_file_the_channel_cannot_carry_writes_nothing(world):
    before = snapshot()
    with pytest.raises(AttachmentNotAllowed, match="takes images"):
        message_send_reply(conversation=world.live, author=world.agent, body="see attached", files=[("invoice.pdf", PDF)])
    assert snapshot() == before


def test_retry_queues_a_failed_message_again_and_nothing_else(world, broker, django_capture_on_commit_callbacks):
    message = message_send_reply(conversation=world.live, author=world.agent, body="Hello")
    with pytest.raises(MessageNotAllowed, match="Only a message that failed"):
        message_delivery_retry(message=message, actor=world.agent)
    message_delivery_update(message=message, status=DeliveryStatus.FAILED, error_code="30003", error_reason="Unreachable")

    with django_capture_on_commit_callbacks(execute=True):
        message_delivery_retry(message=message, actor=world.agent)
    stored = Message.objects.get(pk=message.pk)
    assert (stored.delivery_status, stored.error_code, stored.error_reason, stored.send_claimed_at) == ("queued", "", "", None)
    assert enqueued_jobs(broker) == [("conversations.jobs.deliver_outbound_message", f"[{message.tenant_id}, {message.pk}]")]
