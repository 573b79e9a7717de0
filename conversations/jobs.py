"""Celery jobs of conversations: each fetches, calls one service, and owns only its retry policy."""

from celery import shared_task

from contactcenter.tenancy import tenant_context
from conversations import selectors, services
from conversations.models import Message

DELIVERY_MAX_RETRIES = 5


@shared_task(
    bind=True, ignore_result=True, max_retries=DELIVERY_MAX_RETRIES, acks_late=True, reject_on_worker_lost=True
)
def deliver_outbound_message(self, tenant_id: int, message_id: int) -> None:
    """Send one queued outbound message. A temporary failure retries with exponential backoff
    (2, 4, 8, 16, 32 s); the last attempt records the failure on the message instead.

    acks_late is safe because message_deliver claims the message before sending it.
    """
    with tenant_context(tenant_id):
        message = Message.objects.filter(pk=message_id).select_related("conversation").first()
        if message is None:
            return
        try:
            services.message_deliver(message=message, final_attempt=self.request.retries >= self.max_retries)
        except Exception as error:
            raise self.retry(exc=error, countdown=2 ** (self.request.retries + 1)) from error


@shared_task(ignore_result=True)
def deliver_due_scheduled_messages() -> int:
    """Sweep: enqueue delivery of every scheduled message that is due. Idempotent (delivery claims
    each message), so it may run often and twice. Returns how many it enqueued."""
    due = selectors.scheduled_messages_due()
    for tenant_id, message_id in due:
        deliver_outbound_message.delay(tenant_id, message_id)
    return len(due)


@shared_task(ignore_result=True)
def recover_outbound_messages() -> dict[str, int]:
    """Sweep (every 10 s): queued messages whose delivery job was lost, or whose worker died
    mid-send, are sent once (services.outbound_messages_recover). Idempotent: it claims each message
    by compare-and-set, so a duplicate run, or one killed half-way, sends nothing twice."""
    return services.outbound_messages_recover()
