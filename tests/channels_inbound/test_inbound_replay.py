"""Operators replay requests that failed while being stored; nothing else, and nothing twice."""

import pytest
from django.urls import reverse

from channels_inbound.models import InboundEvent, InboundOutcome
from channels_inbound.twilio.replay import ReplayNotPossible, twilio_event_replay
from contactcenter.tenancy import tenant_context
from conversations.models import Message
from tests.channels_inbound.conftest import inbound_sms
from tests.conftest import signed_in_client


def logged_event(endpoint, outcome, **fields) -> InboundEvent:
    with tenant_context(endpoint.tenant_id):
        return InboundEvent.objects.create(
            tenant_id=endpoint.tenant_id, endpoint=endpoint, provider="twilio", kind="messaging",
            path="/webhooks/twilio/messaging", body=inbound_sms(**fields), outcome=outcome,
        )  # fmt: skip


def test_a_request_that_failed_while_being_stored_is_stored_on_replay_once(acme_sms):
    event = logged_event(acme_sms, InboundOutcome.FAILED, body="Are you there?")
    with tenant_context(acme_sms.tenant_id):
        assert twilio_event_replay(event=event, replayed_by="Sam") == InboundOutcome.STORED
        assert Message.objects.get().body == "Are you there?"
        event.refresh_from_db()
        assert (event.outcome, event.detail) == (InboundOutcome.STORED, "Replayed by Sam.")
        with pytest.raises(ReplayNotPossible):
            twilio_event_replay(event=event, replayed_by="Sam")  # already stored now
        assert Message.objects.count() == 1


@pytest.mark.parametrize("outcome", [InboundOutcome.BAD_SIGNATURE, InboundOutcome.MALFORMED, InboundOutcome.STORED])
def test_rejected_or_stored_requests_cannot_be_replayed(acme_sms, outcome):
    event = logged_event(acme_sms, outcome)
    with tenant_context(acme_sms.tenant_id), pytest.raises(ReplayNotPossible):
        twilio_event_replay(event=event, replayed_by="Sam")
    with tenant_context(acme_sms.tenant_id):
        assert not Message.objects.exists()


def test_supervisors_replay_from_the_admin_and_agents_cannot(acme_sms, acme_supervisor, acme_agent):
    event = logged_event(acme_sms, InboundOutcome.FAILED, body="Replay me")
    url = reverse("admin:channels_inbound_inboundevent_changelist")
    form = {"action": "replay", "_selected_action": [event.pk]}
    assert signed_in_client(acme_agent).post(url, form).status_code == 403
    response = signed_in_client(acme_supervisor).post(url, form, follow=True)
    assert "Replayed 1 request(s): 1 stored." in response.content.decode()
    with tenant_context(acme_sms.tenant_id):
        assert Message.objects.get().body == "Replay me"


def test_another_tenants_events_cannot_be_replayed_from_the_admin(acme_sms, globex_sms, acme_supervisor):
    globex_event = logged_event(globex_sms, InboundOutcome.FAILED, to="+15005550002", account_sid="AC" + "b" * 32)
    url = reverse("admin:channels_inbound_inboundevent_changelist")
    signed_in_client(acme_supervisor).post(url, {"action": "replay", "_selected_action": [globex_event.pk]}, follow=True)
    with tenant_context(globex_sms.tenant_id):
        assert not Message.objects.exists()
        globex_event.refresh_from_db()
        assert globex_event.outcome == InboundOutcome.FAILED
