"""Due-time actions: what happens when an offer, a wrap-up, an SLA or a resolved conversation runs out
of time, and the reaper that repairs whatever outlived every timer.

Each sweep reads the due rows of every tenant through an index (crossing tenants on purpose: a
sweep is a platform job, and it only collects ids), then acts on each row inside that row's tenant,
one transaction per row, through the services that own the transition. Those services move a row
only from the status the sweep saw (compare-and-set), so a sweep that runs twice at once, or
again after a worker was killed half-way, acts on each row exactly once; a lost race is not an
error, just nothing to do.
"""

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Value
from django.utils import timezone

from contactcenter import realtime
from contactcenter.errors import DomainError
from contactcenter.models import Tenant
from contactcenter.tenancy import dangerously_all_tenants, tenant_context
from conversations.activity import activity_record
from conversations.models import ActivityKind, Conversation, ConversationPriority, ConversationStatus, Direction, Via
from tasks.models import Offer, OfferStatus, SlaState, Task, TaskKind, TaskStatus, WrapUpMode
from tasks.sla import first_response_deadlines

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500
# A task reserved without any live offer this long is stuck (the offer rows say nobody holds it).
RESERVED_WITHOUT_OFFER_GRACE = timedelta(seconds=15)
# Pending work older than this makes the reaper ask for routing again, in case a trigger was lost.
PENDING_NUDGE_AFTER = timedelta(seconds=30)
OPEN_FOR_SLA = (TaskStatus.PENDING, TaskStatus.RESERVED, TaskStatus.ASSIGNED)
PRIORITY_ABOVE = {
    ConversationPriority.LOW: ConversationPriority.NORMAL,
    ConversationPriority.NORMAL: ConversationPriority.HIGH,
    ConversationPriority.HIGH: ConversationPriority.URGENT,
}


def _act_on_due(due_rows: Iterable[tuple[int, int]], act: Callable[[int], bool]) -> int:
    """Call `act(row_id)` inside each row's tenant, one transaction each; count the rows acted on.

    One row's failure is logged and does not stop the others: the next sweep tries it again.
    """
    acted = 0
    for tenant_id, row_id in due_rows:
        try:
            with tenant_context(tenant_id), transaction.atomic():
                acted += bool(act(row_id))
        except DomainError:
            continue  # the row moved on meanwhile (another sweep, an agent): nothing to do
        except Exception:
            logger.exception("timer action on row %s of tenant %s failed; the next sweep retries", row_id, tenant_id)
    return acted


def _due(queryset, order_by: str) -> list[tuple[int, int]]:
    with dangerously_all_tenants():  # collects (tenant, id) pairs only; each action runs in its tenant
        return list(queryset.order_by(order_by).values_list("tenant_id", "pk")[:SWEEP_BATCH])


# --- offers -----------------------------------------------------------------------------------------


def offers_expire_due(*, now: datetime | None = None) -> int:
    """Time out every pending offer past its `expires_at` (tasks.services.offer_time_out decides the rest:
    the task goes back to routing, the agent's missed-offer count rises)."""
    from tasks.services import offer_time_out

    now = now or timezone.now()
    due = _due(Offer.objects.filter(status=OfferStatus.PENDING, expires_at__lte=now), "expires_at")
    return _act_on_due(due, lambda offer_id: offer_time_out(offer=Offer.objects.get(pk=offer_id)))


# --- wrap-up ----------------------------------------------------------------------------------------


def wrap_ups_complete_due(*, now: datetime | None = None) -> int:
    """Complete tasks whose automatic wrap-up time ran out, with the queue's default disposition."""
    now = now or timezone.now()
    due = _due(Task.objects.filter(status=TaskStatus.WRAPPING, wrap_up_due_at__lte=now), "wrap_up_due_at")
    return _act_on_due(due, _wrap_up_complete)


def _wrap_up_complete(task_id: int) -> bool:
    from tasks.services import task_complete

    task = Task.objects.select_related("queue__default_disposition").get(pk=task_id)
    if task.status != TaskStatus.WRAPPING:
        return False
    disposition = task.queue.default_disposition if task.queue else None
    task_complete(task=task, via=Via.SYSTEM, disposition=disposition, notes="Completed automatically: wrap-up time ended.")
    return True


# --- SLA ----------------------------------------------------------------------------------------------


