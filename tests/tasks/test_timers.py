"""The timer sweeps, called directly: each fires once, writes why, and a concurrent twin does nothing."""

from datetime import timedelta

import pytest
from django.utils import timezone

from contactcenter import realtime
from contactcenter.tenancy import tenant_context
from conversations.models import Conversation, ConversationPriority, ConversationStatus
from conversations.services import message_append_inbound, message_send_reply
from tasks import timers
from tasks.models import Disposition, SlaState, Task, TaskStatus, WrapUpMode
from tests.conversations.conftest import GroupListener, activity_after, activity_mark, make_conversation, make_queue, make_task, race

NOW = timezone.now


@pytest.fixture
def support(in_acme):
    resolved = Disposition.objects.create(tenant_id=in_acme.pk, name="Resolved")
    return make_queue(
        "Support", channels=["sms"], wrap_up_mode=WrapUpMode.AUTOMATIC, wrap_up_seconds=30, default_disposition=resolved
    )


def wrapping_task(queue, agent, due_in: timedelta) -> Task:
    conversation = make_conversation(status=ConversationStatus.RESOLVED, assignee=agent, resolved_at=NOW())
    return make_task(conversation, queue, status=TaskStatus.WRAPPING, assignee=agent, wrap_up_due_at=NOW() + due_in)


def waiting_task(queue, *, waited: timedelta, warn_in: timedelta, due_in: timedelta, agent=None, **conversation_columns) -> Task:
    conversation = make_conversation(waiting_since=NOW() - waited, **conversation_columns)
    return make_task(
        conversation, queue, status=TaskStatus.ASSIGNED if agent else TaskStatus.PENDING, assignee=agent,
        sla_warning_at=NOW() + warn_in, first_response_due_at=NOW() + due_in,
    )  # fmt: skip


# --- wrap-up --------------------------------------------------------------------------------------


def test_automatic_wrap_up_completes_with_the_queues_default_disposition(support, acme_agent):
    due = wrapping_task(support, acme_agent, due_in=-timedelta(seconds=1))
    not_yet = wrapping_task(support, acme_agent, due_in=timedelta(minutes=5))
    mark = activity_mark()

    assert timers.wrap_ups_complete_due() == 1
    due.refresh_from_db()
    assert (due.status, due.disposition.name) == (TaskStatus.COMPLETED, "Resolved")
    assert ("completion", "wrapping", "completed") in activity_after(mark)
    not_yet.refresh_from_db()
    assert not_yet.status == TaskStatus.WRAPPING
    assert timers.wrap_ups_complete_due() == 0  # nothing fires twice


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_wrap_up_sweeps_complete_a_task_once(acme, acme_agent):
    with tenant_context(acme):
        resolved = Disposition.objects.create(tenant=acme, name="Resolved")
        queue = make_queue(wrap_up_mode=WrapUpMode.AUTOMATIC, default_disposition=resolved)
        tasks = [wrapping_task(queue, acme_agent, due_in=-timedelta(seconds=1)) for _ in range(20)]
        mark = activity_mark()
    results = race(timers.wrap_ups_complete_due, timers.wrap_ups_complete_due)
    assert sum(results) == 20, results
    completions = [row for row in activity_after(mark) if row[0] == "completion"]
    assert len(completions) == 20
    with tenant_context(acme):
        assert set(Task.objects.filter(pk__in=[t.pk for t in tasks]).values_list("status", flat=True)) == {"completed"}


# --- SLA --------------------------------------------------------------------------------------------


def test_sla_warning_fires_once_and_tells_the_agent_and_supervisors(
    support, acme_agent, acme_supervisor, django_capture_on_commit_callbacks
):
    task = waiting_task(support, waited=timedelta(minutes=50), warn_in=-timedelta(seconds=1), due_in=timedelta(minutes=10), agent=acme_agent)
    supervisors = GroupListener(realtime.supervisors_group(task.tenant_id))
    agent = GroupListener(realtime.agent_group(task.tenant_id, acme_agent.pk))
    mark = activity_mark()

    with django_capture_on_commit_callbacks(execute=True):
        assert timers.sla_warnings_due() == 1
        assert timers.sla_warnings_due() == 0
    task.refresh_from_db()
    assert task.sla_state == SlaState.WARNING
    assert activity_after(mark) == [("sla", "ok", "warning")]
    assert supervisors.receive()["event"] == "task.sla"
    assert agent.receive()["data"]["sla"] == "warning"


