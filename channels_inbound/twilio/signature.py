"""Checking `X-Twilio-Signature`: an HMAC of the URL Twilio called and the form fields, keyed by the auth token."""

from django.conf import settings
from twilio.request_validator import RequestValidator


def url_as_provider_called_it(request) -> str:
    """The URL Twilio signed. Behind a proxy (TLS offload, another host name) the request's own URL
    differs from it, so PUBLIC_BASE_URL, when set, is the one that counts."""
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + request.get_full_path()
    return request.build_absolute_uri()


def form_fields_as_signed(request) -> dict:
    """The POSTed fields with repeated keys kept as lists, as Twilio's algorithm expects."""
    return {key: values if len(values) > 1 else values[0] for key, values in request.POST.lists()}


def twilio_signature_is_valid(request, auth_token: str) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not auth_token:
        return False
    validator = RequestValidator(auth_token)
    return validator.validate(url_as_provider_called_it(request), form_fields_as_signed(request), signature)
