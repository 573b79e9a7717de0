"""Conversation, contact, message and note services on real PostgreSQL (and Redis for pushes and jobs)."""

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from contactcenter import realtime
from contactcenter.errors import AlreadyTaken, TransitionNotAllowed
from contactcenter.tenancy import tenant_context
from conversations import delivery
from conversations.errors import (
    ChangedMeanwhile,
    CrossTenantLink,
    InvalidIdentity,
    MergeNotAllowed,
    MessageNotAllowed,
    ReasonRequired,
    SplitNotAllowed,
    TagsNotAllowed,
    TransferNotAllowed,
)
from conversations.models import Activity, Conversation, ConversationStatus, InternalNote, Message
from conversations.selectors import conversations_tagged
from conversations.services import (
    CONVERSATION_TRANSITIONS,
    attachment_add,
    contact_find_or_create,
    conversation_assign,
    conversation_end,
    conversation_find_or_start,
    conversation_merge,
    conversation_set_priority,
    conversation_set_tags,
    conversation_split,
    conversation_transfer,
    conversation_transition,
    message_append_inbound,
    message_deliver,
    message_delivery_update,
    message_schedule,
    message_send_reply,
    note_add,
)
from tasks.models import Task, TaskKind, TaskStatus
from tasks.services import task_complete, task_create_follow_up
from tests.conversations.conftest import (
    activity_after,
    activity_mark,
    add_messages,
    make_contact,
    make_conversation,
    make_task,
    snapshot,
)

C = ConversationStatus
ALLOWED = [(old, new) for old, targets in CONVERSATION_TRANSITIONS.items() for new in sorted(targets)]
REFUSED = [(old, new) for old in C.values for new in C.values if new not in CONVERSATION_TRANSITIONS[old]]


# --- contacts ---------------------------------------------------------------------------------


def test_sms_then_whatsapp_from_the_same_number_is_one_contact(in_acme):
    by_sms, created = contact_find_or_create(kind="phone", value="+1 (555) 010-0001", name="Zoë")
    assert created
    by_whatsapp, created = contact_find_or_create(kind="whatsapp", value="whatsapp:+15550100001", name="Zoe W")
    assert not created and by_whatsapp == by_sms
    assert by_whatsapp.name == "Zoë"  # an existing name is kept
    assert sorted(by_sms.identities.values_list("kind", "value")) == [
        ("phone", "+15550100001"),
        ("whatsapp", "+15550100001"),
    ]
    # and the other way round: a WhatsApp-first customer texting by SMS
    first, _ = contact_find_or_create(kind="whatsapp", value="whatsapp:+447700900123")
    again, created = contact_find_or_create(kind="phone", value="+44 7700 900123")
    assert again == first and not created


def test_email_identity_is_case_insensitive_and_invalid_identities_are_refused(in_acme):
    contact, _ = contact_find_or_create(kind="email", value="Ada@Example.COM")
    assert contact_find_or_create(kind="email", value="ada@example.com") == (contact, False)
    with pytest.raises(InvalidIdentity):
        contact_find_or_create(kind="phone", value="call me maybe")
    with pytest.raises(InvalidIdentity):
        contact_find_or_create(kind="email", value="not-an-address")


def test_the_same_number_in_two_tenants_is_two_contacts(acme, globex):
    with tenant_context(acme):
        in_acme, _ = contact_find_or_create(kind="phone", value="+15550100001")
    with tenant_context(globex):
        in_globex, created = contact_find_or_create(kind="phone", value="+15550100001")
    assert created and in_acme.pk != in_globex.pk


def test_find_or_start_reuses_the_live_conversation_and_starts_after_close(in_acme):
    contact = make_contact()
    first, started = conversation_find_or_start(contact=contact, channel="sms")
    assert started
    assert conversation_find_or_start(contact=contact, channel="sms") == (first, False)
    other_channel, started = conversation_find_or_start(contact=contact, channel="whatsapp")
    assert started and other_channel != first
    Conversation.objects.filter(pk=first.pk).update(status=C.CLOSED)
    after_close, started = conversation_find_or_start(contact=contact, channel="sms")
    assert started and after_close != first


# --- the status table -------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), REFUSED)
def test_every_transition_outside_the_table_is_refused_and_changes_nothing(in_acme, acme_agent, old, new):
    conversation = make_conversation(status=old, assignee=acme_agent)
    before = snapshot()
    with pytest.raises(TransitionNotAllowed) as refused:
        conversation_transition(conversation=conversation, to_status=new, actor=acme_agent, reason="because")
    assert "cannot become" in str(refused.value)
    assert snapshot() == before


