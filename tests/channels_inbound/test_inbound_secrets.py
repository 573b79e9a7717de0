"""Credentials that come with a webhook (signatures, HTTP Basic secrets, cookies, bearer tokens) are
never written to the inbound event log nor to the process's logs, whether the request is accepted,
refused or matches no endpoint."""

import json
import logging

import pytest
from django.test import Client
from twilio.request_validator import RequestValidator

from channels_inbound.models import InboundEvent, UnroutedInboundEvent
from channels_inbound.services import LOGGED_HEADERS
from contactcenter.tenancy import dangerously_all_tenants
from tests.channels_inbound.conftest import ACME_TOKEN, inbound_sms
from tests.channels_inbound.test_email import ACME_MAILBOX, ACME_SECRET, basic_auth, inbound_email, make_mailbox, post

MESSAGING = "/webhooks/twilio/messaging"
COOKIE = "sessionid=a-session-that-must-not-be-kept"
BEARER = "Bearer a-token-that-must-not-be-kept"


@pytest.fixture
def every_log_line(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def everything_stored() -> str:
    with dangerously_all_tenants():
        rows = [(event.headers, event.body, event.detail) for event in InboundEvent.objects.all()]
    rows += [(event.headers, event.body, event.detail) for event in UnroutedInboundEvent.objects.all()]
    assert rows, "the requests must have been logged for this test to mean anything"
    for headers, *_ in rows:
        assert set(headers) <= {*LOGGED_HEADERS, "signature_present"}
    return json.dumps(rows)


def assert_nowhere(secrets, stored: str, logs: str) -> None:
    for secret in secrets:
        assert secret not in stored
        assert secret not in logs


@pytest.mark.parametrize("signature_ok", [True, False], ids=["accepted", "bad signature"])
def test_twilio_signatures_cookies_and_tokens_are_not_logged(twilio, acme_sms, every_log_line, signature_ok):
    fields = inbound_sms()
    forged = "forged-signature-value-0123456789="
    extra = {"HTTP_COOKIE": COOKIE, "HTTP_AUTHORIZATION": BEARER}
    response = twilio.post(MESSAGING, fields, **({} if signature_ok else {"signature": forged}), **extra)
    assert response.status_code == (200 if signature_ok else 403)
    unrouted = twilio.post(MESSAGING, inbound_sms(to="+15550009999"), **extra)  # no endpoint: the operator's log
    assert unrouted.status_code == 404

    real_signature = RequestValidator(ACME_TOKEN).compute_signature("http://testserver" + MESSAGING, fields)
    stored = everything_stored()
    assert '"signature_present": true' in stored
    assert_nowhere(
        [ACME_TOKEN, real_signature, forged, "a-session-that-must-not-be-kept", "a-token-that-must-not-be-kept"],
        stored,
        every_log_line.text,
    )


@pytest.mark.parametrize("secret", [ACME_SECRET, "a-wrong-secret-that-must-not-be-kept"], ids=["right", "wrong"])
def test_email_relay_secrets_are_not_logged(acme, every_log_line, secret):
    make_mailbox(acme, ACME_MAILBOX, ACME_SECRET)
    response = post(Client(), inbound_email(), secret=secret)
    assert response.status_code == (200 if secret == ACME_SECRET else 403)
    stored = everything_stored()
    assert_nowhere([secret, basic_auth(secret).split()[1]], stored, every_log_line.text)
