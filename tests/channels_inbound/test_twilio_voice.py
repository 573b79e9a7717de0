"""Phone calls: greeted and enqueued under their task, cancelled when the caller gives up, bridged once."""

import secrets
import threading
import xml.etree.ElementTree as ET

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client, override_settings

from channels_inbound.models import CallStatus, Channel, InboundEvent, VoiceCall
from channels_inbound.twilio.voice import CallNotBridged, NoPhoneNumber, voice_call_bridge
from contactcenter.errors import AlreadyTaken
from contactcenter.models import Membership
from contactcenter.tenancy import dangerously_all_tenants, tenant_context
from conversations.models import Activity, Conversation
from tasks.models import Queue, Task, TaskStatus
from tests.channels_inbound.conftest import (
    ACME_SID,
    ACME_TOKEN,
    GLOBEX_SID,
    GLOBEX_TOKEN,
    TwilioSigner,
    make_endpoint,
)

VOICE, VOICE_STATUS = "/webhooks/twilio/voice", "/webhooks/twilio/voice/status"
ACME_LINE, GLOBEX_LINE = "+15005550011", "+15005550012"
CALLER, AGENT_PHONE = "+15551230001", "+15557654321"


@pytest.fixture
def acme_line(acme):
    make_endpoint(acme, address=ACME_LINE, account_sid=ACME_SID, token=ACME_TOKEN, channel=Channel.VOICE)
    with tenant_context(acme):
        Queue.objects.create(tenant=acme, name="Email", channels=["email"])
        return Queue.objects.create(tenant=acme, name="Phones", channels=["voice"])


@pytest.fixture
def globex_line(globex):
    make_endpoint(globex, address=GLOBEX_LINE, account_sid=GLOBEX_SID, token=GLOBEX_TOKEN, channel=Channel.VOICE)
    with tenant_context(globex):
        Queue.objects.create(tenant=globex, name="Calls", channels=["voice"])


@pytest.fixture
def agent_with_phone(acme, acme_agent) -> Membership:
    with tenant_context(acme):
        Membership.objects.filter(pk=acme_agent.pk).update(phone_number=AGENT_PHONE)
        return Membership.objects.select_related("user").get(pk=acme_agent.pk)


def call_sid() -> str:
    return "CA" + secrets.token_hex(16)


def inbound_call(*, sid=None, to=ACME_LINE, sender=CALLER, status="ringing", **extra) -> dict:
    return {"CallSid": sid or call_sid(), "AccountSid": ACME_SID, "From": sender, "To": to, "CallStatus": status,
            "Direction": "inbound", **extra}  # fmt: skip


def status_callback(sid: str, status: str) -> dict:
    return {"CallSid": sid, "AccountSid": ACME_SID, "From": CALLER, "To": ACME_LINE, "CallStatus": status}


def calls_of(tenant) -> list[VoiceCall]:
    with tenant_context(tenant):
        return list(VoiceCall.objects.select_related("task__queue", "conversation__contact", "bridged_to").order_by("pk"))


def call_in(tenant, sid: str) -> VoiceCall:
    with tenant_context(tenant):
        return VoiceCall.objects.select_related("task", "bridged_to").get(call_sid=sid)


def status_rows(tenant, task) -> list[tuple[str, str, str, str]]:
    with tenant_context(tenant):
        return list(
            Activity.objects.filter(task=task, kind="status").values_list("old_value", "new_value", "via", "reason")
        )


def twiml(response) -> ET.Element:
    assert response["Content-Type"].startswith("text/xml")
    return ET.fromstring(response.content)


def test_a_signed_call_is_greeted_and_enqueued_under_its_voice_task(twilio, acme_line, globex_line, acme, globex):
    response = twilio.post(VOICE, inbound_call(CallerName="Dana Scully"))
    assert response.status_code == 200

    [call] = calls_of(acme)
    assert (call.from_number, call.to_number, call.status, call.bridged_to) == (CALLER, ACME_LINE, "ringing", None)
    assert call.conversation.channel == Channel.VOICE and call.conversation.contact.name == "Dana Scully"
    assert (call.task.channel, call.task.queue_id, call.task.status) == ("voice", acme_line.pk, TaskStatus.PENDING)
    assert call.task.conversation_id == call.conversation_id
    root = twiml(response)
    assert [child.tag for child in root] == ["Say", "Enqueue"]
    assert "Acme Support" in root.find("Say").text
    enqueue = root.find("Enqueue")
    assert enqueue.text == call.task.public_id
    assert "waitUrl" not in enqueue.attrib  # no hold music configured: Twilio's own
    assert calls_of(globex) == []


