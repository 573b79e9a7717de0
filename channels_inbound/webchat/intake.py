"""The path every webchat arrival takes, as a Twilio webhook's does (channels_inbound.twilio.intake):

1. the endpoint is known (the widget key), and the Origin was checked against its allowed origins;
2. write what arrived to the tenant's inbound event log, before anything can fail;
3. check the visitor (the signed token) and validate the content (an error with the reason, nothing stored);
4. store it through the services in one transaction (idempotent on the widget's client id);
5. record the outcome on the event.

Messages arrive on the websocket (consumers.VisitorConsumer), files over HTTP (views.upload).
"""

from contextlib import suppress
from types import SimpleNamespace

from django.http import HttpHeaders, JsonResponse

from channels_inbound.models import ChannelEndpoint, InboundOutcome
from channels_inbound.services import inbound_event_finish, inbound_event_record
from channels_inbound.webchat.forms import UploadForm, first_error
from channels_inbound.webchat.protocol import BadFrame, error_frame, message_fields, message_frame
from channels_inbound.webchat.selectors import queue_position, visitor_history, visitor_live_conversation
from channels_inbound.webchat.services import webchat_message_store, webchat_upload_store
from channels_inbound.webchat.tokens import visitor_id_from_token, visitor_token_issue
from contactcenter.errors import DomainError
from contactcenter.tenancy import tenant_context


def handshake_as_request(scope) -> SimpleNamespace:
    """The websocket handshake in the shape the inbound event log reads (`path`, `headers`)."""
    meta = {
        "HTTP_" + name.decode("latin-1").upper().replace("-", "_"): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }
    return SimpleNamespace(path=scope.get("path", ""), headers=HttpHeaders(meta))


def webchat_visitor_identify(*, endpoint: ChannelEndpoint, token) -> tuple[str, str]:
    """(visitor id, token): the visitor the token proves, or a new one with a new token (a missing,
    forged or other widget's token starts afresh, and sees nothing). No database access."""
    visitor_id = visitor_id_from_token(endpoint, token)
    return (visitor_id, token) if visitor_id else visitor_token_issue(endpoint)


def webchat_welcome(*, endpoint: ChannelEndpoint, visitor_id: str, token: str) -> dict:
    """The welcome frame: the token to keep, the history of the visitor's live conversation and
    their place in line."""
    with tenant_context(endpoint.tenant_id):
        conversation = visitor_live_conversation(visitor_id)
        return {
            "type": "welcome",
            "visitor": token,
            "messages": [message_frame(message) for message in visitor_history(conversation)] if conversation else [],
            "queue_position": queue_position(conversation) if conversation else None,
        }


def webchat_message_receive(*, endpoint: ChannelEndpoint, visitor_id: str, frame: dict, arrived) -> list[dict]:
    """A message frame from a greeted visitor; returns the frames to answer with: the stored message
    (also for a resend, so the widget can stop retrying) and the place in line, or an error."""
    with tenant_context(endpoint.tenant_id):
        event = inbound_event_record(
            request=arrived, endpoint=endpoint, kind="message",
            body={"visitor": visitor_id, "id": frame.get("id"), "body": frame.get("body")},
        )  # fmt: skip
        try:
            client_id, body = message_fields(frame)
        except BadFrame as bad:
            inbound_event_finish(event=event, outcome=InboundOutcome.MALFORMED, detail=bad.detail)
            return [error_frame(bad.code, bad.detail, bad.client_id)]
        try:
            message = _store(
                event, webchat_message_store, endpoint=endpoint, visitor_id=visitor_id, client_id=client_id, body=body
            )
        except DomainError as error:
            return [error_frame("refused", str(error), client_id)]
        frames = [{"type": "message", "message": message_frame(message)}]
        position = queue_position(message.conversation)
        if position is not None:
            frames.append({"type": "queue", "position": position})
        return frames


def webchat_upload_receive(request, endpoint: ChannelEndpoint) -> JsonResponse:
    """A file from a visitor (multipart: key, visitor, id, optional body, file). Answers the stored
    message as JSON, or {"error": reason} with 403 (visitor token) or 400 (content)."""
    with tenant_context(endpoint.tenant_id):
        upload = request.FILES.get("file")
        event = inbound_event_record(
            request=request, endpoint=endpoint, kind="upload",
            body={
                "id": _loggable(request.POST.get("id", ""))[:100], "body": _loggable(request.POST.get("body", ""))[:1000],
                "file": upload and {"name": _loggable(upload.name)[:255], "size": upload.size,
                                    "claimed_type": _loggable(upload.content_type or "")},
            },
        )  # fmt: skip
        visitor_id = visitor_id_from_token(endpoint, request.POST.get("visitor"))
        if visitor_id is None:
            inbound_event_finish(event=event, outcome=InboundOutcome.BAD_SIGNATURE, detail="visitor token missing or wrong")
            return JsonResponse({"error": "This chat session is not valid any more. Reload the page."}, status=403)
        form = UploadForm(request.POST, request.FILES)
        if not form.is_valid():
            reason = first_error(form)
            inbound_event_finish(event=event, outcome=InboundOutcome.MALFORMED, detail=reason)
            return JsonResponse({"error": reason}, status=400)
        file = form.cleaned_data["file"]
        try:
            message = _store(
                event, webchat_upload_store, endpoint=endpoint, visitor_id=visitor_id, client_id=form.cleaned_data["id"],
                body=form.cleaned_data["body"], filename=file.name, content=file.content, content_type=file.content_type,
            )  # fmt: skip
        except DomainError as error:
            return JsonResponse({"error": str(error)}, status=400)
        return JsonResponse({"message": message_frame(message)})


def _loggable(text: str) -> str:
    """The visitor's text as the event log can hold it (PostgreSQL's JSON has no NUL); the form
    still sees the original and refuses it."""
    return text.replace("\x00", "\ufffd")


def _store(event, store, **fields):
    """Run a store service, record its outcome on the event and return the message (new or the one
    already stored). A DomainError (the content breaks a rule) or any other exception is recorded
    and propagates."""
    try:
        message, created = store(**fields)
    except DomainError as error:
        inbound_event_finish(event=event, outcome=InboundOutcome.MALFORMED, detail=str(error))
        raise
    except Exception as error:
        with suppress(Exception):  # unless the database itself is what failed
            inbound_event_finish(event=event, outcome=InboundOutcome.FAILED, detail=f"{type(error).__name__}: {error}")
        raise
    inbound_event_finish(event=event, outcome=InboundOutcome.STORED if created else InboundOutcome.DUPLICATE)
    return message
