"""Demo customers writing in: signed Twilio SMS webhooks posted to a running Switchboard.

The run command starts this next to the web process, so a new user sees conversations arrive,
queue up and get offered to agents, exactly as real traffic would: through the public webhook,
signed with the demo endpoint's auth token, over HTTP.
"""

import random
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request

from django.core.management.base import BaseCommand
from twilio.request_validator import RequestValidator

from channels_inbound.models import ChannelEndpoint, Provider
from contactcenter.demo import DEMO_TENANTS
from contactcenter.tenancy import dangerously_all_tenants

CUSTOMERS = [
    ("+15551230101", "Where is my order #4471? It was due yesterday."),
    ("+15551230102", "Hi! Can I change the delivery address for my parcel?"),
    ("+15551230103", "My card was charged twice for the same order 😕"),
    ("+15551230104", "Do you ship to Canada?"),
    ("+15551230105", "The app keeps logging me out. Can you help?"),
    ("+15551230106", "I'd like to cancel my subscription, please."),
    ("+15551230107", "Is the store open on Sunday?"),
    ("+15551230108", "Thanks, that fixed it! 🙏"),
]
PATH = "/webhooks/twilio/messaging"


class Command(BaseCommand):
    help = "Post a signed demo SMS to a running Switchboard every few seconds, until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="where Switchboard answers")
        parser.add_argument("--every", type=float, default=20.0, help="average seconds between messages")
        parser.add_argument("--count", type=int, default=0, help="stop after this many messages (0: never)")

    def handle(self, *args, base_url, every, count, **options):
        with dangerously_all_tenants():  # the demo endpoints of every demo tenant, by their numbers
            endpoints = list(
                ChannelEndpoint.objects.filter(provider=Provider.TWILIO, address__in=[t.sms_number for t in DEMO_TENANTS])
            )
        if not endpoints:
            self.stderr.write("no demo endpoints; run `manage.py seed_demo` first")
            return
        self._wait_until_up(base_url)
        url = base_url.rstrip("/") + PATH
        sent = 0
        while not count or sent < count:
            endpoint = random.choice(endpoints)
            sender, body = random.choice(CUSTOMERS)
            fields = {
                "MessageSid": "SM" + secrets.token_hex(16), "AccountSid": endpoint.account_sid, "From": sender,
                "To": endpoint.address, "Body": body, "NumMedia": "0",
            }  # fmt: skip
            signature = RequestValidator(endpoint.auth_token()).compute_signature(url, fields)
            request = urllib.request.Request(
                url, data=urllib.parse.urlencode(fields).encode(), headers={"X-Twilio-Signature": signature}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            except OSError as error:
                status = type(error).__name__
            self.stdout.write(f"SMS from {sender} to {endpoint.address}: {body!r} → {status}")
            sent += 1
            time.sleep(random.uniform(0.5, 1.5) * every)

    def _wait_until_up(self, base_url: str) -> None:
        for _ in range(600):
            try:
                with urllib.request.urlopen(base_url.rstrip("/") + "/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
