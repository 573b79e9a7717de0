"""The path every Twilio webhook takes, in this order:

1. find the endpoint the request is addressed to (404 when none: it belongs to no tenant);
2. check the signature with that endpoint's auth token (403) and validate the fields and what the
   content must be (400 with the reason);
3. write the request to the tenant's inbound event log, with its outcome when it was rejected;
4. store it through the domain services, idempotent on the provider's id, and record the outcome.

Step 4 runs in the request for most kinds: a call's TwiML depends on it, and a status or fax is
rare. An inbound message (DEFERRED_KINDS) is answered once its event row is committed, and a
Celery job builds the contact, conversation, message and task from that row
(`twilio_events_process`): the answer costs one INSERT instead of some forty statements, and
Twilio never waits on routing. The event row is the durable hand-off: a job lost with the broker
is made up by the sweep `recover_inbound_events`, and processing is idempotent on MessageSid.

In the request, any exception while storing propagates as a 500 so Twilio retries; the event row
keeps what arrived. In the job, a failure is retried a few times, then the event is marked failed
for an operator to replay (channels_inbound.twilio.replay).
"""

import functools
import logging
from collections.abc import Callable
from contextlib import suppress
from datetime import timedelta

from django import forms
from django.db import connection, transaction
from django.http import HttpResponse
from django.utils import timezone

from channels_inbound.models import ChannelEndpoint, InboundEvent, InboundOutcome, Provider
from channels_inbound.selectors import inbound_events_waiting, tenants_with_inbound_events_waiting, twilio_endpoint_for
from channels_inbound.services import inbound_event_finish, inbound_event_record, unrouted_event_record
from channels_inbound.twilio.forms import first_error
from channels_inbound.twilio.signature import form_fields_as_signed, twilio_signature_is_valid
from contactcenter.enqueue import enqueue_unless_waiting, waiting_mark_clear
from contactcenter.errors import DomainError
from contactcenter.tenancy import tenant_context

logger = logging.getLogger(__name__)

# A store function gets the endpoint and the cleaned fields, runs inside the endpoint's tenant and
# a transaction, and says whether it stored something new (False: a duplicate it already had).
StoreFunction = Callable[[ChannelEndpoint, dict], bool]
# A check function gets the same and raises DomainError for content no store could take.
CheckFunction = Callable[[ChannelEndpoint, dict], None]

# Kinds answered as soon as their event is logged, and stored by a job (the module's docstring).
DEFERRED_KINDS = ("messaging",)


def twilio_webhook_receive(
    request,
    *,
    kind: str,
    address_field: str,
    form_class: type[forms.Form],
    store: StoreFunction | None,
    success: Callable[[], HttpResponse],
    check: CheckFunction | None = None,
) -> HttpResponse:
    """Steps 1–4 of the module's docstring; `store` is None for a DEFERRED_KINDS kind."""
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

    signed = twilio_signature_is_valid(request, endpoint.auth_token())
    if not signed:
        # Perhaps signed with a token saved since this process read the endpoint: read it again.
        endpoint = twilio_endpoint_for(address=address, account_sid=account_sid, fresh=True) or endpoint
        signed = twilio_signature_is_valid(request, endpoint.auth_token())
    with tenant_context(endpoint.tenant_id):
        status, reason, form = _rejection(request, signed, endpoint, form_class, check)
        if status:
            outcome = InboundOutcome.BAD_SIGNATURE if status == 403 else InboundOutcome.MALFORMED
            inbound_event_record(request=request, endpoint=endpoint, kind=kind, body=fields, outcome=outcome, detail=reason)
            return _plain(status, reason)

        event = inbound_event_record(request=request, endpoint=endpoint, kind=kind, body=fields)
        if store is None:
            transaction.on_commit(functools.partial(inbound_events_process_request, tenant_id=endpoint.tenant_id))
            return success()
        try:
            with transaction.atomic():
                stored_something_new = store(endpoint, form.cleaned_data)
        except DomainError as error:
            # The request is well-formed but breaks a rule: retrying will not help, so 400 with the
            # reason; the transaction rolled back.
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


