"""Inbound work reaches an agent: every channel queues its conversation, once, and routing offers it live."""

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from channels_inbound.services import inbound_conversation_route
from channels_inbound.webchat.services import webchat_message_store
from contactcenter.tenancy import dangerously_all_tenants, tenant_context
from conversations.models import Conversation, Message
from tasks.models import AgentStatus, Queue, Task, TaskStatus
from tests.channels_inbound.conftest import TwilioSigner, inbound_sms, make_endpoint
from tests.contactcenter.test_realtime import connect

MESSAGING = "/webhooks/twilio/messaging"


@pytest.fixture
def support_queue(acme):
    with tenant_context(acme):
        return Queue.objects.create(tenant=acme, name="Support", channels=["sms", "webchat"])


def acme_rows():
    with dangerously_all_tenants():
        return {
            "messages": list(Message.objects.values_list("tenant__slug", flat=True)),
            "conversations": list(Conversation.objects.values_list("tenant__slug", flat=True)),
            "tasks": list(Task.objects.values_list("tenant__slug", "queue__name", "status")),
        }


def test_an_inbound_sms_queues_one_task_with_its_deadline_however_often_it_is_sent(twilio, acme_sms, support_queue):
    fields = inbound_sms(body="My parcel is late")
    for _ in range(3):
        assert twilio.post(MESSAGING, fields).status_code == 200
    assert acme_rows() == {"messages": ["acme"], "conversations": ["acme"], "tasks": [("acme", "Support", "pending")]}
    assert twilio.post(MESSAGING, inbound_sms(body="Hello?")).status_code == 200  # the same customer again
    with tenant_context(acme_sms.tenant_id):
        [task] = Task.objects.all()
        assert task.first_response_due_at is not None and task.sla_warning_at < task.first_response_due_at
        assert Message.objects.count() == 2


def test_the_endpoints_default_queue_wins(twilio, acme, acme_sms, support_queue):
    with tenant_context(acme):
        vip = Queue.objects.create(tenant=acme, name="VIP line", channels=["sms"])
        acme_sms.default_queue = vip
        acme_sms.save()
    assert twilio.post(MESSAGING, inbound_sms()).status_code == 200
    assert acme_rows()["tasks"] == [("acme", "VIP line", "pending")]


def test_without_a_queue_for_the_channel_the_conversation_waits_unrouted(twilio, acme_sms):
    assert twilio.post(MESSAGING, inbound_sms()).status_code == 200
    rows = acme_rows()
    assert rows["messages"] == ["acme"] and rows["tasks"] == []


def test_a_webchat_visitor_message_is_queued_too(acme, support_queue):
    endpoint = make_endpoint(acme, address="acme-widget-test", account_sid="", token="", channel="webchat")
    with tenant_context(acme):
        message, created = webchat_message_store(endpoint=endpoint, visitor_id="visitor-1", client_id="c1", body="Hi!")
        assert created
        [task] = Task.objects.filter(conversation=message.conversation)
        assert (task.queue, task.status) == (support_queue, TaskStatus.PENDING)
        again = inbound_conversation_route(endpoint=endpoint, conversation=message.conversation)
        assert again == task  # one task per conversation, however many messages


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_sync_thread_connections")
async def test_a_signed_inbound_sms_is_offered_live_to_an_available_agent(
    worker_and_beat, acme, acme_sms, support_queue, acme_agent, globex_agent
):
    from tasks.services import agent_choose_queues, agent_set_status

    def agent_ready():
        with tenant_context(acme):
            agent_choose_queues(membership=acme_agent, queues=[support_queue])
            agent_set_status(membership=acme_agent, status=AgentStatus.AVAILABLE)

    acme_socket, connected, _ = await connect(acme_agent.user)
    assert connected
    globex_socket, connected, _ = await connect(globex_agent.user)
    assert connected
    try:
        await sync_to_async(agent_ready)()
        while 'data-status="available"' not in await acme_socket.receive_from(timeout=10):
            pass  # the desktop's status bar, redrawn live
        response = await sync_to_async(TwilioSigner(Client()).post)(MESSAGING, inbound_sms(body="Help!"))
        assert response.status_code == 200

        while 'id="offer-' not in (frame := await acme_socket.receive_from(timeout=10)):
            pass
        assert "Help!" in frame  # the offer shows the customer's message
        rows = await sync_to_async(acme_rows)()
        assert rows["messages"] == ["acme"] and rows["conversations"] == ["acme"]
        assert rows["tasks"] == [("acme", "Support", "reserved")]
        assert await globex_socket.receive_nothing(timeout=1)
    finally:
        await acme_socket.disconnect()
        await globex_socket.disconnect()


def test_work_from_an_unnamed_customer_is_titled_with_their_number(twilio, acme_sms, support_queue):
    assert twilio.post(MESSAGING, inbound_sms(sender="+15551239876")).status_code == 200
    with tenant_context(acme_sms.tenant_id):
        assert Task.objects.get().title == "SMS with +15551239876"


def test_a_customer_writing_after_a_reply_starts_a_new_response_clock(twilio, acme_sms, support_queue, acme_agent):
    from conversations.services import message_send_reply

    assert twilio.post(MESSAGING, inbound_sms(body="First question")).status_code == 200
    with tenant_context(acme_sms.tenant_id):
        task = Task.objects.get()
        first_due = task.first_response_due_at
        message_send_reply(conversation=task.conversation, author=acme_agent, body="Answered!")
    assert twilio.post(MESSAGING, inbound_sms(body="Follow-up question")).status_code == 200
    with tenant_context(acme_sms.tenant_id):
        task.refresh_from_db()
        waiting_since = Conversation.objects.get(pk=task.conversation_id).waiting_since
        assert task.first_response_due_at > first_due
        assert task.first_response_due_at == waiting_since + timedelta(seconds=support_queue.sla_normal_seconds)
