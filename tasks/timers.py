"""Due-time actions: what happens when an offer, a wrap-up, an SLA or a resolved conversation runs out
of time, and the reaper that repairs whatever outlived every timer.

Each sweep reads which tenants have due rows through an index (crossing tenants on purpose: a
sweep is a platform job, and it only collects ids), then acts on them inside each tenant, a batch
of rows per transaction (`_sweep`), through the services that own the transition. Offers, the bulk
of any backlog, are timed out by a bulk service in a fixed number of statements per batch. Those
services move a row only from the status the sweep saw (compare-and-set), and a sweep takes an
advisory lock per tenant and kind, so a sweep that runs twice at once, or again after a worker was
killed half-way, acts on each row exactly once; a lost race is not an error, just nothing to do.
"""

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from contactcenter import realtime
from contactcenter.errors import DomainError
from contactcenter.models import Tenant
from contactcenter.tenancy import current_tenant_id, dangerously_all_tenants, tenant_context
from conversations.activity import activity_new, activity_record, activity_record_many
from conversations.models import ActivityKind, Conversation, ConversationPriority, ConversationStatus, Direction, Via
from tasks.models import Offer, OfferStatus, Queue, SlaState, Task, TaskKind, TaskStatus, WrapUpMode
from tasks.sla import first_response_deadlines

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500  # due rows read per pass to learn which tenants have work
ACT_BATCH = 25  # rows of one tenant acted on per transaction
SWEEP_SECONDS = 5.0  # a sweep that keeps finding work goes on this long
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

    For the reaper's repairs (rare rows). One row's failure is logged and does not stop the others:
    the next sweep tries it again.
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


@dataclass
class _Sweep:
    """One kind of due row: which rows are due at a moment, in which order, and how to act on them
    (`act_many` on a batch, `act_one` on a row; act_one alone when there is no bulk form)."""

    kind: str
    due: Callable[[datetime], QuerySet]
    order_by: str
    act_one: Callable[[int], bool]
    act_many: Callable[[list], int] | None = None
    failed: set[int] = field(default_factory=set)  # rows that raised in this run: not tried again

    def run_pass(self, now: datetime | None) -> int:
        """Act on the due rows, a batch of up to ACT_BATCH rows of one tenant per transaction.

        Tenants are taken in the order of their most overdue row. Each batch's transaction first
        takes a transaction-level advisory lock on (sweep kind, tenant), without waiting: two sweeps
        running at once split the tenants between them instead of queuing on the same rows' locks.
        """
        moment = now or timezone.now()
        due = _due(self.due(moment).exclude(pk__in=self.failed), self.order_by)
        acted = 0
        for tenant_id in dict.fromkeys(tenant_id for tenant_id, _ in due):
            with tenant_context(tenant_id):
                acted += self._act_on_tenant(moment)
        return acted

    def _act_on_tenant(self, moment: datetime) -> int:
        """One batch of the current tenant's due rows, in one transaction. With a bulk form, the batch
        is its own transaction (no savepoint: two round trips less); when it fails, each row is
        tried alone in a transaction of its own, so one bad row undoes nothing else (it is logged
        and left for the next sweep)."""
        rows = []
        try:
            with transaction.atomic():
                if not _sweep_lock(self.kind, current_tenant_id()):
                    return 0  # another sweep is on this tenant's rows of this kind
                rows = list(self.due(moment).exclude(pk__in=self.failed).order_by(self.order_by)[:ACT_BATCH])
                if self.act_many is None:
                    return self._act_on_each(rows)
                return self.act_many(rows)
        except Exception:
            if self.act_many is None or not rows:
                logger.exception("%s sweep of tenant %s failed; the next sweep retries", self.kind, current_tenant_id())
                return 0
            logger.warning("a batch of %s %s failed; acting on each alone", len(rows), self.kind, exc_info=True)
        return self._act_on_each(rows)

    def _act_on_each(self, rows: list) -> int:
        acted = 0
        for row in rows:
            try:
                with transaction.atomic():
                    acted += bool(self.act_one(row.pk))
            except DomainError:
                continue  # the row moved on meanwhile (another sweep, an agent): nothing to do
            except Exception:
                self.failed.add(row.pk)
                logger.exception("%s: acting on row %s failed; the next sweep retries", self.kind, row.pk)
        return acted


def _sweep(sweeps: list[_Sweep], *, now: datetime | None = None) -> dict[str, int]:
    """Run passes of all `sweeps` while a pass finds work, for up to SWEEP_SECONDS: a backlog is worked
    off at once rather than a batch a beat, and no kind waits for another's backlog to be done.
    Returns the rows acted on per kind."""
    acted = dict.fromkeys((sweep.kind for sweep in sweeps), 0)
    started = time.monotonic()
    while True:
        acted_in_pass = 0
        for sweep in sweeps:
            done = sweep.run_pass(now)
            acted[sweep.kind] += done
            acted_in_pass += done
        if not acted_in_pass or time.monotonic() - started > SWEEP_SECONDS:
            return acted


