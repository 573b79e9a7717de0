"""Twilio's webhooks. Thin: each names its fields, its form and its store; intake does the rest."""

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.messaging_response import MessagingResponse

from channels_inbound.twilio.forms import MessagingWebhookForm, StatusCallbackForm
from channels_inbound.twilio.intake import twilio_webhook_receive
from channels_inbound.twilio.services import twilio_inbound_message_store, twilio_status_callback_store


def _empty_twiml() -> HttpResponse:
    return HttpResponse(str(MessagingResponse()), content_type="text/xml; charset=utf-8")


def _no_content() -> HttpResponse:
    return HttpResponse(status=204)


# Providers cannot carry our CSRF token; the signature check is their authentication.
@csrf_exempt
@require_POST
def messaging(request):
    """Inbound SMS, WhatsApp and Messenger messages, addressed by `To`."""
    return twilio_webhook_receive(
        request, kind="messaging", address_field="To", form_class=MessagingWebhookForm,
        store=twilio_inbound_message_store, success=_empty_twiml,
    )  # fmt: skip


@csrf_exempt
@require_POST
def status(request):
    """Delivery status of a message we sent, addressed by `From` (our number)."""
    return twilio_webhook_receive(
        request, kind="status", address_field="From", form_class=StatusCallbackForm,
        store=twilio_status_callback_store, success=_no_content,
    )  # fmt: skip