@pytest.mark.parametrize(("old", "new"), ALLOWED)
def test_every_transition_in_the_table_writes_one_status_row(in_acme, acme_agent, old, new):
    conversation = make_conversation(status=old, assignee=acme_agent)
    mark = activity_mark()
    conversation_transition(conversation=conversation, to_status=new, actor=acme_agent, reason="Waiting for a refund")
    conversation.refresh_from_db()
    assert conversation.status == new
    assert activity_after(mark) == [("status", old, new)]
    row = Activity.objects.get(pk__gt=mark)
    assert (row.actor, row.via, row.reason) == (acme_agent, "agent", "Waiting for a refund")
    assert row.conversation == conversation


def test_pending_needs_a_reason_and_keeps_it_until_it_leaves_pending(in_acme, acme_agent):
    conversation = make_conversation(status=C.IN_PROGRESS, assignee=acme_agent)
    with pytest.raises(ReasonRequired):
        conversation_transition(conversation=conversation, to_status=C.PENDING, actor=acme_agent, reason="  ")
    conversation_transition(conversation=conversation, to_status=C.PENDING, actor=acme_agent, reason="Customer's photo")
    assert Conversation.objects.get(pk=conversation.pk).pending_reason == "Customer's photo"
    conversation_transition(conversation=conversation, to_status=C.RESOLVED, actor=acme_agent)
    stored = Conversation.objects.get(pk=conversation.pk)
    assert stored.pending_reason == "" and stored.resolved_at is not None


def test_assigned_without_an_agent_is_refused(in_acme):
    conversation = make_conversation(status=C.OPEN)
    with pytest.raises(TransitionNotAllowed, match="no agent"):
        conversation_transition(conversation=conversation, to_status=C.ASSIGNED)


def test_a_stale_view_loses_the_compare_and_set(in_acme, acme_agent):
    conversation = make_conversation(status=C.IN_PROGRESS, assignee=acme_agent)
    stale = Conversation.objects.get(pk=conversation.pk)
    conversation_transition(conversation=conversation, to_status=C.RESOLVED, actor=acme_agent)
    mark = activity_mark()
    with pytest.raises(ChangedMeanwhile, match="now resolved"):
        conversation_transition(conversation=stale, to_status=C.PENDING, actor=acme_agent, reason="x")
    assert activity_after(mark) == []
    assert Conversation.objects.get(pk=conversation.pk).status == C.RESOLVED


# --- inbound messages -------------------------------------------------------------------------


def test_inbound_message_keeps_unicode_and_sets_the_sla_columns(in_acme):
    conversation = make_conversation()
    body = "Bonjour 👋🏽 — 我的订单在哪里？ 👨‍👩‍👧"
    message, created = message_append_inbound(conversation=conversation, body=body, provider_message_id="SM1")
    assert created
    stored = Message.objects.get(pk=message.pk)
    assert stored.body == body and stored.direction == "inbound" and stored.delivery_status == "received"
    conversation.refresh_from_db()
    assert conversation.last_customer_message_at == stored.created_at
    assert conversation.waiting_since == stored.created_at
    later, _ = message_append_inbound(conversation=conversation, body="hello?", provider_message_id="SM2")
    conversation.refresh_from_db()
    assert conversation.last_customer_message_at == later.created_at
    assert conversation.waiting_since == stored.created_at  # still waiting since the first one


def test_appending_the_same_provider_id_twice_yields_one_message_and_no_side_effects(in_acme):
    conversation = make_conversation()
    first, created = message_append_inbound(conversation=conversation, body="hi", provider_message_id="SMdup")
    before = snapshot()
    again, created_again = message_append_inbound(conversation=conversation, body="hi", provider_message_id="SMdup")
    assert created and not created_again and again.pk == first.pk
    assert snapshot() == before
    assert Message.objects.filter(provider_message_id="SMdup").count() == 1


def test_the_same_provider_id_in_another_tenant_is_another_message(acme, globex):
    for tenant in (acme, globex):
        with tenant_context(tenant):
            _, created = message_append_inbound(conversation=make_conversation(), body="x", provider_message_id="SMx")
            assert created