def test_sla_breach_escalates_raising_priority_and_moving_to_the_escalation_queue(support, acme_agent):
    escalations = make_queue("Escalations", channels=["sms"])
    support.escalation_queue = escalations
    support.save()
    task = waiting_task(support, waited=timedelta(hours=2), warn_in=-timedelta(minutes=20), due_in=-timedelta(seconds=1),
                        agent=acme_agent, priority=ConversationPriority.NORMAL, status=ConversationStatus.IN_PROGRESS)  # fmt: skip
    mark = activity_mark()

    assert timers.sla_breaches_due() == 1
    assert timers.sla_breaches_due() == 0
    task.refresh_from_db()
    conversation = Conversation.objects.get(pk=task.conversation_id)
    assert task.sla_state == SlaState.BREACHED and task.escalated_at is not None
    assert conversation.priority == ConversationPriority.HIGH
    assert (task.queue_id, task.status) == (escalations.pk, TaskStatus.PENDING)
    kinds = [kind for kind, _, _ in activity_after(mark)]
    assert kinds[:3] == ["sla", "escalation", "priority"] and "transfer" in kinds


def test_a_reply_stops_the_clock(support, acme_agent):
    task = waiting_task(support, waited=timedelta(hours=2), warn_in=-timedelta(minutes=20), due_in=-timedelta(seconds=1), agent=acme_agent,
                        status=ConversationStatus.IN_PROGRESS, assignee=acme_agent)  # fmt: skip
    message_send_reply(conversation=task.conversation, author=acme_agent, body="On it!")
    assert timers.sla_warnings_due() == 0
    assert timers.sla_breaches_due() == 0
    task.refresh_from_db()
    assert task.sla_state == SlaState.OK


def test_response_deadline_is_computed_from_the_wait_and_restarts_with_a_new_wait(support, acme_agent):
    support.sla_normal_seconds, support.sla_warning_seconds = 3600, 600
    support.save()
    conversation = make_conversation()
    message_append_inbound(conversation=conversation, body="Hello?", provider_message_id="first")
    conversation.refresh_from_db()
    task = make_task(conversation, support)

    assert timers.task_response_deadline_refresh(task=task, conversation=conversation) is True
    assert task.first_response_due_at == conversation.waiting_since + timedelta(hours=1)
    assert task.sla_warning_at == conversation.waiting_since + timedelta(minutes=50)
    assert timers.task_response_deadline_refresh(task=task, conversation=conversation) is False  # same wait

    Task.objects.filter(pk=task.pk).update(sla_state=SlaState.WARNING)
    task.refresh_from_db()
    Conversation.objects.filter(pk=conversation.pk).update(waiting_since=NOW() + timedelta(minutes=5))
    conversation.refresh_from_db()
    assert timers.task_response_deadline_refresh(task=task, conversation=conversation) is True
    task.refresh_from_db()
    assert task.sla_state == SlaState.OK
    assert task.first_response_due_at == conversation.waiting_since + timedelta(hours=1)


def test_a_customer_writing_n_times_without_a_reply_escalates(support, acme_agent):
    support.follow_ups_before_escalation = 3
    support.save()
    conversation = make_conversation()
    task = make_task(conversation, support)
    for number in range(2):
        message_append_inbound(conversation=conversation, body=f"hello {number}", provider_message_id=f"f{number}")
    assert timers.follow_ups_escalate(task=task, conversation=conversation) is False
    message_append_inbound(conversation=conversation, body="anyone?", provider_message_id="f2")
    mark = activity_mark()
    assert timers.follow_ups_escalate(task=task, conversation=conversation) is True
    assert timers.follow_ups_escalate(task=Task.objects.get(pk=task.pk), conversation=conversation) is False
    assert [kind for kind, _, _ in activity_after(mark)][:2] == ["escalation", "priority"]


# --- auto-close -------------------------------------------------------------------------------------


def test_resolved_conversations_close_after_their_tenants_quiet_period(acme, globex):
    acme.auto_close_after_hours, globex.auto_close_after_hours = 24, 72
    acme.save()
    globex.save()
    with tenant_context(acme):
        old = make_conversation(status=ConversationStatus.RESOLVED, resolved_at=NOW() - timedelta(hours=25))
        recent = make_conversation(status=ConversationStatus.RESOLVED, resolved_at=NOW() - timedelta(hours=23))
    with tenant_context(globex):
        globex_old = make_conversation(status=ConversationStatus.RESOLVED, resolved_at=NOW() - timedelta(hours=25))

    assert timers.conversations_auto_close_due() == 1
    assert timers.conversations_auto_close_due() == 0
    with tenant_context(acme):
        assert Conversation.objects.get(pk=old.pk).status == ConversationStatus.CLOSED
        assert Conversation.objects.get(pk=recent.pk).status == ConversationStatus.RESOLVED
    with tenant_context(globex):
        assert Conversation.objects.get(pk=globex_old.pk).status == ConversationStatus.RESOLVED