@override_settings(TWILIO_HOLD_MUSIC_URL="https://music.example.com/hold.xml")
def test_the_caller_waits_with_the_configured_hold_music(twilio, acme_line):
    enqueue = twiml(twilio.post(VOICE, inbound_call())).find("Enqueue")
    assert enqueue.attrib == {"waitUrl": "https://music.example.com/hold.xml", "waitUrlMethod": "GET"}


def test_twilio_retrying_a_call_gets_the_same_answer_and_creates_nothing(twilio, acme_line, acme):
    fields = inbound_call()
    first, second = twilio.post(VOICE, fields), twilio.post(VOICE, fields)
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.content == second.content
    assert len(calls_of(acme)) == 1
    with tenant_context(acme):
        assert (Conversation.objects.count(), Task.objects.count()) == (1, 1)
        assert list(InboundEvent.objects.order_by("pk").values_list("outcome", flat=True)) == ["stored", "duplicate"]


@pytest.mark.django_db(transaction=True)
def test_the_same_call_delivered_concurrently_is_recorded_once(acme_line, acme):
    fields = inbound_call(sender="+15557770000")
    barrier, answers = threading.Barrier(4), []

    def deliver():
        try:
            barrier.wait(timeout=10)
            answers.append(TwilioSigner(Client()).post(VOICE, fields))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [answer.status_code for answer in answers] == [200] * 4
    assert len({answer.content for answer in answers}) == 1
    assert len(calls_of(acme)) == 1
    with tenant_context(acme):
        assert (Conversation.objects.count(), Task.objects.count()) == (1, 1)


def test_calling_again_while_the_first_call_waits_makes_a_second_task(twilio, acme_line, acme):
    first, second = inbound_call(), inbound_call()
    assert twilio.post(VOICE, first).status_code == 200
    assert twilio.post(VOICE, second).status_code == 200
    one, two = calls_of(acme)
    assert one.task_id != two.task_id and one.conversation_id != two.conversation_id
    assert one.conversation.contact == two.conversation.contact


def test_a_wrong_signature_is_403_and_stores_nothing(twilio, acme_line, acme):
    assert twilio.post(VOICE, inbound_call(), signature="bm90LWEtc2lnbmF0dXJl").status_code == 403
    assert calls_of(acme) == []


def test_globex_cannot_sign_for_acmes_line(twilio, acme_line, globex_line, acme):
    assert twilio.post(VOICE, inbound_call(), token=GLOBEX_TOKEN).status_code == 403
    assert calls_of(acme) == []


def test_an_unknown_number_is_404(twilio, acme_line, acme):
    assert twilio.post(VOICE, inbound_call(to="+15009999999")).status_code == 404
    assert calls_of(acme) == []


@pytest.mark.parametrize(
    "bad_fields, reason",
    [
        ({"CallSid": "CA-not-a-sid"}, "CallSid"),
        ({"CallStatus": "exploded"}, "CallStatus"),
        ({"From": "not a phone"}, "is not a phone number"),
    ],
    ids=["bad-sid", "bad-status", "bad-from"],
)
def test_malformed_calls_are_400_with_the_reason(twilio, acme_line, acme, bad_fields, reason):
    response = twilio.post(VOICE, inbound_call(**bad_fields))
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert calls_of(acme) == []
    with tenant_context(acme):
        assert not Conversation.objects.exists()


def test_without_a_queue_taking_calls_the_call_is_refused_with_the_reason(twilio, acme, acme_sms):
    response = twilio.post(VOICE, inbound_call(to=acme_sms.address))  # an SMS number takes calls too
    assert response.status_code == 400
    assert "No queue takes Voice work" in response.content.decode()
    with tenant_context(acme):
        assert not Conversation.objects.exists()


# --- the caller hangs up ------------------------------------------------------------------------


