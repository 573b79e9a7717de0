"""The raw inbound event log, shared by every provider: what arrived, before it is processed."""

from channels_inbound.models import ChannelEndpoint, InboundEvent, UnroutedInboundEvent

# Headers that help an operator understand or replay a request. Authorization, cookies and the
# signature itself are deliberately absent: credentials never reach the event log.
LOGGED_HEADERS = (
    "Content-Type", "User-Agent", "Origin", "I-Twilio-Idempotency-Token", "X-Forwarded-For", "X-Forwarded-Proto",
)


def logged_headers(request) -> dict:
    kept = {name: request.headers[name][:500] for name in LOGGED_HEADERS if name in request.headers}
    kept["signature_present"] = "X-Twilio-Signature" in request.headers
    return kept


def inbound_event_record(*, request, endpoint: ChannelEndpoint, kind: str, body: dict) -> InboundEvent:
    """Write what arrived at one of the tenant's endpoints. Runs inside the endpoint's tenant and
    commits on its own (no surrounding transaction), so it survives whatever processing does next."""
    return InboundEvent.objects.create(
        tenant_id=endpoint.tenant_id,
        endpoint=endpoint,
        provider=endpoint.provider,
        kind=kind,
        path=request.path[:255],
        headers=logged_headers(request),
        body=body,
        idempotency_key=request.headers.get("I-Twilio-Idempotency-Token", "")[:128],
    )


def inbound_event_finish(*, event: InboundEvent, outcome: str, detail: str = "") -> None:
    InboundEvent.objects.filter(pk=event.pk).update(outcome=outcome, detail=detail[:2000])


def unrouted_event_record(*, request, provider: str, kind: str, body: dict, detail: str) -> None:
    """Write a request that matched no endpoint (so no tenant), for the platform operator."""
    UnroutedInboundEvent.objects.create(
        provider=provider, kind=kind, path=request.path[:255], headers=logged_headers(request), body=body, detail=detail
    )
