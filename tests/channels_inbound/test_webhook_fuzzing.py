"""Hostile input for the webhooks the messaging fuzz (test_twilio_webhooks.py) does not cover: message
status callbacks, calls, call status callbacks and faxes, and the webchat's frames.

Whatever a correctly signed body holds, the answer is a success or a clear 4xx with the reason, never
a 5xx; and a refused request leaves nothing behind but its line in the inbound event log.
"""

import json
import secrets

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels_inbound.models import Channel, VoiceCall
from channels_inbound.webchat.protocol import BadFrame, frame_parse, message_fields
from contactcenter.tenancy import tenant_context
from conversations.models import Contact, Conversation, Message
from tasks.models import Queue, Task
from tests.channels_inbound.conftest import ACME_NUMBER, ACME_SID, ACME_TOKEN, make_endpoint

ACME_LINE, ACME_FAX, CUSTOMER = "+15005550011", "+15005550021", "+15551230001"

# Plain text, and the values a form field is most likely to choke on.
VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "0", "-1", "1e309", "99999999999999999999", "null", "[]", "CA" + "0" * 32,
                     "SM" + "0" * 32, "FX" + "0" * 32, "+15551230001", "+1", "ringing", "in-progress",
                     "completed", "delivered", "failed", "received", "http://127.0.0.1:1/x", "\u202e", "<Response/>"]),
)  # fmt: skip


def sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


# path -> (the field that names our number, our number, a valid body as Twilio sends it)
WEBHOOKS = {
    "/webhooks/twilio/status": ("From", ACME_NUMBER, lambda: {
        "MessageSid": sid("SM"), "MessageStatus": "delivered", "To": CUSTOMER, "ErrorCode": "", "Unexpected": "x"}),
    "/webhooks/twilio/voice": ("To", ACME_LINE, lambda: {
        "CallSid": sid("CA"), "From": CUSTOMER, "CallStatus": "ringing", "Direction": "inbound", "CallerName": "Dana"}),
    "/webhooks/twilio/voice/status": ("To", ACME_LINE, lambda: {
        "CallSid": sid("CA"), "From": CUSTOMER, "CallStatus": "completed", "CallDuration": "12"}),
    "/webhooks/twilio/fax": ("To", ACME_FAX, lambda: {
        "FaxSid": sid("FX"), "From": CUSTOMER, "MediaUrl": "http://127.0.0.1:1/fax.pdf", "NumPages": "2",
        "FaxStatus": "received", "ApiVersion": "v1"}),
}  # fmt: skip
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture
def acme_numbers(acme, acme_sms):
    make_endpoint(acme, address=ACME_LINE, account_sid=ACME_SID, token=ACME_TOKEN, channel=Channel.VOICE)
    make_endpoint(acme, address=ACME_FAX, account_sid=ACME_SID, token=ACME_TOKEN, channel=Channel.FAX)
    with tenant_context(acme):
        Queue.objects.create(tenant=acme, name="Everything", channels=["sms", "voice", "fax"])
    return acme


def domain_rows(tenant) -> tuple[int, ...]:
    with tenant_context(tenant):
        return tuple(model.objects.count() for model in (Contact, Conversation, Message, Task, VoiceCall))


@pytest.mark.parametrize("path", list(WEBHOOKS))
def test_no_signed_body_can_cause_a_server_error_or_leave_partial_state(twilio, acme_numbers, path):
    address_field, address, valid_body = WEBHOOKS[path]
    names = sorted(valid_body())
    statuses = set()

    @FUZZ
    @given(
        changes=st.dictionaries(keys=st.sampled_from(names), values=VALUES, max_size=3),
        dropped=st.sets(st.sampled_from(names), max_size=2),
    )
    def post_one(changes, dropped):
        body = {**valid_body(), **{key: value.replace("\x00", "") for key, value in changes.items()}}
        body = {key: value for key, value in body.items() if key not in dropped}
        body.update({"AccountSid": ACME_SID, address_field: address})
        before = domain_rows(acme_numbers)
        response = twilio.post(path, body)
        assert response.status_code in (200, 204, 400), (response.status_code, response.content[:300])
        statuses.add(response.status_code)
        if response.status_code == 400:
            assert response.content.strip(), "a 400 says what was wrong"
            assert domain_rows(acme_numbers) == before

    post_one()
    assert statuses & {200, 204} and 400 in statuses, "the fuzz must reach both the store and the refusals"


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(
        st.none(),
        st.text(max_size=200),
        st.dictionaries(
            keys=st.sampled_from(["type", "id", "body", "visitor"]),
            values=st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=80), st.sampled_from(["hello", "message"]),
                             st.lists(st.integers(), max_size=3)),
        ).map(json.dumps),
    )
)  # fmt: skip
def test_any_webchat_frame_is_read_or_refused_with_a_reason(text):
    try:
        frame = frame_parse(text)
        if frame["type"] == "message":
            client_id, body = message_fields(frame)
            assert body.strip() and 8 <= len(client_id) <= 64
    except BadFrame as refused:
        assert refused.code and refused.detail