def _rejection(request, signed: bool, endpoint, form_class, check) -> tuple[int, str, forms.Form | None]:
    """(status, reason, form): status 0 when the request is authentic and well-formed."""
    if not signed:
        return 403, "Invalid Twilio signature", None
    form = form_class(request.POST)
    if not form.is_valid():
        return 400, first_error(form), form
    if check is not None:
        try:
            check(endpoint, form.cleaned_data)
        except DomainError as error:
            return 400, str(error), form
    return 0, "", form


def _plain(status: int, text: str) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


# --- the job's side of a deferred kind ------------------------------------------------------------

# One transaction stores up to this many events (a savepoint each): one commit, and one routing
# request, for all of them.
PROCESS_BATCH = 50
# After this many failed tries an event is marked failed, for an operator to replay.
PROCESS_MAX_ATTEMPTS = 5
# A waiting event older than this lost its job (the sweep, every 2 s, enqueues another): a job
# normally starts within milliseconds, and a tenant with a job waiting gets no second one.
WAITING_RECOVER_AFTER = timedelta(seconds=3)
PROCESS_PENDING_SECONDS = 30


def _process_pending_key(tenant_id: int) -> str:
    return f"inbound-events-pending:{tenant_id}"


def inbound_events_process_request(*, tenant_id: int) -> bool:
    """Enqueue `channels_inbound.jobs.process_inbound_events(tenant_id)`, unless one waits that has
    not started yet (it will see this event: it clears the mark before it reads). Returns whether it
    enqueued. Never raises: the event is committed, and the sweep makes up a job that could not be
    enqueued."""
    from channels_inbound import jobs  # jobs imports this module

    return enqueue_unless_waiting(
        jobs.process_inbound_events, tenant_id, mark=_process_pending_key(tenant_id), seconds=PROCESS_PENDING_SECONDS
    )


def twilio_events_process(*, tenant_id: int) -> int:
    """Store the tenant's waiting events of the deferred kinds, oldest first, in batches of
    PROCESS_BATCH; returns how many were stored (or found duplicate or malformed).

    One processor per tenant at a time (a transaction-level advisory lock, waited for): messages
    reach their conversation in the order they arrived. A second job for the tenant waits one batch,
    then carries on where the first left off. A failure rolls back its event's savepoint only and
    counts an attempt; the event is tried again by a later job, and marked failed at the last.
    """
    from channels_inbound.twilio.replay import twilio_event_store

    waiting_mark_clear(_process_pending_key(tenant_id))
    done, failed_here = 0, set()
    with tenant_context(tenant_id):
        while True:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(hashtext('inbound-events'), %s)", [tenant_id])
                events = inbound_events_waiting(kinds=DEFERRED_KINDS, limit=PROCESS_BATCH, excluding=failed_here)
                if not events:
                    return done
                for event in events:
                    try:
                        outcome, detail = twilio_event_store(event)  # in a savepoint of its own
                    except Exception as error:
                        failed_here.add(event.pk)
                        _attempt_failed(event, error)
                        continue
                    inbound_event_finish(event=event, outcome=outcome, detail=detail)
                    done += 1


def _attempt_failed(event: InboundEvent, error: Exception) -> None:
    logger.exception("inbound event %s could not be stored", event.public_id)
    attempts = event.attempts + 1
    reason = f"{type(error).__name__}: {error}"
    InboundEvent.objects.filter(pk=event.pk).update(
        attempts=attempts,
        detail=reason[:2000],
        outcome=InboundOutcome.FAILED if attempts >= PROCESS_MAX_ATTEMPTS else InboundOutcome.RECEIVED,
    )


def inbound_events_recover(*, now=None) -> int:
    """Request processing for every tenant with an event of a deferred kind waiting longer than
    WAITING_RECOVER_AFTER (its job was lost, or failed): the sweep `recover_inbound_events`. A
    tenant whose job waits already gets no second one. Returns how many jobs were enqueued."""
    tenant_ids = tenants_with_inbound_events_waiting(
        kinds=DEFERRED_KINDS, received_before=(now or timezone.now()) - WAITING_RECOVER_AFTER
    )
    return sum(inbound_events_process_request(tenant_id=tenant_id) for tenant_id in tenant_ids)
