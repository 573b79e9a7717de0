"""The inbound-parse webhook. Thin: intake does the work."""

from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from channels_inbound.email.intake import email_webhook_receive


# Relays cannot carry our CSRF token; the endpoint's secret is their authentication.
@csrf_exempt
@require_POST
def inbound(request):
    """An email a relay (SendGrid Inbound Parse or alike) received for one of our mailboxes."""
    return email_webhook_receive(request)