# --- the reaper -------------------------------------------------------------------------------------


def test_the_reaper_requeues_a_reserved_task_that_no_offer_holds_and_says_why(support):
    stuck = make_task(make_conversation(), support, status=TaskStatus.RESERVED, status_changed_at=NOW() - timedelta(minutes=1))
    fresh = make_task(make_conversation(), support, status=TaskStatus.RESERVED, status_changed_at=NOW())
    mark = activity_mark()
    assert timers.tasks_reap_stuck() == 1
    stuck.refresh_from_db()
    fresh.refresh_from_db()
    assert (stuck.status, fresh.status) == (TaskStatus.PENDING, TaskStatus.RESERVED)
    with tenant_context(stuck.tenant_id):
        from conversations.models import Activity

        reason = Activity.objects.filter(pk__gt=mark, task=stuck).values_list("reason", flat=True).get()
    assert "Reaper" in reason and "no live offer" in reason


def test_the_reaper_ends_an_automatic_wrap_up_that_had_no_end_time(support, acme_agent):
    task = wrapping_task(support, acme_agent, due_in=timedelta(0))
    Task.objects.filter(pk=task.pk).update(wrap_up_due_at=None)
    assert timers.tasks_reap_stuck() == 1
    assert timers.wrap_ups_complete_due() == 1
    task.refresh_from_db()
    assert task.status == TaskStatus.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_offer_sweeps_time_each_offer_out_once(acme, acme_agent, acme_agent2):
    from conversations.models import Activity
    from tasks.models import Offer, OfferStatus

    with tenant_context(acme):
        queue = make_queue(channels=["sms"], missed_offers_before_unavailable=0)
        offers = []
        for _ in range(10):
            task = make_task(make_conversation(), queue, status=TaskStatus.RESERVED)
            for agent in (acme_agent, acme_agent2):
                offers.append(
                    Offer.objects.create(tenant=acme, task=task, agent=agent, expires_at=NOW() - timedelta(seconds=1))
                )
    results = race(timers.offers_expire_due, timers.offers_expire_due)
    assert sum(results) == 20, results
    with tenant_context(acme):
        assert set(Offer.objects.filter(pk__in=[o.pk for o in offers]).values_list("status", flat=True)) == {OfferStatus.TIMED_OUT}
        assert Activity.objects.filter(new_value=f"offer {OfferStatus.TIMED_OUT}").count() == 20
        assert set(Task.objects.filter(queue=queue).values_list("status", flat=True)) == {TaskStatus.PENDING}


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sla_and_auto_close_sweeps_act_on_each_row_once(acme, acme_agent):
    from conversations.models import Activity

    with tenant_context(acme):
        acme.auto_close_after_hours = 1
        acme.save()
        queue = make_queue(channels=["sms"])
        warned = [waiting_task(queue, waited=timedelta(minutes=5), warn_in=-timedelta(seconds=1), due_in=timedelta(hours=1)) for _ in range(5)]
        breached = [
            waiting_task(queue, waited=timedelta(hours=2), warn_in=-timedelta(minutes=30), due_in=-timedelta(seconds=1))
            for _ in range(5)
        ]
        Task.objects.filter(pk__in=[task.pk for task in breached]).update(sla_state=SlaState.WARNING)
        closing = [make_conversation(status=ConversationStatus.RESOLVED, resolved_at=NOW() - timedelta(hours=2)) for _ in range(5)]

    for sweep in (timers.sla_warnings_due, timers.sla_breaches_due, timers.conversations_auto_close_due):
        assert sum(race(sweep, sweep)) == 5, sweep.__name__
    with tenant_context(acme):
        assert Activity.objects.filter(task__in=warned, kind="sla", new_value="warning").count() == 5
        assert Activity.objects.filter(task__in=breached, kind="escalation").count() == 5
        assert Activity.objects.filter(conversation__in=closing, kind="status", new_value="closed").count() == 5
