"""What a Twilio webhook stores, through the conversation services (one transaction each), and the
fetching of the media files its messages announce."""

import functools
import mimetypes
from datetime import timedelta

import requests
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from channels_inbound.models import Channel, ChannelEndpoint, InboundMedia, MediaFetchStatus
from channels_inbound.selectors import inbound_media_pending_before
from channels_inbound.services import inbound_conversation_route
from conversations.identities import normalise_identity
from conversations.models import IdentityKind, Via
from conversations.selectors import message_by_provider_id
from conversations.services import (
    attachment_add,
    contact_find_or_create,
    conversation_find_or_start,
    message_append_inbound,
    message_delivery_update,
)

IDENTITY_KIND_OF_CHANNEL = {
    Channel.SMS: IdentityKind.PHONE,
    Channel.WHATSAPP: IdentityKind.WHATSAPP,
    Channel.MESSENGER: IdentityKind.MESSENGER,
}
# Twilio's message statuses, as the delivery statuses we keep; the others say nothing new.
DELIVERY_STATUS_OF_TWILIO_STATUS = {
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "read": "read",
}


def twilio_inbound_message_check(endpoint: ChannelEndpoint, fields: dict) -> None:
    """What the webhook checks before it answers, so that a message its job cannot store is refused
    with 400 and the reason (InvalidIdentity), not accepted and then dropped."""
    normalise_identity(IDENTITY_KIND_OF_CHANNEL[endpoint.channel], fields["From"])


def twilio_inbound_message_store(endpoint: ChannelEndpoint, fields: dict) -> bool:
    """A customer's SMS, WhatsApp or Messenger message: find or create the contact and the live
    conversation, append the message (idempotent on MessageSid), announce its media and queue the
    conversation for an agent (inbound_conversation_route). Returns whether it was new."""
    contact, _ = contact_find_or_create(
        kind=IDENTITY_KIND_OF_CHANNEL[endpoint.channel], value=fields["From"], name=fields.get("ProfileName") or ""
    )
    conversation, _ = conversation_find_or_start(contact=contact, channel=endpoint.channel, via=Via.WEBHOOK)
    message, created = message_append_inbound(
        conversation=conversation, body=fields.get("Body") or "", provider_message_id=fields["MessageSid"]
    )
    if created:
        inbound_media_announce(message=message, endpoint=endpoint, media=fields.get("media", []))
        inbound_conversation_route(endpoint=endpoint, conversation=conversation)
    return created


MEDIA_MAX_BYTES = 25 * 1024 * 1024
MEDIA_TIMEOUT_SECONDS = 20


class MediaFetchFailed(Exception):
    def __init__(self, reason: str, *, permanent: bool):
        super().__init__(reason)
        self.permanent = permanent


def inbound_media_announce(*, message, endpoint: ChannelEndpoint, media: list[dict]) -> list[InboundMedia]:
    """Record each announced file as pending and enqueue its fetch after commit.

    Runs in the webhook's transaction, so the rows exist exactly when the message does.
    """
    from channels_inbound import jobs

    rows = [
        InboundMedia.objects.create(
            tenant_id=message.tenant_id, message=message, endpoint=endpoint, url=item["url"],
            declared_content_type=item["content_type"],
        )  # fmt: skip
        for item in media
    ]
    for row in rows:
        # Bound now, not when the lambda runs: a closure would see the loop's last row for every file.
        # Robust: the message is stored either way; a broker outage must not turn the webhook into a
        # 500 for a message we have (the row stays pending; inbound_media_recover enqueues it again).
        transaction.on_commit(functools.partial(jobs.fetch_inbound_media.delay, row.tenant_id, row.pk), robust=True)
    return rows


# A fetch job and all its retries (2 s … 32 s of backoff, plus the downloads) are over well within
# this; a file still pending after it lost its job.
MEDIA_PENDING_RECOVER_AFTER = timedelta(minutes=5)


