"""Twilio endpoints for acme and globex, and a client that signs requests as Twilio does."""

import secrets
from dataclasses import dataclass

import pytest
from django.test import Client
from twilio.request_validator import RequestValidator

from channels_inbound.models import Channel, ChannelEndpoint, Provider
from contactcenter.tenancy import tenant_context

ACME_SID, ACME_TOKEN, ACME_NUMBER = "AC" + "a" * 32, "acme-demo-auth-token", "+15005550001"
GLOBEX_SID, GLOBEX_TOKEN, GLOBEX_NUMBER = "AC" + "b" * 32, "globex-demo-auth-token", "+15005550002"


def make_endpoint(tenant, *, address, account_sid, token, channel=Channel.SMS) -> ChannelEndpoint:
    with tenant_context(tenant):
        endpoint = ChannelEndpoint(
            tenant=tenant, provider=Provider.TWILIO, channel=channel, address=address, account_sid=account_sid
        )
        endpoint.set_auth_token(token)
        endpoint.save()
        return endpoint


@pytest.fixture
def acme_sms(acme) -> ChannelEndpoint:
    return make_endpoint(acme, address=ACME_NUMBER, account_sid=ACME_SID, token=ACME_TOKEN)


@pytest.fixture
def globex_sms(globex) -> ChannelEndpoint:
    return make_endpoint(globex, address=GLOBEX_NUMBER, account_sid=GLOBEX_SID, token=GLOBEX_TOKEN)


def message_sid() -> str:
    return "SM" + secrets.token_hex(16)


def inbound_sms(*, to=ACME_NUMBER, account_sid=ACME_SID, sender="+15551230001", body="Hello", sid=None, **extra) -> dict:
    return {"MessageSid": sid or message_sid(), "AccountSid": account_sid, "From": sender, "To": to, "Body": body,
            "NumMedia": "0", **extra}  # fmt: skip


def inbound_events_process_waiting() -> int:
    """What the worker does with the jobs inbound messages enqueue: store every tenant's waiting
    events (the webhook only logs them; channels_inbound.twilio.intake). Returns how many."""
    from django.utils import timezone

    from channels_inbound.selectors import tenants_with_inbound_events_waiting
    from channels_inbound.twilio.intake import DEFERRED_KINDS, twilio_events_process

    tenant_ids = tenants_with_inbound_events_waiting(kinds=DEFERRED_KINDS, received_before=timezone.now())
    return sum(twilio_events_process(tenant_id=tenant_id) for tenant_id in tenant_ids)


@dataclass
class TwilioSigner:
    """Posts form bodies signed with an auth token, as Twilio signs its webhooks; then, unless
    `deferred=False`, stores what the request left waiting, as the worker's job would (tests assert
    on the stored message right after the post; tests of the deferral itself pass False)."""

    client: Client
    base_url: str = "http://testserver"

    def post(
        self, path: str, fields: dict, *, token: str = ACME_TOKEN, signature: str | None = None, deferred: bool = True,
        **headers,
    ):  # fmt: skip
        if signature is None:
            signature = RequestValidator(token).compute_signature(self.base_url + path, fields)
        response = self.client.post(path, fields, HTTP_X_TWILIO_SIGNATURE=signature, **headers)
        if deferred:
            inbound_events_process_waiting()
        return response


@pytest.fixture
def twilio(db) -> TwilioSigner:
    return TwilioSigner(Client())
