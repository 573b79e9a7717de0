"""What every provider shares: the raw inbound event log (what arrived, before it is processed) and
the routing of a conversation once a customer's message is stored."""

from channels_inbound.models import ChannelEndpoint, InboundEvent, InboundOutcome, UnroutedInboundEvent

# Headers that help an operator understand or replay a request. Authorization, cookies and the
# signature itself are deliberately absent: credentials never reach the event log.
LOGGED_HEADERS = (
    "Content-Type", "User-Agent", "Origin", "I-Twilio-Idempotency-Token", "X-Forwarded-For", "X-Forwarded-Proto",
)


def logged_headers(request) -> dict:
    kept = {name: request.headers[name][:500] for name in LOGGED_HEADERS if name in request.headers}
    kept["signature_present"] = "X-Twilio-Signature" in request.headers
    return kept


def inbound_event_record(
    *, request, endpoint: ChannelEndpoint, kind: str, body: dict, outcome: str = InboundOutcome.RECEIVED, detail: str = ""
) -> InboundEvent:
    """Write what arrived at one of the tenant's endpoints: its outcome when it was rejected, else
    `received` until it is stored. Runs inside the endpoint's tenant and commits on its own (no
    surrounding transaction), so it survives whatever processing does next."""
    return InboundEvent.objects.create(
        tenant_id=endpoint.tenant_id,
        endpoint=endpoint,
        provider=endpoint.provider,
        kind=kind,
        path=request.path[:255],
        headers=logged_headers(request),
        body=body,
        idempotency_key=request.headers.get("I-Twilio-Idempotency-Token", "")[:128],
        outcome=outcome,
        detail=detail[:2000],
    )


def inbound_event_finish(*, event: InboundEvent, outcome: str, detail: str = "") -> None:
    InboundEvent.objects.filter(pk=event.pk).update(outcome=outcome, detail=detail[:2000])


def unrouted_event_record(*, request, provider: str, kind: str, body: dict, detail: str) -> None:
    """Write a request that matched no endpoint (so no tenant), for the platform operator."""
    UnroutedInboundEvent.objects.create(
        provider=provider, kind=kind, path=request.path[:255], headers=logged_headers(request), body=body, detail=detail
    )


def inbound_conversation_route(*, endpoint: ChannelEndpoint, conversation) -> "Task | None":
    """After a customer's new message is stored, in the same transaction: the conversation's task in
    the endpoint's queue (created once; routing runs on commit), the response deadline for the
    customer's current wait, and escalation when they keep writing without a reply.

    Every channel calls this, so work is queued the same way whatever the customer used. Returns
    the task, or None when the tenant has no queue taking this channel (the conversation then
    waits, unrouted, for someone to pick it up), or when the message left the conversation resolved:
    it was the customer's rating (conversations.services.csat_reply_record), not new work.
    """
    from channels_inbound.selectors import queue_for_inbound
    from conversations.models import ConversationStatus
    from tasks.services import conversation_task_ensure
    from tasks.timers import follow_ups_escalate

    if conversation.status == ConversationStatus.RESOLVED:
        return None
    queue = queue_for_inbound(endpoint, conversation.channel)
    if queue is None:
        return None
    task = conversation_task_ensure(conversation=conversation, queue=queue)  # with its response deadline
    follow_ups_escalate(task=task, conversation=conversation)
    return task