def task_response_deadline_refresh(*, task: Task, conversation: Conversation) -> bool:
    """Set the task's response deadline for the customer's current wait, computed up front.

    The deadline depends only on when the customer started waiting (`waiting_since`), the queue's
    target for the conversation's priority and its business hours; so calling this again during the
    same wait changes nothing, and a new wait (the customer wrote after a reply) starts a new clock
    with the SLA state back to ok. Called whenever a customer message arrives. Returns whether it
    changed anything.
    """
    queue = task.queue
    if queue is None or conversation.waiting_since is None or task.status not in OPEN_FOR_SLA:
        return False
    due_at, warn_at = first_response_deadlines(
        start=conversation.waiting_since,
        target_seconds=queue.sla_target_seconds(conversation.priority),
        warning_seconds=queue.sla_warning_seconds,
        business_hours=queue.business_hours,
        time_zone=Tenant.objects.values_list("time_zone", flat=True).get(pk=task.tenant_id),
    )
    if (task.first_response_due_at, task.sla_warning_at) == (due_at, warn_at):
        return False
    Task.objects.filter(pk=task.pk).update(first_response_due_at=due_at, sla_warning_at=warn_at, sla_state=SlaState.OK)
    task.first_response_due_at, task.sla_warning_at, task.sla_state = due_at, warn_at, SlaState.OK
    return True


def _waiting_for_a_response():
    """Conversation tasks whose customer is still waiting (no reply since they last wrote)."""
    return Task.objects.filter(
        kind=TaskKind.CONVERSATION, status__in=OPEN_FOR_SLA, conversation__waiting_since__isnull=False
    )


def sla_warnings_due(*, now: datetime | None = None) -> int:
    """Warn the agent and supervisors of every task about to breach its response target."""
    now = now or timezone.now()
    due = _due(_waiting_for_a_response().filter(sla_state=SlaState.OK, sla_warning_at__lte=now), "sla_warning_at")
    return _act_on_due(due, _sla_warn)


def _sla_warn(task_id: int) -> bool:
    if not Task.objects.filter(pk=task_id, sla_state=SlaState.OK).update(sla_state=SlaState.WARNING):
        return False  # another sweep warned first
    task = Task.objects.get(pk=task_id)
    activity_record(
        kind=ActivityKind.SLA, task=task, via=Via.SYSTEM, old=SlaState.OK, new=SlaState.WARNING,
        reason=f"Response due at {task.first_response_due_at:%H:%M} UTC.",
    )  # fmt: skip
    data = {"task": task.public_id, "sla": SlaState.WARNING, "due_at": task.first_response_due_at.isoformat()}
    if task.assignee_id:
        realtime.push_to_member(task.tenant_id, task.assignee_id, event="task.sla", data=data)
    realtime.push_to_supervisors(task.tenant_id, event="task.sla", data=data)
    return True


def sla_breaches_due(*, now: datetime | None = None) -> int:
    """Escalate every task whose response target passed with the customer still waiting."""
    now = now or timezone.now()
    due = _due(
        _waiting_for_a_response().filter(sla_state__in=(SlaState.OK, SlaState.WARNING), first_response_due_at__lte=now),
        "first_response_due_at",
    )
    return _act_on_due(due, _sla_breach)


def _sla_breach(task_id: int) -> bool:
    old = Task.objects.filter(pk=task_id).values_list("sla_state", flat=True).get()
    if old == SlaState.BREACHED or not Task.objects.filter(pk=task_id, sla_state=old).update(
        sla_state=SlaState.BREACHED
    ):
        return False  # another sweep got there first
    task = Task.objects.select_related("queue").get(pk=task_id)
    activity_record(kind=ActivityKind.SLA, task=task, via=Via.SYSTEM, old=old, new=SlaState.BREACHED,
                    reason="The response target passed with the customer still waiting.")  # fmt: skip
    task_escalate(task=task, reason="Response SLA breached.")
    return True


def task_escalate(*, task: Task, reason: str) -> bool:
    """Escalate a task as its queue says: raise the conversation's priority one level, tell the
    supervisors, and hand it to the escalation queue when one is set. Once per task (escalated_at
    is set by compare-and-set). Writes an `escalation` row, then what each step writes."""
    from conversations.services import conversation_set_priority, conversation_transfer

    if not Task.objects.filter(pk=task.pk, escalated_at__isnull=True).update(escalated_at=timezone.now()):
        return False
    queue, conversation = task.queue, task.conversation
    activity_record(kind=ActivityKind.ESCALATION, task=task, via=Via.SYSTEM, new=getattr(queue, "name", ""), reason=reason)
    if conversation is not None and queue is not None:
        if queue.escalation_raises_priority and conversation.priority in PRIORITY_ABOVE:
            conversation_set_priority(
                conversation=conversation, priority=PRIORITY_ABOVE[conversation.priority], via=Via.SYSTEM, reason=reason
            )
        if queue.escalation_queue_id and queue.escalation_queue_id != queue.pk:
            conversation_transfer(
                conversation=Conversation.objects.get(pk=conversation.pk), queue=queue.escalation_queue, via=Via.SYSTEM,
                note=reason,
            )  # fmt: skip
    if queue is None or queue.escalation_notifies_supervisors:
        realtime.push_to_supervisors(task.tenant_id, event="task.escalated", data={"task": task.public_id, "reason": reason})
    return True