@pytest.mark.parametrize(
    ("status", "assignee", "reopened_to"),
    [(C.RESOLVED, True, C.OPEN), (C.PENDING, True, C.IN_PROGRESS), (C.PENDING, False, C.OPEN)],
)
def test_a_customer_message_reopens_resolved_and_pending_conversations(
    in_acme, acme_agent, status, assignee, reopened_to
):
    conversation = make_conversation(status=status, assignee=acme_agent if assignee else None)
    mark = activity_mark()
    message_append_inbound(conversation=conversation, body="any news?", provider_message_id="SM-reopen")
    conversation.refresh_from_db()
    assert conversation.status == reopened_to
    assert activity_after(mark) == [("status", status, reopened_to)]
    assert Activity.objects.get(pk__gt=mark).via == "webhook"
    if status == C.RESOLVED:
        assert conversation.assignee is None  # routed again


def test_a_closed_conversation_takes_no_message(in_acme):
    conversation = make_conversation(status=C.CLOSED)
    with pytest.raises(MessageNotAllowed):
        message_append_inbound(conversation=conversation, body="hello", provider_message_id="SMc")
    assert not Message.objects.exists()


# --- outbound messages ------------------------------------------------------------------------


def enqueued_jobs(client) -> list[tuple[str, str]]:
    return [
        (payload["headers"]["task"], payload["headers"]["argsrepr"])
        for payload in (json.loads(raw) for raw in client.lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1))
    ]


def test_send_reply_records_a_queued_message_and_enqueues_delivery_on_commit(
    world, broker, django_capture_on_commit_callbacks
):
    conversation = world.live
    message_append_inbound(conversation=conversation, body="still there?", provider_message_id="SM-wait")
    mark = activity_mark()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message = message_send_reply(conversation=conversation, author=world.agent, body="Yes! Checking 🙂")
    assert enqueued_jobs(broker) == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()
    assert enqueued_jobs(broker) == [
        ("conversations.jobs.deliver_outbound_message", repr([world.tenant.pk, message.pk]))
    ]
    message.refresh_from_db()
    assert (message.direction, message.delivery_status, message.author) == ("outbound", "queued", world.agent)
    conversation.refresh_from_db()
    assert conversation.first_response_at == message.created_at
    assert conversation.waiting_since is None
    assert conversation.status == C.IN_PROGRESS
    assert activity_after(mark) == [("status", "assigned", "in_progress")]


def test_a_second_reply_keeps_the_first_response_time(world):
    first = message_send_reply(conversation=world.live, author=world.agent, body="one")
    message_send_reply(conversation=world.live, author=world.agent, body="two")
    world.live.refresh_from_db()
    assert world.live.first_response_at == first.created_at


def test_an_empty_reply_is_refused(world):
    with pytest.raises(MessageNotAllowed):
        message_send_reply(conversation=world.live, author=world.agent, body=" \n ")


def test_schedule_needs_a_future_time_and_enqueues_with_that_eta(world, broker, django_capture_on_commit_callbacks):
    with pytest.raises(MessageNotAllowed):
        message_schedule(conversation=world.live, author=world.agent, body="x", send_at=timezone.now())
    send_at = timezone.now() + timedelta(minutes=30)
    with django_capture_on_commit_callbacks(execute=True):
        message = message_schedule(conversation=world.live, author=world.agent, body="Reminder", send_at=send_at)
    assert (message.delivery_status, message.send_at) == ("queued", send_at)
    payload = json.loads(broker.lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1)[0])
    assert payload["headers"]["eta"] == send_at.isoformat()
    world.live.refresh_from_db()
    assert world.live.first_response_at is None  # a scheduled message is not a reply yet


@pytest.fixture
def no_sms_sender():
    """No sender for sms during the test (the channels app registers one); the registry is restored after."""
    previous = delivery.sender_for("sms")
    delivery.unregister_sender("sms")
    yield
    if previous is not None:
        delivery.register_sender("sms", previous)


def test_delivery_without_a_sender_fails_the_message_with_the_reason(world, no_sms_sender):
    message = message_send_reply(conversation=world.live, author=world.agent, body="hello")
    message_deliver(message=message)
    message.refresh_from_db()
    assert message.delivery_status == "failed"
    assert message.error_reason == "no sender configured for channel sms"


def test_the_delivery_job_runs_the_service(world, no_sms_sender):
    from conversations.jobs import deliver_outbound_message

    message = message_send_reply(conversation=world.live, author=world.agent, body="hello")
    deliver_outbound_message.apply(args=[world.tenant.pk, message.pk])
    message.refresh_from_db()
    assert (message.delivery_status, message.error_reason) == ("failed", "no sender configured for channel sms")


