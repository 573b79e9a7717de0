"""Replaying what arrived: an operator's second try at a Twilio request that failed while being stored.

Only a request that passed its signature check and then failed in our code or database (outcome
`failed`) can be replayed: the event log holds its fields exactly as Twilio signed them. A rejected
request (bad signature, malformed, unknown number) stays rejected. A call cannot be replayed: its
answer was owed to a caller who is gone. The store functions are idempotent on the provider's ids,
so replaying something that was in fact stored stores nothing twice.
"""

from django.db import transaction
from django.http import QueryDict

from channels_inbound.models import InboundEvent, InboundOutcome
from channels_inbound.services import inbound_event_finish
from channels_inbound.twilio.fax import twilio_inbound_fax_store
from channels_inbound.twilio.forms import (
    CallStatusCallbackForm,
    FaxWebhookForm,
    MessagingWebhookForm,
    StatusCallbackForm,
    first_error,
)
from channels_inbound.twilio.services import twilio_inbound_message_store, twilio_status_callback_store
from channels_inbound.twilio.voice import voice_call_status_update
from contactcenter.errors import DomainError

REPLAYABLE = {
    "messaging": (MessagingWebhookForm, twilio_inbound_message_store),
    "status": (StatusCallbackForm, twilio_status_callback_store),
    "voice_status": (CallStatusCallbackForm, voice_call_status_update),
    "fax": (FaxWebhookForm, twilio_inbound_fax_store),
}


class ReplayNotPossible(DomainError):
    pass


def twilio_event_replay(*, event: InboundEvent, replayed_by: str) -> str:
    """Store a failed event's request again; returns the new outcome. Runs inside the event's tenant."""
    if event.outcome != InboundOutcome.FAILED:
        raise ReplayNotPossible("Only a request that failed while being stored can be replayed.")
    if event.kind not in REPLAYABLE or event.endpoint is None:
        raise ReplayNotPossible(f"A {event.kind} request cannot be replayed.")
    outcome, detail = twilio_event_store(event)
    inbound_event_finish(event=event, outcome=outcome, detail=f"Replayed by {replayed_by}. {detail}".strip())
    return outcome


def twilio_event_store(event: InboundEvent) -> tuple[str, str]:
    """Store a logged request through its kind's store function, in a transaction (a savepoint
    when one is open): (outcome, detail) to record on the event. Shared by replay and by the job
    that stores deferred kinds (channels_inbound.twilio.intake). Rule breaks come back as
    `malformed` with the reason; any other exception propagates, with nothing stored."""
    form_class, store = REPLAYABLE[event.kind]
    fields = QueryDict(mutable=True)
    for name, value in event.body.items():
        fields.setlist(name, value if isinstance(value, list) else [value])
    form = form_class(fields)
    if not form.is_valid():
        return InboundOutcome.MALFORMED, first_error(form)
    try:
        with transaction.atomic():
            stored_something_new = store(event.endpoint, form.cleaned_data)
    except DomainError as error:
        return InboundOutcome.MALFORMED, str(error)
    return (InboundOutcome.STORED if stored_something_new else InboundOutcome.DUPLICATE), ""