def follow_ups_escalate(*, task: Task, conversation: Conversation) -> bool:
    """Escalate when the customer has written the queue's number of messages without a reply."""
    queue = task.queue
    if queue is None or not queue.follow_ups_before_escalation or task.escalated_at or task.status not in OPEN_FOR_SLA:
        return False
    last_reply = (
        conversation.messages.filter(direction=Direction.OUTBOUND).order_by("-created_at").values_list("created_at", flat=True).first()
    )
    unanswered = conversation.messages.filter(direction=Direction.INBOUND)
    if last_reply is not None:
        unanswered = unanswered.filter(created_at__gt=last_reply)
    if unanswered.count() < queue.follow_ups_before_escalation:
        return False
    return task_escalate(task=task, reason=f"The customer wrote {queue.follow_ups_before_escalation} times without a reply.")


# --- auto-close ---------------------------------------------------------------------------------------


def conversations_auto_close_due(*, now: datetime | None = None) -> int:
    """Close resolved conversations once their tenant's quiet period (auto_close_after_hours) has passed."""
    from conversations.services import conversation_transition

    now = now or timezone.now()
    closes_at = ExpressionWrapper(
        F("resolved_at") + F("tenant__auto_close_after_hours") * Value(timedelta(hours=1)), output_field=DateTimeField()
    )
    due = _due(
        Conversation.objects.filter(status=ConversationStatus.RESOLVED, resolved_at__isnull=False)
        .annotate(closes_at=closes_at)
        .filter(closes_at__lte=now),
        "closes_at",
    )

    def close(conversation_id: int) -> bool:
        conversation = Conversation.objects.select_related("tenant").get(pk=conversation_id)
        if conversation.status != ConversationStatus.RESOLVED:
            return False
        conversation_transition(
            conversation=conversation, to_status=ConversationStatus.CLOSED, via=Via.SYSTEM,
            reason=f"Closed automatically {conversation.tenant.auto_close_after_hours} hours after it was resolved.",
        )  # fmt: skip
        return True

    return _act_on_due(due, close)


# --- the reaper -----------------------------------------------------------------------------------


def tasks_reap_stuck(*, now: datetime | None = None) -> int:
    """Repair tasks that outlived every timer, writing why in the activity log.

    - reserved, but no pending offer holds them (the offer was lost, or its row moved on alone):
      back to pending;
    - wrapping in an automatic wrap-up queue with no due time: given one now, so the wrap-up sweep
      completes them;
    - pending for a while in a tenant with available agents: routing is asked again (a trigger may
      have been lost to a crash between commit and enqueue).
    """
    from tasks.services import routing_request, task_transition

    now = now or timezone.now()
    orphaned = _due(
        Task.objects.filter(status=TaskStatus.RESERVED, status_changed_at__lte=now - RESERVED_WITHOUT_OFFER_GRACE).exclude(
            offers__status=OfferStatus.PENDING
        ),
        "status_changed_at",
    )

    def requeue(task_id: int) -> bool:
        task = Task.objects.get(pk=task_id)
        if task.status != TaskStatus.RESERVED or task.offers.filter(status=OfferStatus.PENDING).exists():
            return False
        task_transition(task=task, to_status=TaskStatus.PENDING, via=Via.SYSTEM,
                        reason="Reaper: reserved, but no live offer held it.")  # fmt: skip
        routing_request(tenant_id=task.tenant_id)
        return True

    acted = _act_on_due(orphaned, requeue)

    untimed = _due(
        Task.objects.filter(status=TaskStatus.WRAPPING, wrap_up_due_at__isnull=True, queue__wrap_up_mode=WrapUpMode.AUTOMATIC),
        "status_changed_at",
    )

    def give_due_time(task_id: int) -> bool:
        updated = Task.objects.filter(pk=task_id, status=TaskStatus.WRAPPING, wrap_up_due_at__isnull=True).update(
            wrap_up_due_at=now
        )
        if updated:
            activity_record(kind=ActivityKind.STATUS, task=Task.objects.get(pk=task_id), via=Via.SYSTEM,
                            old=TaskStatus.WRAPPING, new=TaskStatus.WRAPPING,
                            reason="Reaper: automatic wrap-up had no end time; ending it now.")  # fmt: skip
        return bool(updated)

    acted += _act_on_due(untimed, give_due_time)

    with dangerously_all_tenants():  # which tenants have long-pending work: ids only
        waiting_tenants = set(
            Task.objects.filter(status=TaskStatus.PENDING, queue__isnull=False, status_changed_at__lte=now - PENDING_NUDGE_AFTER)
            .values_list("tenant_id", flat=True)
            .distinct()
        )
    for tenant_id in waiting_tenants:
        with tenant_context(tenant_id):
            routing_request(tenant_id=tenant_id)
    return acted

