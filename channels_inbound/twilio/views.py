"""Twilio's webhooks. Thin: each names its fields, its form and its store; intake does the rest."""

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.messaging_response import MessagingResponse

from channels_inbound.twilio.fax import twilio_inbound_fax_store
from channels_inbound.twilio.forms import (
    CallStatusCallbackForm,
    FaxWebhookForm,
    MessagingWebhookForm,
    StatusCallbackForm,
    VoiceCallForm,
)
from channels_inbound.twilio.intake import twilio_webhook_receive
from channels_inbound.twilio.services import twilio_inbound_message_check, twilio_status_callback_store
from channels_inbound.twilio.voice import voice_call_arrive, voice_call_status_update, voice_call_twiml


def _empty_twiml() -> HttpResponse:
    return HttpResponse(str(MessagingResponse()), content_type="text/xml; charset=utf-8")


def _no_content() -> HttpResponse:
    return HttpResponse(status=204)


# Providers cannot carry our CSRF token; the signature check is their authentication.
@csrf_exempt
@require_POST
def messaging(request):
    """Inbound SMS, WhatsApp and Messenger messages, addressed by `To`: answered once logged, stored
    by a job (intake's docstring)."""
    return twilio_webhook_receive(
        request, kind="messaging", address_field="To", form_class=MessagingWebhookForm,
        store=None, check=twilio_inbound_message_check, success=_empty_twiml,
    )  # fmt: skip


@csrf_exempt
@require_POST
def status(request):
    """Delivery status of a message we sent, addressed by `From` (our number)."""
    return twilio_webhook_receive(
        request, kind="status", address_field="From", form_class=StatusCallbackForm,
        store=twilio_status_callback_store, success=_no_content,
    )  # fmt: skip


@csrf_exempt
@require_POST
def voice(request):
    """An inbound call, addressed by `To` (our number): answered with TwiML that greets the caller
    and holds them in Twilio's queue until an agent accepts the call's task."""
    answer = {}

    def store(endpoint, fields) -> bool:
        call, created = voice_call_arrive(endpoint=endpoint, fields=fields)
        answer["twiml"] = voice_call_twiml(call=call, organisation=endpoint.tenant.name)
        return created

    return twilio_webhook_receive(
        request, kind="voice", address_field="To", form_class=VoiceCallForm, store=store,
        success=lambda: HttpResponse(answer["twiml"], content_type="text/xml; charset=utf-8"),
    )  # fmt: skip


@csrf_exempt
@require_POST
def voice_status(request):
    """A call's status changed (the caller hung up, say), addressed by `To` (our number)."""
    return twilio_webhook_receive(
        request, kind="voice_status", address_field="To", form_class=CallStatusCallbackForm,
        store=voice_call_status_update, success=_no_content,
    )  # fmt: skip


@csrf_exempt
@require_POST
def fax(request):
    """An inbound fax, addressed by `To`: its PDF is fetched and attached to a fax task."""
    return twilio_webhook_receive(
        request, kind="fax", address_field="To", form_class=FaxWebhookForm, store=twilio_inbound_fax_store,
        success=_empty_twiml,
    )  # fmt: skip
