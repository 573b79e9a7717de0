"""The CSAT survey: asked after an agent resolves a conversation, answered 1–5 on the customer's
channel, recorded against the conversation and agent, never routed as new work."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from contactcenter.tenancy import tenant_context
from conversations.models import Activity, Conversation, CsatSurvey, Direction, Message
from conversations.services import (
    CSAT_QUESTION,
    conversation_assign,
    conversation_end,
    csat_score_of,
    message_append_inbound,
    message_send_reply,
)
from tasks.models import Queue, Task, TaskStatus
from tests.channels_inbound.conftest import ACME_NUMBER, ACME_SID, ACME_TOKEN, TwilioSigner, inbound_sms, make_endpoint
from tests.conftest import signed_in_client
from tests.conversations.conftest import make_conversation, make_queue, make_task

MESSAGING = "/webhooks/twilio/messaging"
CUSTOMER = "+15551230042"


def handled_and_resolved(conversation, queue, agent):
    """The agent takes the conversation, replies and ends it (the task goes to wrap-up)."""
    task = Task.objects.filter(conversation=conversation).first() or make_task(conversation, queue)
    conversation_assign(conversation=conversation, agent=agent, actor=agent)
    message_send_reply(conversation=conversation, author=agent, body="Your refund is on its way.")
    conversation.refresh_from_db()
    conversation_end(conversation=conversation, actor=agent)
    conversation.refresh_from_db()
    task.refresh_from_db()
    return task


@pytest.fixture
def care(in_acme) -> Queue:
    return make_queue("Care", csat_survey=True, csat_reply_hours=24)


@pytest.fixture
def resolved(in_acme, care, acme_agent):
    conversation = make_conversation()
    message_append_inbound(conversation=conversation, body="Where is my refund?", provider_message_id="SM-csat-1")
    handled_and_resolved(conversation, care, acme_agent)
    return conversation


def test_resolving_asks_the_customer_on_their_channel(resolved, care, acme_agent):
    [survey] = CsatSurvey.objects.all()
    assert (survey.conversation, survey.agent, survey.queue, survey.score) == (resolved, acme_agent, care, None)
    assert survey.reply_by == survey.sent_at + timedelta(hours=24)
    question = survey.question
    assert (question.direction, question.body, question.author, question.delivery_status) == (
        Direction.OUTBOUND, CSAT_QUESTION, None, "queued",
    )  # fmt: skip
    first_reply = Message.objects.filter(conversation=resolved, author=acme_agent).get()
    assert resolved.first_response_at == first_reply.created_at  # the question is no reply
    assert resolved.status == "resolved"


def test_a_rating_is_recorded_and_reopens_nothing(resolved, acme_agent):
    survey = CsatSurvey.objects.get()
    activities = Activity.objects.count()
    message, created = message_append_inbound(conversation=resolved, body=" 4 ", provider_message_id="SM-csat-2")
    assert created
    survey.refresh_from_db()
    assert (survey.score, survey.answer, survey.answered_at) == (4, message, message.created_at)
    resolved.refresh_from_db()
    assert (resolved.status, resolved.assignee, resolved.waiting_since) == ("resolved", acme_agent, None)
    assert Activity.objects.count() == activities  # no reopening, no status row

    # A second "5" is taken in (the first rating counts); anything else is an ordinary message again.
    message_append_inbound(conversation=resolved, body="5", provider_message_id="SM-csat-3")
    survey.refresh_from_db()
    resolved.refresh_from_db()
    assert (survey.score, resolved.status) == (4, "resolved")
    message_append_inbound(conversation=resolved, body="Thanks, 5 stars!", provider_message_id="SM-csat-4")
    resolved.refresh_from_db()
    assert resolved.status == "open"


def test_a_late_reply_is_an_ordinary_message(resolved):
    CsatSurvey.objects.update(reply_by=timezone.now() - timedelta(minutes=1))
    message_append_inbound(conversation=resolved, body="5", provider_message_id="SM-csat-late")
    resolved.refresh_from_db()
    assert resolved.status == "open"
    assert CsatSurvey.objects.get().score is None


def test_no_survey_without_the_queues_setting_nor_on_a_call(in_acme, acme_agent):
    quiet = make_queue("Quiet")
    conversation = make_conversation()
    message_append_inbound(conversation=conversation, body="Hi", provider_message_id="SM-quiet")
    handled_and_resolved(conversation, quiet, acme_agent)
    call = make_conversation(channel="voice")
    message_append_inbound(conversation=call, body="Incoming call", provider_message_id="CA-call")
    handled_and_resolved(call, make_queue("Phones", csat_survey=True), acme_agent)
    assert not CsatSurvey.objects.exists()
    # Without a survey a "5" is just a message: it reopens the conversation.
    message_append_inbound(conversation=conversation, body="5", provider_message_id="SM-quiet-5")
    conversation.refresh_from_db()
    assert conversation.status == "open"


def test_a_conversation_resolved_before_an_agent_took_it_asks_nothing(in_acme, care, acme_agent):
    conversation = make_conversation()
    make_task(conversation, care)
    conversation_end(conversation=conversation, actor=acme_agent)
    assert not CsatSurvey.objects.exists()


@pytest.mark.parametrize(
    ("body", "score"),
    [("5", 5), (" 1 ", 1), ("3/5", 3), ("4!", 4), ("2.", 2),
     ("5\n\nOn Tue, 10 Mar 2026, Acme Support wrote:\n> How did we do? Reply 1–5", 5),
     ("4\n> How did we do?", 4), ("6", None), ("0", None), ("45", None), ("5 stars", None), ("I'd say 4", None),
     ("", None)],
)  # fmt: skip
def test_what_counts_as_a_rating(body, score):
    assert csat_score_of(body) == score


def test_through_the_sms_webhook_the_rating_is_not_routed(acme, acme_agent):
    """End to end: a customer's SMS is queued, handled and resolved; their "5" by SMS is the rating,
    and no task is created for it; their next question is routed as usual."""
    endpoint = make_endpoint(acme, address=ACME_NUMBER, account_sid=ACME_SID, token=ACME_TOKEN)
    with tenant_context(acme):
        care = Queue.objects.create(tenant=acme, name="Care", channels=["sms"], csat_survey=True)
        endpoint.default_queue = care
        endpoint.save()
    twilio = TwilioSigner(Client())
    assert twilio.post(MESSAGING, inbound_sms(sender=CUSTOMER, body="My order is broken")).status_code == 200
    with tenant_context(acme):
        conversation = Conversation.objects.get()
        task = handled_and_resolved(conversation, care, acme_agent)
        assert task.status == TaskStatus.WRAPPING

    assert twilio.post(MESSAGING, inbound_sms(sender=CUSTOMER, body="5")).status_code == 200
    with tenant_context(acme):
        conversation.refresh_from_db()
        assert conversation.status == "resolved"
        assert Task.objects.count() == 1  # no new task for the rating
        assert CsatSurvey.objects.get().score == 5

    assert twilio.post(MESSAGING, inbound_sms(sender=CUSTOMER, body="Also, the box was wet")).status_code == 200
    with tenant_context(acme):
        conversation.refresh_from_db()
        assert conversation.status == "open"
        assert Task.objects.filter(status=TaskStatus.PENDING, queue=care).count() == 1


def test_supervisors_read_the_ratings_in_the_admin(resolved, acme_supervisor, globex_supervisor):
    message_append_inbound(conversation=resolved, body="5", provider_message_id="SM-csat-admin")
    url = reverse("admin:conversations_csatsurvey_changelist")
    html = signed_in_client(acme_supervisor).get(url).content.decode()
    assert "acme-agent1" in html and 'field-score">5<' in html and "1 CSAT survey" in html
    assert "0 CSAT surveys" in signed_in_client(globex_supervisor).get(url).content.decode()