def test_hanging_up_before_an_agent_answered_cancels_the_task_once(twilio, acme_line, acme):
    sid = inbound_call()["CallSid"]
    assert twilio.post(VOICE, inbound_call(sid=sid)).status_code == 200
    assert twilio.post(VOICE_STATUS, status_callback(sid, "completed")).status_code == 204

    call = call_in(acme, sid)
    assert call.task.status == TaskStatus.CANCELED
    assert (call.status, call.ended_at is not None) == (CallStatus.COMPLETED, True)
    expected = [("pending", "canceled", "webhook", "The caller hung up before an agent answered.")]
    assert status_rows(acme, call.task) == expected

    for late in ("completed", "in-progress", "no-answer"):  # repeated, out of order, different
        assert twilio.post(VOICE_STATUS, status_callback(sid, late)).status_code == 204
    assert call_in(acme, sid).status == CallStatus.COMPLETED
    assert status_rows(acme, call.task) == expected


def test_statuses_only_move_forward_and_a_live_call_keeps_its_task(twilio, acme_line, acme):
    sid = inbound_call()["CallSid"]
    twilio.post(VOICE, inbound_call(sid=sid))
    twilio.post(VOICE_STATUS, status_callback(sid, "in-progress"))
    twilio.post(VOICE_STATUS, status_callback(sid, "ringing"))
    call = call_in(acme, sid)
    assert (call.status, call.task.status) == (CallStatus.IN_PROGRESS, TaskStatus.PENDING)


def test_a_status_for_an_unknown_call_changes_nothing(twilio, acme_line, acme):
    assert twilio.post(VOICE_STATUS, status_callback(call_sid(), "completed")).status_code == 204
    with tenant_context(acme):
        assert InboundEvent.objects.get().outcome == "duplicate"


def test_a_status_callback_signed_by_globex_changes_nothing(twilio, acme_line, globex_line, acme):
    sid = inbound_call()["CallSid"]
    twilio.post(VOICE, inbound_call(sid=sid))
    assert twilio.post(VOICE_STATUS, status_callback(sid, "canceled"), token=GLOBEX_TOKEN).status_code == 403
    assert call_in(acme, sid).task.status == TaskStatus.PENDING


# --- bridging the caller to the agent who accepted -------------------------------------------------


def waiting_call(twilio, acme) -> VoiceCall:
    fields = inbound_call()
    assert twilio.post(VOICE, fields).status_code == 200
    return call_in(acme, fields["CallSid"])


def test_bridging_dials_the_agents_phone_through_twilios_rest_api(twilio, fake_twilio, acme_line, acme, agent_with_phone):
    call = waiting_call(twilio, acme)
    with tenant_context(acme):
        voice_call_bridge(task=call.task, agent=agent_with_phone)

    [request] = fake_twilio.calls_updated()
    assert (request.method, request.account_sid) == ("POST", ACME_SID)
    assert request.path == f"/2010-04-01/Accounts/{ACME_SID}/Calls/{call.call_sid}.json"
    dial = ET.fromstring(request.field("Twiml")).find("Dial")
    assert dial.text == AGENT_PHONE
    bridged = call_in(acme, call.call_sid)
    assert (bridged.bridged_to, bridged.bridged_at is not None) == (agent_with_phone, True)


def test_bridging_twice_dials_once_and_another_agent_is_told_it_is_taken(
    twilio, fake_twilio, acme_line, acme, agent_with_phone, acme_agent2
):
    call = waiting_call(twilio, acme)
    with tenant_context(acme):
        voice_call_bridge(task=call.task, agent=agent_with_phone)
        voice_call_bridge(task=call.task, agent=agent_with_phone)
        Membership.objects.filter(pk=acme_agent2.pk).update(phone_number="+15550000002")
        acme_agent2.refresh_from_db()
        with pytest.raises(AlreadyTaken):
            voice_call_bridge(task=call.task, agent=acme_agent2)
    assert len(fake_twilio.calls_updated()) == 1
    assert call_in(acme, call.call_sid).bridged_to == agent_with_phone


def test_an_agent_without_a_phone_number_is_told_to_set_one(twilio, fake_twilio, acme_line, acme, acme_agent):
    call = waiting_call(twilio, acme)
    with tenant_context(acme), pytest.raises(NoPhoneNumber, match="Set your phone number to take calls"):
        voice_call_bridge(task=call.task, agent=acme_agent)
    assert fake_twilio.calls_updated() == []
    assert call_in(acme, call.call_sid).bridged_to is None


