"""The path every Twilio webhook takes, in this order:

1. find the endpoint the request is addressed to (404 when none: it belongs to no tenant);
2. write the raw request to the tenant's inbound event log, before anything can fail;
3. check the signature with that endpoint's auth token (403, nothing stored);
4. validate the fields (400 with the reason, nothing stored; likewise a domain rule the content breaks);
5. store it through the domain services in one transaction (idempotent on the provider's id);
6. record the outcome on the event.

Any exception in 5 propagates as a 500 so Twilio retries; the event row keeps what arrived.
"""

from collections.abc import Callable
from contextlib import suppress

from django import forms
from django.db import transaction
from django.http import HttpResponse

from channels_inbound.models import ChannelEndpoint, InboundOutcome, Provider
from channels_inbound.selectors import twilio_endpoint_for
from channels_inbound.services import inbound_event_finish, inbound_event_record, unrouted_event_record
from channels_inbound.twilio.forms import first_error
from channels_inbound.twilio.signature import form_fields_as_signed, twilio_signature_is_valid
from contactcenter.errors import DomainError
from contactcenter.tenancy import tenant_context

# A store function gets the endpoint and the cleaned fields, runs inside the endpoint's tenant and
# a transaction, and says whether it stored something new (False: a duplicate it already had).
StoreFunction = Callable[[ChannelEndpoint, dict], bool]


def twilio_webhook_receive(
    request,
    *,
    kind: str,
    address_field: str,
    form_class: type[forms.Form],
    store: StoreFunction,
    success: Callable[[], HttpResponse],
) -> HttpResponse:
    fields = form_fields_as_signed(request)
    address, account_sid = request.POST.get(address_field, ""), request.POST.get("AccountSid", "")
    if not address or not account_sid:
        unrouted_event_record(
            request=request, provider=Provider.TWILIO, kind=kind, body=fields, detail=f"{address_field} or AccountSid missing"
        )
        return _plain(400, f"{address_field} and AccountSid are required")

    endpoint = twilio_endpoint_for(address=address, account_sid=account_sid)
    if endpoint is None:
        unrouted_event_record(
            request=request, provider=Provider.TWILIO, kind=kind, body=fields, detail=f"no endpoint for {address}"
        )
        return _plain(404, f"No Switchboard endpoint for {address}")

    with tenant_context(endpoint.tenant_id):
        event = inbound_event_record(request=request, endpoint=endpoint, kind=kind, body=fields)
        if not twilio_signature_is_valid(request, endpoint.auth_token()):
            inbound_event_finish(event=event, outcome=InboundOutcome.BAD_SIGNATURE, detail="X-Twilio-Signature missing or wrong")
            return _plain(403, "Invalid Twilio signature")

        form = form_class(request.POST)
        if not form.is_valid():
            reason = first_error(form)
            inbound_event_finish(event=event, outcome=InboundOutcome.MALFORMED, detail=reason)
            return _plain(400, reason)

        try:
            with transaction.atomic():
                stored_something_new = store(endpoint, form.cleaned_data)
        except DomainError as error:
            # The request is well-formed but breaks a rule (a From that is no phone number, say):
            # retrying will not help, so 400 with the reason; the transaction rolled back.
            inbound_event_finish(event=event, outcome=InboundOutcome.MALFORMED, detail=str(error))
            return _plain(400, str(error))
        except Exception as error:
            # Record why, unless the database itself is what failed; either way answer 500 so
            # Twilio retries.
            with suppress(Exception):
                inbound_event_finish(event=event, outcome=InboundOutcome.FAILED, detail=f"{type(error).__name__}: {error}")
            raise
        inbound_event_finish(event=event, outcome=InboundOutcome.STORED if stored_something_new else InboundOutcome.DUPLICATE)
        return success()


def _plain(status: int, text: str) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