@pytest.fixture
def sms_sender():
    """A real sender registered through the registry (as the channels issue will), recording its calls."""
    calls = []
    outcomes = []

    def send(message):
        calls.append(message.body)
        outcome = outcomes.pop(0) if outcomes else "SMok"
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    previous = delivery.sender_for("sms")
    delivery.register_sender("sms", send)
    yield calls, outcomes
    delivery.unregister_sender("sms")
    if previous is not None:
        delivery.register_sender("sms", previous)


def test_delivery_with_a_sender_marks_sent_once_even_if_run_twice(world, sms_sender):
    calls, _ = sms_sender
    message = message_send_reply(conversation=world.live, author=world.agent, body="hello")
    message_deliver(message=message)
    message_deliver(message=Message.objects.get(pk=message.pk))  # a duplicate job
    message.refresh_from_db()
    assert calls == ["hello"]
    assert (message.delivery_status, message.provider_message_id) == ("sent", "SMok")


def test_a_temporary_failure_retries_then_fails_at_the_last_attempt(world, sms_sender):
    calls, outcomes = sms_sender
    outcomes += [delivery.TemporaryFailure("provider timeout"), delivery.TemporaryFailure("provider timeout", "503")]
    message = message_send_reply(conversation=world.live, author=world.agent, body="hello")
    with pytest.raises(delivery.TemporaryFailure):
        message_deliver(message=message, final_attempt=False)
    message.refresh_from_db()
    assert (message.delivery_status, message.send_claimed_at) == ("queued", None)  # free for the retry
    message_deliver(message=message, final_attempt=True)
    message.refresh_from_db()
    assert (message.delivery_status, message.error_code, message.error_reason) == ("failed", "503", "provider timeout")
    assert len(calls) == 2


def test_a_permanent_failure_fails_at_once(world, sms_sender):
    _, outcomes = sms_sender
    outcomes.append(delivery.PermanentFailure("The 'To' number is not a valid phone number.", "21211"))
    message = message_send_reply(conversation=world.live, author=world.agent, body="hello")
    message_deliver(message=message, final_attempt=False)
    message.refresh_from_db()
    assert (message.delivery_status, message.error_code) == ("failed", "21211")


def test_a_scheduled_message_is_not_sent_before_its_time(world, sms_sender):
    calls, _ = sms_sender
    message = message_schedule(
        conversation=world.live, author=world.agent, body="later", send_at=timezone.now() + timedelta(hours=3)
    )
    message_deliver(message=message)
    message.refresh_from_db()
    assert calls == [] and message.delivery_status == "queued" and message.send_claimed_at is None


def test_delivery_status_never_moves_backwards(world):
    message = message_send_reply(conversation=world.live, author=world.agent, body="hello")
    assert message_delivery_update(message=message, status="sent")
    assert message_delivery_update(message=message, status="delivered")
    assert not message_delivery_update(message=message, status="sent")  # late callback
    assert not message_delivery_update(message=message, status="failed", error_code="30003")
    assert Message.objects.get(pk=message.pk).delivery_status == "delivered"
    assert message_delivery_update(message=message, status="read")
    assert not message_delivery_update(message=message, status="delivered")
    stored = Message.objects.get(pk=message.pk)
    assert (stored.delivery_status, stored.error_code) == ("read", "")


def test_a_failed_message_keeps_its_error_and_stays_failed(world):
    message = message_send_reply(conversation=world.live, author=world.agent, body="hello")
    assert message_delivery_update(message=message, status="undelivered", error_code="30005", error_reason="Unknown")
    assert not message_delivery_update(message=message, status="delivered")
    stored = Message.objects.get(pk=message.pk)
    assert (stored.delivery_status, stored.error_code, stored.error_reason) == ("undelivered", "30005", "Unknown")


