"""Timers on the real worker and beat: each fires within 2 seconds of its due time, once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from contactcenter.tenancy import tenant_context
from conversations.models import Activity, Conversation, ConversationStatus
from tasks.models import Disposition, SlaState, Task, TaskStatus, WrapUpMode
from tests.conversations.conftest import make_conversation, make_queue, make_task

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LATENESS_LIMIT = timedelta(seconds=2)


def wait_for(condition, timeout: float = 15):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_wrap_up_sla_and_auto_close_fire_on_time_and_once(worker_and_beat, acme, acme_agent):
    lead = timedelta(seconds=3)  # far enough ahead that the worker is surely polling when they fall due
    with tenant_context(acme):
        acme.auto_close_after_hours = 1
        acme.save()
        resolved = Disposition.objects.create(tenant=acme, name="Resolved")
        queue = make_queue(wrap_up_mode=WrapUpMode.AUTOMATIC, default_disposition=resolved)
        due = timezone.now() + lead

        wrapping = make_task(
            make_conversation(status=ConversationStatus.RESOLVED, assignee=acme_agent, resolved_at=timezone.now()),
            queue, status=TaskStatus.WRAPPING, assignee=acme_agent, wrap_up_due_at=due,
        )  # fmt: skip
        warned = make_task(
            make_conversation(waiting_since=timezone.now()), queue, sla_warning_at=due,
            first_response_due_at=due + timedelta(hours=1),
        )  # fmt: skip
        breached = make_task(
            make_conversation(waiting_since=timezone.now()), queue, sla_warning_at=due - timedelta(minutes=1),
            sla_state=SlaState.WARNING, first_response_due_at=due,
        )  # fmt: skip
        closing = make_conversation(status=ConversationStatus.RESOLVED, resolved_at=due - timedelta(hours=1))

    def fired():
        with tenant_context(acme):
            return (
                Task.objects.get(pk=wrapping.pk).status == TaskStatus.COMPLETED
                and Task.objects.get(pk=warned.pk).sla_state == SlaState.WARNING
                and Task.objects.get(pk=breached.pk).sla_state == SlaState.BREACHED
                and Conversation.objects.get(pk=closing.pk).status == ConversationStatus.CLOSED
            )

    wait_for(fired, timeout=20)
    with tenant_context(acme):
        acted_at = {
            "wrap-up": Activity.objects.get(task=wrapping, kind="completion").created_at,
            "sla warning": Activity.objects.get(task=warned, kind="sla").created_at,
            "sla breach": Activity.objects.get(task=breached, kind="sla").created_at,
            "escalation": Activity.objects.get(task=breached, kind="escalation").created_at,
            "auto-close": Activity.objects.get(conversation=closing, kind="status", new_value="closed").created_at,
        }
    lateness = {name: at - due for name, at in acted_at.items()}
    assert all(timedelta(0) <= late <= LATENESS_LIMIT for late in lateness.values()), lateness


def test_an_unanswered_offer_times_out_on_time_once_and_is_never_offered_back(worker_and_beat, acme, acme_agent):
    from tasks.models import AgentStatus, Offer, OfferStatus
    from tasks.services import agent_choose_queues, agent_set_status, conversation_task_ensure

    with tenant_context(acme):
        queue = make_queue(channels=["sms"], offer_timeout_seconds=3)
        agent_choose_queues(membership=acme_agent, queues=[queue])
        agent_set_status(membership=acme_agent, status=AgentStatus.AVAILABLE)
        task = conversation_task_ensure(conversation=make_conversation(), queue=queue)

    def offer_made():
        with tenant_context(acme):
            return Offer.objects.filter(task=task).first()

    offer = wait_for(offer_made, timeout=15)  # routed by the worker, on its own
    assert offer.agent_id == acme_agent.pk and offer.explanation

    def timed_out():
        with tenant_context(acme):
            return Offer.objects.filter(pk=offer.pk, status=OfferStatus.TIMED_OUT).first()

    expired = wait_for(timed_out, timeout=15)
    assert timedelta(0) <= expired.responded_at - expired.expires_at <= LATENESS_LIMIT
    import time

    time.sleep(2)  # a few more sweeps and routing runs: nothing may happen twice
    with tenant_context(acme):
        assert Offer.objects.filter(task=task).count() == 1  # never offered back to the agent who missed it
        assert Task.objects.get(pk=task.pk).status == TaskStatus.PENDING
        assert Activity.objects.filter(task=task, new_value=f"offer {OfferStatus.TIMED_OUT}").count() == 1
