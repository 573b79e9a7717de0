"""The path an inbound email takes, in the order every webhook here follows:

1. find the mailbox it is addressed to (404 when none: it belongs to no tenant);
2. write the raw request to the tenant's inbound event log, before anything can fail;
3. check the endpoint's secret, sent as the HTTP Basic password (403, nothing stored);
4. parse and validate the email (400 with the reason, nothing stored; likewise a domain rule it breaks);
5. store it through the domain services in one transaction (idempotent on the Message-ID);
6. record the outcome on the event.

Any exception in 5 propagates as a 500 so the relay retries; the event row keeps what arrived.
"""

import base64
import hmac
from contextlib import suppress

from django.db import transaction
from django.http import HttpResponse

from channels_inbound.email.parsing import (
    MalformedEmail,
    file_name,
    parse_inbound_email,
    recipients,
    request_fields,
)
from channels_inbound.email.selectors import email_endpoints_for
from channels_inbound.email.services import email_inbound_store
from channels_inbound.models import ChannelEndpoint, InboundOutcome, Provider
from channels_inbound.services import inbound_event_finish, inbound_event_record, unrouted_event_record
from contactcenter.errors import DomainError
from contactcenter.tenancy import tenant_context

KIND = "email"
LOGGED_FIELD_CHARS = 100_000  # per field: enough to replay any real email's text, not a 30 MB HTML blob


def basic_auth_password(request) -> str:
    """The password of an `Authorization: Basic` header ("" when there is none or it is garbled).

    Relays such as SendGrid take credentials in the webhook URL (https://any:secret@host/…) and
    send them this way. The user name is not checked: the secret alone authenticates."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


def endpoint_secret_matches(endpoint: ChannelEndpoint, given: str) -> bool:
    """Constant-time, so the time a wrong guess takes says nothing about how close it was. An
    endpoint without a secret accepts nothing."""
    expected = endpoint.auth_token()
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def email_webhook_receive(request) -> HttpResponse:
    fields = request_fields(request)
    logged = _loggable(fields, request.FILES)
    addresses = recipients(fields)
    if not addresses:
        unrouted_event_record(request=request, provider=Provider.EMAIL, kind=KIND, body=logged, detail="no recipient")
        return _plain(400, "envelope or to: no recipient address")
    candidates = email_endpoints_for(addresses)
    if not candidates:
        detail = f"no mailbox for {', '.join(addresses)}"[:2000]
        unrouted_event_record(request=request, provider=Provider.EMAIL, kind=KIND, body=logged, detail=detail)
        return _plain(404, f"No Switchboard mailbox for {', '.join(addresses)}")

    # An email copied to several mailboxes (of one tenant or several) is delivered to the one whose
    # secret the relay presented; with no match, the first mailbox's log records the refusal.
    secret = basic_auth_password(request)
    authenticated = [endpoint for endpoint in candidates if secret and endpoint_secret_matches(endpoint, secret)]
    endpoint = authenticated[0] if authenticated else candidates[0]

    with tenant_context(endpoint.tenant_id):
        event = inbound_event_record(request=request, endpoint=endpoint, kind=KIND, body=logged)
        if not authenticated:
            detail = "wrong secret" if secret else "no secret (HTTP Basic password) in the request"
            inbound_event_finish(event=event, outcome=InboundOutcome.BAD_SIGNATURE, detail=detail)
            return _plain(403, "Missing or wrong mailbox secret")
        try:
            email = parse_inbound_email(fields, request.FILES)
        except MalformedEmail as error:
            inbound_event_finish(event=event, outcome=InboundOutcome.MALFORMED, detail=str(error))
            return _plain(400, str(error))
        try:
            with transaction.atomic():
                stored_something_new = email_inbound_store(endpoint, email)
        except DomainError as error:
            # Well-formed but against a rule (a From the directory cannot hold, say): a retry will
            # not help, so 400 with the reason; the transaction rolled back.
            inbound_event_finish(event=event, outcome=InboundOutcome.MALFORMED, detail=str(error))
            return _plain(400, str(error))
        except Exception as error:
            with suppress(Exception):  # unless the database itself is what failed
                detail = f"{type(error).__name__}: {error}"
                inbound_event_finish(event=event, outcome=InboundOutcome.FAILED, detail=detail)
            raise
        outcome = InboundOutcome.STORED if stored_something_new else InboundOutcome.DUPLICATE
        inbound_event_finish(event=event, outcome=outcome, detail="; ".join(email.refused_attachments))
        return _plain(200, "OK")


def _loggable(fields: dict[str, str], files) -> dict:
    """What the event log keeps: every field (long ones cut) and each file's name, type and size."""
    logged = {key: value[:LOGGED_FIELD_CHARS] for key, value in fields.items()}
    logged["_files"] = [
        {"field": key, "name": file_name(uploaded), "content_type": uploaded.content_type, "size": uploaded.size}
        for key, uploaded in files.items()
    ]
    return logged


def _plain(status: int, text: str) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