def test_after_bridging_a_hang_up_leaves_the_task_to_the_agent(twilio, fake_twilio, acme_line, acme, agent_with_phone):
    call = waiting_call(twilio, acme)
    with tenant_context(acme):
        voice_call_bridge(task=call.task, agent=agent_with_phone)
    assert twilio.post(VOICE_STATUS, status_callback(call.call_sid, "completed")).status_code == 204
    ended = call_in(acme, call.call_sid)
    assert (ended.status, ended.task.status) == (CallStatus.COMPLETED, TaskStatus.PENDING)
    assert status_rows(acme, ended.task) == []


def test_a_caller_who_hung_up_is_not_dialled(twilio, fake_twilio, acme_line, acme, agent_with_phone):
    call = waiting_call(twilio, acme)
    twilio.post(VOICE_STATUS, status_callback(call.call_sid, "canceled"))
    with tenant_context(acme), pytest.raises(CallNotBridged, match="hung up"):
        voice_call_bridge(task=call.task, agent=agent_with_phone)
    assert fake_twilio.calls_updated() == []


def test_twilio_refusing_the_redirect_releases_the_call(twilio, fake_twilio, acme_line, acme, agent_with_phone):
    call = waiting_call(twilio, acme)
    fake_twilio.fail_next(400, 21220, "Call is not in-progress. Cannot redirect.")
    with tenant_context(acme), pytest.raises(CallNotBridged) as refused:
        voice_call_bridge(task=call.task, agent=agent_with_phone)
    assert (refused.value.code, refused.value.temporary) == ("21220", False)
    assert "Cannot redirect" in str(refused.value)
    assert call_in(acme, call.call_sid).bridged_to is None

    fake_twilio.fail_next(503, 20503, "Service unavailable")
    with tenant_context(acme), pytest.raises(CallNotBridged) as unavailable:
        voice_call_bridge(task=call.task, agent=agent_with_phone)
    assert unavailable.value.temporary is True
    with tenant_context(acme):
        voice_call_bridge(task=call.task, agent=agent_with_phone)  # the retry goes through
    assert call_in(acme, call.call_sid).bridged_to == agent_with_phone
    assert len(fake_twilio.calls_updated()) == 3


def test_an_agents_phone_number_must_be_international(acme, acme_agent):
    with tenant_context(acme):
        acme_agent.phone_number = "555-1234"
        with pytest.raises(ValidationError) as error:
            acme_agent.full_clean()
    assert "phone_number" in error.value.message_dict


def test_a_call_lands_in_the_endpoints_tenant_only(twilio, acme_line, globex_line, acme, globex):
    response = twilio.post(VOICE, {**inbound_call(to=GLOBEX_LINE), "AccountSid": GLOBEX_SID}, token=GLOBEX_TOKEN)
    assert response.status_code == 200
    assert calls_of(acme) == []
    [call] = calls_of(globex)
    assert call.task.queue.name == "Calls"
    with dangerously_all_tenants():
        assert VoiceCall.objects.count() == 1


def test_accepting_an_offered_call_connects_the_caller_to_the_agents_phone(twilio, acme_line, fake_twilio, acme, agent_with_phone):
    """The routing service's acceptance runs the voice hook: the waiting caller is dialled through."""
    from datetime import timedelta

    from django.utils import timezone

    from tasks.models import Offer
    from tasks.services import offer_accept

    assert twilio.post(VOICE, inbound_call()).status_code == 200
    with tenant_context(acme):
        task = Task.objects.get(channel="voice")
        Task.objects.filter(pk=task.pk).update(status=TaskStatus.RESERVED)
        offer = Offer.objects.create(
            tenant=acme, task=task, agent=agent_with_phone, expires_at=timezone.now() + timedelta(seconds=30)
        )
        offer_accept(offer=offer, agent=agent_with_phone)
        call = VoiceCall.objects.get(task=task)
    assert call.bridged_to_id == agent_with_phone.pk
    [update] = fake_twilio.calls_updated()
    assert AGENT_PHONE in update.field("Twiml") and "<Dial>" in update.field("Twiml")