def test_attachments_are_stored_under_a_tenant_prefixed_path(world, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    message, _ = message_append_inbound(conversation=world.live, body="photo", provider_message_id="MM1")
    attachment = attachment_add(
        message=message, filename="../../etc/receipt 1.png", content=b"\x89PNG...", content_type="image/png"
    )
    assert attachment.file.name == f"tenants/{world.tenant.pk}/attachments/{attachment.public_id}/receipt_1.png"
    assert (attachment.size, attachment.content_type) == (7, "image/png")
    assert (tmp_path / attachment.file.name).read_bytes() == b"\x89PNG..."


# --- notes ------------------------------------------------------------------------------------


def test_a_note_is_rendered_safely_and_mentions_notify_members_of_this_tenant_only(
    world, globex_agent, listen, django_capture_on_commit_callbacks
):
    listener = listen(realtime.agent_group(world.tenant.pk, world.agent2.pk))
    mark = activity_mark()
    with django_capture_on_commit_callbacks(execute=True):
        note = note_add(
            conversation=world.live,
            author=world.agent,
            body="**Refund** approved, @acme-agent2 please check. Not @globex-agent1 <script>alert(1)</script>",
        )
    assert list(note.mentions.all()) == [world.agent2]
    assert "<strong>Refund</strong>" in note.body_html and "<script>" not in note.body_html
    assert note.body_markdown.startswith("**Refund**")
    assert activity_after(mark) == [("note", "", note.public_id)]
    pushed = listener.receive()
    assert pushed["event"] == "note.mention"
    assert pushed["data"]["note"] == note.public_id and pushed["data"]["conversation"] == world.live.public_id


def test_an_empty_note_is_refused(world):
    with pytest.raises(MessageNotAllowed):
        note_add(conversation=world.live, author=world.agent, body="   ")
    assert not InternalNote.objects.exists()


# --- tags and priority ------------------------------------------------------------------------


def test_tags_are_normalised_logged_and_filterable(world):
    mark = activity_mark()
    conversation_set_tags(conversation=world.live, tags=["Billing", " late delivery ", "billing"], actor=world.agent)
    assert Conversation.objects.get(pk=world.live.pk).tags == ["billing", "late-delivery"]
    assert list(conversations_tagged("Billing")) == [world.live]
    assert activity_after(mark) == [("tags", "", "billing, late-delivery")]
    conversation_set_tags(conversation=world.live, tags=["billing", "late-delivery"], actor=world.agent)
    assert activity_after(mark) == [("tags", "", "billing, late-delivery")]  # unchanged: nothing written
    with pytest.raises(TagsNotAllowed):
        conversation_set_tags(conversation=world.live, tags=["x" * 41], actor=world.agent)


def test_priority_change_is_logged_with_its_reason_and_the_task_follows(world):
    mark = activity_mark()
    conversation_set_priority(conversation=world.live, priority="urgent", actor=world.supervisor, reason="VIP customer")
    assert Conversation.objects.get(pk=world.live.pk).priority == "urgent"
    assert Task.objects.get(pk=world.task.pk).priority == "critical"
    assert activity_after(mark) == [("priority", "normal", "urgent")]
    row = Activity.objects.get(pk__gt=mark)
    assert (row.reason, row.via, row.task, row.conversation) == ("VIP customer", "supervisor", world.task, world.live)


# --- assignment, end, transfer ----------------------------------------------------------------


def test_assigning_to_another_agent_moves_conversation_and_task_and_logs_once(world):
    mark = activity_mark()
    conversation_assign(conversation=world.live, agent=world.agent2, actor=world.supervisor, note="Covering lunch")
    live, task = Conversation.objects.get(pk=world.live.pk), Task.objects.get(pk=world.task.pk)
    assert (live.assignee, live.status) == (world.agent2, "assigned")
    assert (task.assignee, task.status) == (world.agent2, "assigned")
    assert activity_after(mark) == [("assignment", "Agent1", "Agent2")]
    row = Activity.objects.get(pk__gt=mark)
    assert (row.reason, row.task, row.conversation) == ("Covering lunch", world.task, world.live)


def test_assigning_a_new_conversation_writes_the_rows_described(in_acme, acme_agent, acme_supervisor, support):
    conversation = make_conversation()
    task = make_task(conversation, support)
    mark = activity_mark()
    conversation_assign(conversation=conversation, agent=acme_agent, actor=acme_supervisor, note="Yours")
    assert activity_after(mark) == [
        ("status", "new", "assigned"),
        ("status", "pending", "assigned"),
        ("assignment", "nobody", "Agent1"),
    ]
    assert Task.objects.get(pk=task.pk).status == "assigned"


def test_assigning_to_a_team_puts_it_back_in_the_queue(world):
    from tasks.models import Team

    team = Team.objects.create(tenant=world.tenant, name="Tier 2")
    mark = activity_mark()
    conversation_assign(conversation=world.live, team=team, actor=world.supervisor, note="Needs tier 2")
    live, task = Conversation.objects.get(pk=world.live.pk), Task.objects.get(pk=world.task.pk)
    assert (live.status, live.assignee, live.team) == ("open", None, team)
    assert (task.status, task.assignee, task.team) == ("pending", None, team)
    assert activity_after(mark) == [
        ("status", "assigned", "open"),
        ("status", "assigned", "pending"),
        ("assignment", "Agent1", "team Tier 2"),
    ]


def test_an_assignment_from_a_stale_view_names_who_took_it(world):
    stale = Conversation.objects.get(pk=world.live.pk)
    conversation_assign(conversation=world.live, agent=world.agent2, actor=world.supervisor)
    with pytest.raises(AlreadyTaken, match="already taken by Agent2"):
        conversation_assign(conversation=stale, agent=world.supervisor, actor=world.supervisor)


def test_assigning_an_inactive_member_is_refused(world):
    world.agent2.is_active = False
    world.agent2.save()
    with pytest.raises(Exception, match="no longer active"):
        conversation_assign(conversation=world.live, agent=world.agent2, actor=world.supervisor)


def test_ending_a_conversation_resolves_it_and_wraps_up_its_task(world):
    mark = activity_mark()
    conversation_end(conversation=world.live, actor=world.agent, reason="Refund issued")
    live, task = Conversation.objects.get(pk=world.live.pk), Task.objects.get(pk=world.task.pk)
    assert (live.status, task.status) == ("resolved", "wrapping")
    assert activity_after(mark) == [("status", "assigned", "resolved"), ("status", "assigned", "wrapping")]


def test_ending_a_conversation_nobody_took_cancels_its_task(in_acme, acme_supervisor, support):
    conversation = make_conversation()
    task = make_task(conversation, support)
    mark = activity_mark()
    conversation_end(conversation=conversation, actor=acme_supervisor, reason="Spam")
    assert Task.objects.get(pk=task.pk).status == "canceled"
    assert activity_after(mark) == [("status", "new", "resolved"), ("status", "pending", "canceled")]


def test_transfer_to_another_queue_requeues_the_task_with_a_note(world):
    mark = activity_mark()
    conversation_transfer(conversation=world.live, queue=world.billing, actor=world.agent, note="Billing question")
    live, task = Conversation.objects.get(pk=world.live.pk), Task.objects.get(pk=world.task.pk)
    assert (live.status, live.assignee) == ("open", None)
    assert (task.status, task.queue, task.assignee) == ("pending", world.billing, None)
    assert activity_after(mark) == [
        ("status", "assigned", "open"),
        ("status", "assigned", "pending"),
        ("transfer", "Support · SMS", "Billing · SMS"),
    ]
    assert Activity.objects.filter(pk__gt=mark, kind="transfer").get().reason == "Billing question"


def test_transfer_to_another_channel_and_refusals(world):
    conversation_transfer(conversation=world.live, channel="email", actor=world.agent, note="Send the invoice by email")
    assert Conversation.objects.get(pk=world.live.pk).channel == "email"
    assert Task.objects.get(pk=world.task.pk).channel == "email"
    with pytest.raises(TransferNotAllowed, match="does not take WhatsApp"):
        conversation_transfer(conversation=world.live, queue=world.billing, channel="whatsapp", actor=world.agent)
    with pytest.raises(TransferNotAllowed):
        conversation_transfer(conversation=world.live, actor=world.agent)


# --- merge and split --------------------------------------------------------------------------


def test_merge_moves_messages_notes_and_tasks_and_closes_the_duplicate(world):
    note = note_add(conversation=world.duplicate, author=world.agent, body="Same customer as the SMS thread")
    follow_up = task_create_follow_up(conversation=world.duplicate, actor=world.agent)
    messages_before = set(Message.objects.values_list("pk", flat=True))
    mark = activity_mark()
    conversation_merge(duplicate=world.duplicate, survivor=world.live, actor=world.agent, reason="Same order")
    duplicate = Conversation.objects.get(pk=world.duplicate.pk)
    assert (duplicate.status, duplicate.merged_into) == ("closed", world.live)
    survivor_messages = list(Message.objects.filter(conversation=world.live).values_list("pk", flat=True))
    assert sorted(survivor_messages) == sorted(messages_before)  # every message exactly once
    assert not Message.objects.filter(conversation=duplicate).exists()
    assert InternalNote.objects.get(pk=note.pk).conversation == world.live
    assert Task.objects.get(pk=follow_up.pk).conversation == world.live
    assert activity_after(mark) == [
        ("status", "new", "closed"),
        ("merge", "", world.live.public_id),
        ("merge", world.duplicate.public_id, ""),
    ]
    survivor = Conversation.objects.get(pk=world.live.pk)
    last_inbound = Message.objects.filter(conversation=survivor, direction="inbound").order_by("created_at").last()
    assert survivor.last_customer_message_at == last_inbound.created_at


def test_merging_two_conversations_with_open_tasks_cancels_the_duplicates_task(world):
    duplicate_task = make_task(world.duplicate, world.support)
    mark = activity_mark()
    conversation_merge(duplicate=world.duplicate, survivor=world.live, actor=world.agent)
    assert Task.objects.get(pk=duplicate_task.pk).status == "canceled"
    assert activity_after(mark)[0] == ("status", "pending", "canceled")


def test_merge_refusals(world):
    with pytest.raises(MergeNotAllowed):
        conversation_merge(duplicate=world.live, survivor=world.live, actor=world.agent)
    closed = make_conversation(status=C.CLOSED)
    before = snapshot()
    with pytest.raises(MergeNotAllowed, match="closed"):
        conversation_merge(duplicate=closed, survivor=world.live, actor=world.agent)
    assert snapshot() == before


def test_split_moves_the_chosen_messages_to_a_new_conversation(world):
    messages = add_messages(world.live, 3, prefix="topic2-")
    everything = set(Message.objects.filter(conversation=world.live).values_list("pk", flat=True))
    mark = activity_mark()
    new = conversation_split(
        conversation=world.live,
        message_ids=[m.public_id for m in messages[1:]],
        actor=world.agent,
        reason="Other order",
    )
    moved = set(Message.objects.filter(conversation=new).values_list("pk", flat=True))
    kept = set(Message.objects.filter(conversation=world.live).values_list("pk", flat=True))
    assert moved == {m.pk for m in messages[1:]} and moved | kept == everything and not moved & kept
    assert (new.contact, new.channel, new.split_from, new.status) == (world.live.contact, "sms", world.live, "new")
    new_task = Task.objects.get(conversation=new)
    assert (new_task.queue, new_task.status, new_task.kind) == (world.support, "pending", "conversation")
    assert activity_after(mark) == [
        ("split", "2 messages", new.public_id),
        ("created", "", "sms"),
        ("created", "", "conversation"),
    ]
    assert new.waiting_since == messages[1].created_at


def test_split_refusals_change_nothing(world):
    own = list(Message.objects.filter(conversation=world.live).values_list("public_id", flat=True))
    foreign = add_messages(world.duplicate, 1, prefix="foreign")[0].public_id
    before = snapshot()
    with pytest.raises(SplitNotAllowed, match="at least one"):
        conversation_split(conversation=world.live, message_ids=own, actor=world.agent)
    with pytest.raises(SplitNotAllowed, match="not in this conversation"):
        conversation_split(conversation=world.live, message_ids=[foreign], actor=world.agent)
    with pytest.raises(SplitNotAllowed):
        conversation_split(conversation=world.live, message_ids=[], actor=world.agent)
    assert snapshot() == before


# --- tenancy ----------------------------------------------------------------------------------


@pytest.fixture
def globex_conversation(globex, globex_agent):
    with tenant_context(globex):
        conversation = make_conversation(make_contact("+15559990000"))
        add_messages(conversation, 1, prefix="globex")
        return conversation


def test_linking_rows_of_two_tenants_is_refused(world, globex_agent, globex_conversation):
    before = snapshot()
    with pytest.raises(CrossTenantLink):
        conversation_assign(conversation=world.live, agent=globex_agent, actor=world.supervisor)
    with pytest.raises(CrossTenantLink):
        conversation_merge(duplicate=globex_conversation, survivor=world.live, actor=world.agent)
    with pytest.raises(CrossTenantLink):
        message_send_reply(conversation=world.live, author=globex_agent, body="hi")
    with pytest.raises(CrossTenantLink):
        note_add(conversation=world.live, author=globex_agent, body="hi")
    assert snapshot() == before


def test_a_globex_conversation_cannot_be_changed_from_acme(world, globex_conversation):
    with pytest.raises(CrossTenantLink):
        conversation_transition(conversation=globex_conversation, to_status=C.OPEN)
    with pytest.raises(CrossTenantLink):
        message_append_inbound(conversation=globex_conversation, body="x", provider_message_id="SMg")


# --- every operation writes its rows in the caller's transaction ------------------------------


def _complete_with_follow_up(w):
    from tasks.models import AutomationRule

    AutomationRule.objects.create(tenant=w.tenant, name="Follow up", disposition=w.dispositions["Follow-up Required"])
    conversation_end(conversation=w.live, actor=w.agent)
    task_complete(task=Task.objects.get(pk=w.task.pk), actor=w.agent, disposition=w.dispositions["Follow-up Required"])


OPERATIONS = {
    "append inbound": lambda w: message_append_inbound(conversation=w.live, body="again", provider_message_id="SMnew"),
    "send reply": lambda w: message_send_reply(conversation=w.live, author=w.agent, body="hello"),
    "schedule": lambda w: message_schedule(
        conversation=w.live, author=w.agent, body="later", send_at=timezone.now() + timedelta(days=1)
    ),
    "status": lambda w: conversation_transition(conversation=w.live, to_status=C.PENDING, actor=w.agent, reason="x"),
    "priority": lambda w: conversation_set_priority(conversation=w.live, priority="high", actor=w.agent),
    "tags": lambda w: conversation_set_tags(conversation=w.live, tags=["vip"], actor=w.agent),
    "note": lambda w: note_add(conversation=w.live, author=w.agent, body="@acme-agent2 look"),
    "follow-up": lambda w: task_create_follow_up(conversation=w.live, actor=w.agent),
    "assign": lambda w: conversation_assign(conversation=w.live, agent=w.agent2, actor=w.supervisor, note="n"),
    "end": lambda w: conversation_end(conversation=w.live, actor=w.agent),
    "complete with rule": _complete_with_follow_up,
    "transfer": lambda w: conversation_transfer(conversation=w.live, queue=w.billing, actor=w.agent, note="n"),
    "merge": lambda w: conversation_merge(duplicate=w.duplicate, survivor=w.live, actor=w.agent),
    "split": lambda w: conversation_split(
        conversation=w.duplicate, message_ids=[Message.objects.filter(conversation=w.duplicate).first().public_id]
    ),
}


@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=OPERATIONS.keys())
def test_an_operation_rolled_back_by_its_caller_leaves_neither_change_nor_log(world, operation):
    before = snapshot()
    with pytest.raises(RuntimeError, match="caller fails"):
        with transaction.atomic():
            operation(world)
            assert snapshot() != before  # it did write, inside the transaction
            raise RuntimeError("the caller fails after the service returned")
    assert snapshot() == before


