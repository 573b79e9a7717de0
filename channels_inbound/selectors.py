"""Reads of channel endpoints."""

import time

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from channels_inbound.models import (
    ChannelEndpoint,
    InboundEvent,
    InboundMedia,
    InboundOutcome,
    MediaFetchStatus,
    Provider,
)
from contactcenter.tenancy import dangerously_all_tenants

# Endpoints found by webhooks, kept in this process for a few seconds: (address, account sid) ->
# (when read, endpoint). Reading one cost two round trips per webhook (the query and switching the
# connection to all tenants and back). A change saved in this process forgets it at once; other
# processes see it within ENDPOINT_CACHE_SECONDS, and a signature that fails against a kept
# endpoint is checked again against a fresh read (the intake), so a new auth token works at once.
ENDPOINT_CACHE_SECONDS = 5.0
ENDPOINT_CACHE_MAX = 10_000
_endpoints_read: dict[tuple[str, str], tuple[float, ChannelEndpoint]] = {}


def twilio_endpoint_for(*, address: str, account_sid: str, fresh: bool = False) -> ChannelEndpoint | None:
    """The active Twilio endpoint for `address` under `account_sid`, in whichever tenant owns it;
    as read within the last ENDPOINT_CACHE_SECONDS unless `fresh`.

    Crosses tenants on purpose: a webhook is how we learn the tenant. Safe because the address is
    unique across tenants and the caller must then prove the request with this endpoint's own auth
    token before anything is stored.
    """
    key, now = (address, account_sid), time.monotonic()
    kept = _endpoints_read.get(key)
    if kept is not None and not fresh and now - kept[0] < ENDPOINT_CACHE_SECONDS:
        return kept[1]
    with dangerously_all_tenants():
        endpoint = (
            ChannelEndpoint.objects.filter(
                provider=Provider.TWILIO, address=address, account_sid=account_sid, is_active=True
            )
            .select_related("tenant")
            .first()
        )
    if endpoint is None:
        _endpoints_read.pop(key, None)
        return None
    if len(_endpoints_read) >= ENDPOINT_CACHE_MAX:
        _endpoints_read.clear()
    _endpoints_read[key] = (now, endpoint)
    return endpoint


@receiver([post_save, post_delete], sender=ChannelEndpoint)
def _endpoint_changed(**kwargs) -> None:
    _endpoints_read.clear()


def twilio_endpoint_for_conversation(conversation) -> ChannelEndpoint | None:
    """The tenant's active Twilio endpoint on the conversation's channel (runs inside the tenant)."""
    return (
        ChannelEndpoint.objects.filter(provider=Provider.TWILIO, channel=conversation.channel, is_active=True)
        .order_by("created_at", "pk")
        .first()
    )


def contact_address_on_channel(contact, channel: str) -> str | None:
    """Where to write to `contact` on `channel`: their phone number (SMS and WhatsApp are the same
    number) or their Messenger id."""
    from conversations.identities import EQUIVALENT_IDENTITY_KINDS
    from conversations.models import ContactIdentity

    kind = {"sms": "phone", "whatsapp": "whatsapp", "messenger": "messenger"}.get(channel)
    if kind is None:
        return None
    kinds = EQUIVALENT_IDENTITY_KINDS.get(kind, (kind,))
    identity = ContactIdentity.objects.filter(contact=contact, kind__in=kinds).order_by("pk").first()
    return identity.value if identity else None


def queue_for_inbound(endpoint: ChannelEndpoint, channel: str):
    """Where new work from `endpoint` is queued: its default queue, else the tenant's oldest queue
    that takes the channel (runs inside the tenant)."""
    from tasks.models import Queue

    if endpoint.default_queue_id:
        return endpoint.default_queue
    return next((queue for queue in Queue.objects.order_by("created_at", "pk") if queue.takes(channel)), None)


MEDIA_RECOVERY_BATCH = 500


def inbound_media_pending_before(*, created_before) -> list[tuple[int, int, str]]:
    """(tenant id, media id, public id) of announced files still pending that were announced before
    `created_before`: their fetch job was lost (a broker outage at the enqueue, a worker killed). Across
    tenants (a system sweep; ids only), oldest first, at most MEDIA_RECOVERY_BATCH."""
    with dangerously_all_tenants():
        return list(
            InboundMedia.objects.filter(status=MediaFetchStatus.PENDING, created_at__lt=created_before)
            .order_by("created_at")
            .values_list("tenant_id", "pk", "public_id")[:MEDIA_RECOVERY_BATCH]
        )



def inbound_events_waiting(*, kinds, limit: int, excluding=()) -> list:
    """The tenant's events of `kinds` not yet stored, oldest first, with their endpoints (runs inside
    the tenant)."""
    return list(
        InboundEvent.objects.filter(outcome=InboundOutcome.RECEIVED, kind__in=kinds, provider=Provider.TWILIO)
        .exclude(pk__in=excluding)
        .select_related("endpoint")
        .order_by("received_at", "pk")[:limit]
    )


def tenants_with_inbound_events_waiting(*, kinds, received_before) -> list[int]:
    """Tenants with an event of `kinds` not stored since before `received_before` (across tenants:
    for the recovery sweep)."""
    with dangerously_all_tenants():
        return list(
            InboundEvent.objects.filter(
                outcome=InboundOutcome.RECEIVED, kind__in=kinds, provider=Provider.TWILIO, received_at__lt=received_before
            )
            .values_list("tenant_id", flat=True)
            .distinct()
        )
