"""Celery jobs of the channels: each fetches, calls one service, and owns only its retry policy."""

from celery import shared_task

from channels_inbound.models import InboundMedia
from channels_inbound.twilio.intake import inbound_events_recover, twilio_events_process
from channels_inbound.twilio.services import MediaFetchFailed, inbound_media_fetch, inbound_media_recover
from contactcenter.tenancy import tenant_context

MEDIA_FETCH_MAX_RETRIES = 5


@shared_task(bind=True, ignore_result=True, max_retries=MEDIA_FETCH_MAX_RETRIES, acks_late=True, reject_on_worker_lost=True)
def fetch_inbound_media(self, tenant_id: int, media_id: int) -> None:
    """Fetch one announced media file; temporary failures retry with backoff (2 s … 32 s).

    acks_late is safe: the service stores a file only while its row is still pending.
    """
    with tenant_context(tenant_id):
        media = InboundMedia.objects.select_related("endpoint").filter(pk=media_id).first()
        if media is None:
            return
        try:
            inbound_media_fetch(media=media, final_attempt=self.request.retries >= self.max_retries)
        except MediaFetchFailed as failure:
            raise self.retry(exc=failure, countdown=2 ** (self.request.retries + 1)) from failure


@shared_task(ignore_result=True)
def recover_inbound_media() -> int:
    """Sweep (every minute): announced files whose fetch job was lost are fetched after all
    (services.inbound_media_recover)."""
    return inbound_media_recover()



@shared_task(ignore_result=True)
def process_inbound_events(tenant_id: int) -> int:
    """Store the tenant's inbound messages that were answered and logged but not yet stored
    (intake.twilio_events_process). Enqueued by each webhook, at most one waiting per tenant."""
    return twilio_events_process(tenant_id=tenant_id)


@shared_task(ignore_result=True)
def recover_inbound_events() -> int:
    """Sweep (every 2 s): events whose processing job was lost or failed are processed after all
    (intake.inbound_events_recover)."""
    return inbound_events_recover()