def test_status_push_is_sent_on_commit_only(world, listen, django_capture_on_commit_callbacks):
    listener = listen(realtime.supervisors_group(world.tenant.pk))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        conversation_transition(conversation=world.live, to_status=C.PENDING, actor=world.agent, reason="Photo")
    assert listener.receive_all(timeout=0.3) == []
    for callback in callbacks:
        callback()
    events = [(m["event"], m["data"]["conversation"], m["data"]["status"]) for m in listener.receive_all()]
    assert events == [("conversation.status", world.live.public_id, "pending")]


def test_a_member_of_the_acme_tenant_gets_no_globex_push(
    world, globex_agent, globex_conversation, listen, django_capture_on_commit_callbacks
):
    listener = listen(realtime.agent_group(world.tenant.pk, world.agent.pk))
    with tenant_context(globex_agent.tenant_id):
        with django_capture_on_commit_callbacks(execute=True):
            note_add(conversation=globex_conversation, author=globex_agent, body="@acme-agent1 hello")
    assert listener.receive_all(timeout=0.3) == []


def test_follow_up_task_from_a_conversation_is_linked_and_logged(world):
    mark = activity_mark()
    task = task_create_follow_up(
        conversation=world.live, actor=world.agent, title="Call back about the refund", assignee=world.agent
    )
    assert (task.kind, task.conversation, task.status, task.priority) == ("follow_up", world.live, "pending", "medium")
    assert task.status_label == "To Do"
    assert activity_after(mark) == [("created", "", "follow_up")]
    assert Activity.objects.get(pk__gt=mark).conversation == world.live
    assert Task.objects.filter(conversation=world.live, kind=TaskKind.FOLLOW_UP).count() == 1
    assert TaskStatus.PENDING == task.status


def test_starting_a_conversation_writes_one_created_row(in_acme, acme_agent):
    mark = activity_mark()
    conversation = conversation_find_or_start(contact=make_contact(), channel="webchat", via="webhook")[0]
    assert (conversation.status, conversation.channel) == ("new", "webchat")
    assert activity_after(mark) == [("created", "", "webchat")]
    assert Activity.objects.get(pk__gt=mark).via == "webhook"


def test_transferring_a_conversation_without_a_task_queues_a_new_one(world):
    conversation = make_conversation()
    mark = activity_mark()
    conversation_transfer(conversation=conversation, queue=world.billing, actor=world.supervisor, note="For billing")
    task = Task.objects.get(conversation=conversation)
    assert (task.kind, task.status, task.queue, task.channel) == ("conversation", "pending", world.billing, "sms")
    assert activity_after(mark) == [("created", "", "conversation"), ("transfer", "no queue · SMS", "Billing · SMS")]