def timers_sweep_due(*, now: datetime | None = None) -> dict[str, int]:
    """Every timer kind at once (the periodic job): offers, wrap-ups, SLA warnings and breaches,
    auto-close. Returns the rows acted on per kind."""
    return _sweep(
        [_offers_sweep(), _wrap_ups_sweep(), _sla_warnings_sweep(), _sla_breaches_sweep(), _auto_close_sweep()], now=now
    )


def _sweep_lock(kind: str, tenant_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s), %s)", [f"sweep:{kind}", tenant_id])
        return cursor.fetchone()[0]


# --- offers -----------------------------------------------------------------------------------------


def offers_expire_due(*, now: datetime | None = None) -> int:
    """Time out every pending offer past its `expires_at`, a batch at a time (tasks.services
    .offers_time_out decides the rest: the task goes back to routing, the agent's missed-offer count
    rises)."""
    return _sweep([_offers_sweep()], now=now)["offers"]


def _offers_sweep() -> _Sweep:
    from tasks.services import offer_time_out, offers_time_out

    def one(offer_id: int) -> bool:
        return offer_time_out(offer=Offer.objects.get(pk=offer_id))

    def many(offers: list[Offer]) -> int:
        return len(offers_time_out(offers=offers))

    def due(moment: datetime) -> QuerySet:
        return Offer.objects.filter(status=OfferStatus.PENDING, expires_at__lte=moment)

    return _Sweep("offers", due, "expires_at", one, many)


# --- wrap-up ----------------------------------------------------------------------------------------


def wrap_ups_complete_due(*, now: datetime | None = None) -> int:
    """Complete tasks whose automatic wrap-up time ran out, with the queue's default disposition."""
    return _sweep([_wrap_ups_sweep()], now=now)["wrap_ups"]


def _wrap_ups_sweep() -> _Sweep:

    def due(moment: datetime) -> QuerySet:
        return Task.objects.filter(status=TaskStatus.WRAPPING, wrap_up_due_at__lte=moment)

    return _Sweep("wrap_ups", due, "wrap_up_due_at", _wrap_up_complete)


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
    return _sweep([_sla_warnings_sweep()], now=now)["sla_warnings"]


def _sla_warnings_sweep() -> _Sweep:

    def due(moment: datetime) -> QuerySet:
        return _waiting_for_a_response().filter(sla_state=SlaState.OK, sla_warning_at__lte=moment)

    return _Sweep("sla_warnings", due, "sla_warning_at", _sla_warn)


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
    """Escalate every task whose response target passed with the customer still waiting, a batch at
    a time (_sla_breach_many; _sla_breach alone when a batch fails)."""
    return _sweep([_sla_breaches_sweep()], now=now)["sla_breaches"]


def _sla_breaches_sweep() -> _Sweep:

    def due(moment: datetime) -> QuerySet:
        return _waiting_for_a_response().filter(
            sla_state__in=(SlaState.OK, SlaState.WARNING), first_response_due_at__lte=moment
        )

    return _Sweep("sla_breaches", due, "first_response_due_at", _sla_breach, _sla_breach_many)


SLA_BREACHED = "The response target passed with the customer still waiting."
SLA_ESCALATION = "Response SLA breached."


