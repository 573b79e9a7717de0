"""Talking to Twilio's REST API: one client per endpoint's credentials.

TWILIO_API_BASE_URL, when set, sends every API call to another base URL (a regional gateway, an
egress proxy, or the tests' local server that speaks Twilio's wire format). It is applied through
twilio's pluggable HTTP client, so the library's own request building and parsing run unchanged.
"""

from django.conf import settings
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

TWILIO_API_ORIGIN = "https://api.twilio.com"
REQUEST_TIMEOUT_SECONDS = 10


class BaseUrlHttpClient(TwilioHttpClient):
    def __init__(self, base_url: str, **kwargs):
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")

    def request(self, method, url, *args, **kwargs):
        if url.startswith(TWILIO_API_ORIGIN):
            url = self.base_url + url[len(TWILIO_API_ORIGIN):]
        return super().request(method, url, *args, **kwargs)


def twilio_client(account_sid: str, auth_token: str) -> Client:
    base_url = settings.TWILIO_API_BASE_URL
    if base_url:
        http_client = BaseUrlHttpClient(base_url, timeout=REQUEST_TIMEOUT_SECONDS)
    else:
        http_client = TwilioHttpClient(timeout=REQUEST_TIMEOUT_SECONDS)
    return Client(account_sid, auth_token, http_client=http_client)