def inbound_media_recover(*, now=None) -> int:
    """Enqueue the fetch of every announced file whose job was lost, once per
    MEDIA_PENDING_RECOVER_AFTER (a mark in the cache): the sweep `channels_inbound.jobs.recover_inbound_media`.
    inbound_media_fetch stores a file only while its row is pending, so a duplicate job is harmless.
    Returns how many were enqueued."""
    from channels_inbound import jobs  # jobs imports this module

    now = now or timezone.now()
    enqueued = 0
    for tenant_id, media_id, public_id in inbound_media_pending_before(created_before=now - MEDIA_PENDING_RECOVER_AFTER):
        seconds = int(MEDIA_PENDING_RECOVER_AFTER.total_seconds())
        if not cache.add(f"inbound-media-requeued:{public_id}", 1, timeout=seconds):
            continue
        jobs.fetch_inbound_media.delay(tenant_id, media_id)
        enqueued += 1
    return enqueued


def inbound_media_fetch(*, media: InboundMedia, final_attempt: bool = True) -> None:
    """Download one announced file and store it as an attachment of its message.

    The download runs outside any transaction (no row lock is held across a provider call); the
    result is then recorded under a lock on the media row, and only if it is still pending, so a
    duplicate job stores the file once. A permanent failure (4xx, too large), or any failure at the
    last attempt, marks the row failed with the reason; an earlier temporary failure raises
    MediaFetchFailed for the job to retry.
    """
    if media.status != MediaFetchStatus.PENDING:
        return
    InboundMedia.objects.filter(pk=media.pk).update(attempts=media.attempts + 1)
    try:
        content = _download(media)
    except MediaFetchFailed as failure:
        if failure.permanent or final_attempt:
            InboundMedia.objects.filter(pk=media.pk, status=MediaFetchStatus.PENDING).update(
                status=MediaFetchStatus.FAILED, last_error=str(failure)
            )
            return
        InboundMedia.objects.filter(pk=media.pk).update(last_error=str(failure))
        raise
    with transaction.atomic():
        locked = InboundMedia.objects.select_for_update().select_related("message").get(pk=media.pk)
        if locked.status != MediaFetchStatus.PENDING:
            return
        content_type = locked.declared_content_type.split(";")[0].strip().lower()
        extension = mimetypes.guess_extension(content_type) or ".bin"
        attachment = attachment_add(
            message=locked.message, filename=f"media-{locked.public_id}{extension}", content=content,
            content_type=content_type,
        )  # fmt: skip
        InboundMedia.objects.filter(pk=locked.pk).update(
            status=MediaFetchStatus.STORED, attachment=attachment, last_error=""
        )


def _download(media: InboundMedia) -> bytes:
    """GET the file with the endpoint's credentials (Twilio's media URLs require them), bounded in
    time and size. Twilio redirects to its storage; requests drops the credentials on that hop."""
    endpoint = media.endpoint
    auth = (endpoint.account_sid, endpoint.auth_token()) if endpoint is not None else None
    try:
        with requests.get(media.url, auth=auth, timeout=MEDIA_TIMEOUT_SECONDS, stream=True) as response:
            if response.status_code >= 500 or response.status_code == 429:
                raise MediaFetchFailed(f"the provider answered {response.status_code}", permanent=False)
            if response.status_code >= 400:
                raise MediaFetchFailed(f"the provider answered {response.status_code}", permanent=True)
            chunks, size = [], 0
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > MEDIA_MAX_BYTES:
                    raise MediaFetchFailed(f"larger than {MEDIA_MAX_BYTES // (1024 * 1024)} MB", permanent=True)
                chunks.append(chunk)
            return b"".join(chunks)
    except requests.RequestException as error:
        raise MediaFetchFailed(f"could not reach the provider: {type(error).__name__}", permanent=False) from error


def twilio_status_callback_store(endpoint: ChannelEndpoint, fields: dict) -> bool:
    """A delivery status for a message we sent; only ever moves the status forward.

    Returns whether the status changed (a late or repeated callback changes nothing). A callback for
    a message we do not know is recorded in the event log and otherwise ignored.
    """
    status = DELIVERY_STATUS_OF_TWILIO_STATUS.get(fields["MessageStatus"])
    message = message_by_provider_id(fields["MessageSid"])
    if status is None or message is None:
        return False
    return message_delivery_update(
        message=message,
        status=status,
        error_code=str(fields.get("ErrorCode") or ""),
        error_reason=fields.get("ErrorMessage") or "",
    )