def _sla_breach_many(due: list[Task]) -> int:
    """The bulk form of _sla_breach and task_escalate for a batch of one tenant's tasks: the same rows,
    state and pushes, in a fixed number of statements, save a transfer to an escalation queue
    (conversation_transfer, per task).

    Locks the conversations, then the tasks (the lock order of tasks.services), with SKIP LOCKED: a
    row someone holds is left for the next sweep. Compare-and-set on `sla_state` (ok or warning →
    breached) and `escalated_at` (set once). Writes per task its `sla` row, its `escalation` row and,
    where the queue raises priority, the conversation's `priority` row (the task's priority follows),
    in one INSERT. Pushes `conversation.priority` and `task.escalated` as the single forms do, on commit.
    """
    from conversations.services import conversation_transfer, conversations_set_priority_locked

    task_ids, conversation_ids = [task.pk for task in due], {task.conversation_id for task in due} - {None}
    conversations = {
        c.pk: c for c in Conversation.objects.select_for_update(skip_locked=True).filter(pk__in=conversation_ids).order_by("pk")
    }  # fmt: skip
    tasks = [
        task
        for task in Task.objects.select_for_update(skip_locked=True)
        .filter(pk__in=task_ids, conversation_id__in=conversations, sla_state__in=(SlaState.OK, SlaState.WARNING))
        .order_by("pk")
        if conversations[task.conversation_id].waiting_since is not None
    ]
    if not tasks:
        return 0
    now = timezone.now()
    Task.objects.filter(pk__in=[task.pk for task in tasks]).update(sla_state=SlaState.BREACHED)
    queues = {queue.pk: queue for queue in Queue.objects.filter(pk__in={task.queue_id for task in tasks})}
    rows = []
    for task in tasks:
        rows.append(activity_new(kind=ActivityKind.SLA, task=task, via=Via.SYSTEM, old=task.sla_state,
                                 new=SlaState.BREACHED, reason=SLA_BREACHED))  # fmt: skip
        task.sla_state = SlaState.BREACHED
    escalated = [task for task in tasks if task.escalated_at is None]
    Task.objects.filter(pk__in=[task.pk for task in escalated], escalated_at__isnull=True).update(escalated_at=now)
    raised = {}
    for task in escalated:
        task.escalated_at, queue, conversation = now, queues.get(task.queue_id), conversations[task.conversation_id]
        rows.append(activity_new(kind=ActivityKind.ESCALATION, task=task, via=Via.SYSTEM,
                                 new=getattr(queue, "name", ""), reason=SLA_ESCALATION))  # fmt: skip
        if queue is not None and queue.escalation_raises_priority and conversation.priority in PRIORITY_ABOVE:
            raised[task] = (conversation.priority, PRIORITY_ABOVE[conversation.priority])
    rows += conversations_set_priority_locked(
        changes=[(conversations[task.conversation_id], task, new) for task, (_, new) in raised.items()],
        via=Via.SYSTEM,
        reason=SLA_ESCALATION,
    )
    activity_record_many(rows)
    for task in escalated:
        queue = queues.get(task.queue_id)
        if queue is not None and queue.escalation_queue_id and queue.escalation_queue_id != queue.pk:
            conversation_transfer(conversation=Conversation.objects.get(pk=task.conversation_id),
                                  queue=queue.escalation_queue, via=Via.SYSTEM, note=SLA_ESCALATION)  # fmt: skip
        if queue is None or queue.escalation_notifies_supervisors:
            realtime.push_to_supervisors(
                task.tenant_id, event="task.escalated", data={"task": task.public_id, "reason": SLA_ESCALATION}
            )
    return len(tasks)


def _sla_breach(task_id: int) -> bool:
    old = Task.objects.filter(pk=task_id).values_list("sla_state", flat=True).get()
    if old == SlaState.BREACHED or not Task.objects.filter(pk=task_id, sla_state=old).update(
        sla_state=SlaState.BREACHED
    ):
        return False  # another sweep got there first
    task = Task.objects.select_related("queue").get(pk=task_id)
    activity_record(kind=ActivityKind.SLA, task=task, via=Via.SYSTEM, old=old, new=SlaState.BREACHED,
                    reason=SLA_BREACHED)  # fmt: skip
    task_escalate(task=task, reason=SLA_ESCALATION)
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
        conversation.messages.filter(direction=Direction.OUTBOUND).order_by("-created_at").values("created_at")[:1]
    )
    since_last_reply = Coalesce(Subquery(last_reply), Value(datetime.min.replace(tzinfo=UTC)))
    unanswered = conversation.messages.filter(direction=Direction.INBOUND, created_at__gt=since_last_reply)
    if unanswered.count() < queue.follow_ups_before_escalation:  # one statement, whether or not we replied
        return False
    return task_escalate(task=task, reason=f"The customer wrote {queue.follow_ups_before_escalation} times without a reply.")


# --- auto-close ---------------------------------------------------------------------------------------


def conversations_auto_close_due(*, now: datetime | None = None) -> int:
    """Close resolved conversations once their tenant's quiet period (auto_close_after_hours) has passed."""
    return _sweep([_auto_close_sweep()], now=now)["auto_closed"]


def _auto_close_sweep() -> _Sweep:
    from conversations.services import conversation_transition

    closes_at = ExpressionWrapper(
        F("resolved_at") + F("tenant__auto_close_after_hours") * Value(timedelta(hours=1)), output_field=DateTimeField()
    )

    def due(moment: datetime) -> QuerySet:
        return (
            Conversation.objects.filter(status=ConversationStatus.RESOLVED, resolved_at__isnull=False)
            .annotate(closes_at=closes_at)
            .filter(closes_at__lte=moment)
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

    return _Sweep("auto_closed", due, "closes_at", close)


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

