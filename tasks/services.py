"""Writes and transitions of tasks, dispositions and automation rules.

Each service is one transaction (its own, or a savepoint inside the caller's), runs inside the
current tenant and refuses rows of another tenant (CrossTenantLink). It writes the activity rows its
docstring lists and pushes through contactcenter.realtime, which sends on commit. `task_transition`
is the only code that changes a task's status.

Conversation-level operations that also move a task (assign, end, transfer, merge, split) live in
conversations.services and call these. This module imports conversations.services only inside the
routing services that move a conversation with its task (offer_accept, task_claim), never at import.

Routing (the second half of this module): agents' status and queues, routing runs that turn the
pure choice of tasks.routing into offers, and the offer's answers (accept, decline, time-out), plus
claiming ("Assign to me", pick mode, a supervisor giving work). Lock order everywhere, to rule out
deadlocks: a conversation, then its task, then agents' AgentState rows. Routing runs lock tasks and
agents with SKIP LOCKED, so they never wait for anyone. Every move of an offer holds its task's row
lock, so an offer's answer and its task's status change together.
"""

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Case, F, IntegerField, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from channels_inbound.models import Channel
from contactcenter import realtime
from contactcenter.enqueue import enqueue_unless_waiting, waiting_mark_clear
from contactcenter.errors import AlreadyTaken, DomainError, TransitionNotAllowed
from contactcenter.models import Membership, Tenant
from contactcenter.tenancy import CrossTenantWrite, current_tenant_id
from conversations.activity import activity_new, activity_record, activity_record_many
from conversations.errors import ChangedMeanwhile, ensure_same_tenant
from conversations.models import Activity, ActivityKind, Conversation, ConversationPriority, ConversationStatus, Via
from tasks import routing
from tasks.acceptance import acceptance_hooks_run
from tasks.errors import (
    AgentStatusNotAllowed,
    AssignmentNotAllowed,
    AtCapacity,
    DispositionNotAllowed,
    DispositionRequired,
    OfferNotAllowed,
    QueueNotAllowed,
    TaskNotAllowed,
)
from tasks.models import (
    DEFAULT_BREAK_REASONS,
    MISSED_OFFERS_REASON,
    AgentSkill,
    AgentState,
    AgentStatus,
    AgentStatusPeriod,
    AutomationRule,
    BreakReason,
    Disposition,
    Offer,
    OfferStatus,
    Queue,
    RoutingStrategy,
    RuleAction,
    RuleAssignee,
    RuleTrigger,
    Task,
    TaskKind,
    TaskPriority,
    TaskStatus,
    WrapUpMode,
)
from tasks.selectors import agent_loads

logger = logging.getLogger(__name__)

S = TaskStatus
TASK_TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.RESERVED, S.ASSIGNED, S.CANCELED}),
    S.RESERVED: frozenset({S.PENDING, S.ASSIGNED, S.CANCELED}),  # back to pending: declined or timed out
    S.ASSIGNED: frozenset({S.PENDING, S.WRAPPING, S.COMPLETED, S.CANCELED}),  # pending: re-queued
    S.WRAPPING: frozenset({S.COMPLETED}),
    S.COMPLETED: frozenset(),
    S.CANCELED: frozenset(),
}

CONVERSATION_TO_TASK_PRIORITY = {
    ConversationPriority.LOW: TaskPriority.LOW,
    ConversationPriority.NORMAL: TaskPriority.MEDIUM,
    ConversationPriority.HIGH: TaskPriority.HIGH,
    ConversationPriority.URGENT: TaskPriority.CRITICAL,
}

DEFAULT_DISPOSITIONS = ("Resolved", "Follow-up Required", "Escalation")


def _push_task(task: Task, event: str, *also_members: int | None) -> None:
    data = {"task": task.public_id, "status": task.status, "kind": task.kind}
    realtime.push_to_supervisors(task.tenant_id, event=event, data=data)
    for member_id in {task.assignee_id, *also_members} - {None}:
        realtime.push_to_member(task.tenant_id, member_id, event=event, data=data)


def _waiting_line_changed(task: Task) -> None:
    """A conversation task joined or left its queue's waiting line (pending): webchat visitors
    waiting there are told their new place after commit, one query per queue and transaction."""
    if task.queue_id and task.kind == TaskKind.CONVERSATION:
        from channels_inbound.webchat.services import webchat_queue_line_changed  # it builds on these services

        webchat_queue_line_changed(tenant_id=task.tenant_id, queue_id=task.queue_id, task_id=task.pk)


def _holder_label(task: Task) -> str:
    if task.assignee_id:
        return task.assignee.display_name
    return f"team {task.team.name}" if task.team_id else "nobody"


def _lock_as_seen(task: Task) -> None:
    """Lock the task's row and make sure it is still as the caller saw it (status and holder).

    The caller acted on what they saw; if someone else has since taken or moved the task, they
    must be told rather than overwrite it.
    """
    # No select_related here: when the lock waits for a concurrent writer, PostgreSQL re-reads the
    # locked row but not the rows joined to it, so a joined assignee would be stale (None).
    current = Task.objects.select_for_update().get(pk=task.pk)
    if (current.status, current.assignee_id, current.team_id) == (task.status, task.assignee_id, task.team_id):
        return
    if current.assignee_id and current.assignee_id != task.assignee_id:
        raise AlreadyTaken(f"This task was already taken by {current.assignee.display_name}.")
    raise ChangedMeanwhile(f"This task changed meanwhile: it is now {current.get_status_display().lower()}.")


def task_transition(
    *,
    task: Task,
    to_status: str,
    actor=None,
    via: str | None = None,
    reason: str = "",
    kind: str = ActivityKind.STATUS,
    fields: dict | None = None,
) -> Task:
    """Move `task` from the status the caller saw (`task.status`) to `to_status`.

    The only code that changes a task's status. Checks TASK_TRANSITIONS (TransitionNotAllowed,
    nothing written); an assigned or wrapping task must have an agent. Compare-and-set:
    `UPDATE … WHERE id = … AND status = <seen>`. When another transaction changed the status first,
    no row matches and ChangedMeanwhile is raised; two racing callers therefore end with exactly one
    winner (the UPDATE's row lock makes the second wait for the first to commit, then re-check).
    `fields` (assignee, disposition, …) are written by the same UPDATE.
    Routing side effects, so that no caller can forget them:
    - → wrapping in a queue with automatic wrap-up sets `wrap_up_due_at` (now + wrap_up_seconds)
      in the same UPDATE; the wrap-up sweep (tasks.timers) completes it then.
    - leaving reserved cancels the task's offers still pending (an offer never outlives its
      reservation; offer_accept/decline/time-out answer theirs first, so this catches transfers,
      supervisors' assignments and cancellations).
    - → pending (queued again) or out of assigned/wrapping (capacity freed) requests routing.
    - into or out of pending: the queue's waiting webchat visitors learn their new place on commit.
    Writes one activity row of `kind` (status, or completion) with old → new status and `reason`.
    Pushes `task.status` to supervisors and the assignee on commit.
    """
    ensure_same_tenant(task, actor)
    old = task.status
    if to_status not in TASK_TRANSITIONS.get(old, ()):
        raise TransitionNotAllowed("task", old, to_status)
    fields = dict(fields or {})
    if to_status in (S.ASSIGNED, S.WRAPPING) and not fields.get("assignee", task.assignee_id):
        raise TransitionNotAllowed("task", old, to_status, "It has no agent.")
    now = timezone.now()
    if to_status in (S.COMPLETED, S.CANCELED):
        fields.setdefault("completed_at", now)
    if to_status == S.WRAPPING and task.queue_id:
        mode, seconds = Queue.objects.values_list("wrap_up_mode", "wrap_up_seconds").get(pk=task.queue_id)
        if mode == WrapUpMode.AUTOMATIC:
            fields.setdefault("wrap_up_due_at", now + timedelta(seconds=seconds))
    with transaction.atomic():
        updated = Task.objects.filter(pk=task.pk, status=old).update(
            status=to_status, status_changed_at=now, updated_at=now, **fields
        )
        if not updated:
            current = Task.objects.filter(pk=task.pk).values_list("status", flat=True).first()
            raise ChangedMeanwhile(
                f"Someone else changed this task first: it is now {S(current).label.lower()}. Reload to see it."
                if current
                else "This task no longer exists."
            )
        for name, value in fields.items():
            setattr(task, name, value)
        task.status, task.status_changed_at, task.updated_at = to_status, now, now
        activity_record(kind=kind, task=task, actor=actor, via=via, old=old, new=to_status, reason=reason)
        _push_task(task, "task.status")
        if old == S.RESERVED:
            _offers_withdraw(task, OfferStatus.CANCELED, reason=f"The task became {S(to_status).label.lower()}.")
        if to_status == S.PENDING or old in (S.ASSIGNED, S.WRAPPING):
            routing_request(tenant_id=task.tenant_id)
        if S.PENDING in (old, to_status):
            _waiting_line_changed(task)
    return task


def task_create(
    *,
    kind: str,
    title: str,
    actor=None,
    via: str | None = None,
    conversation=None,
    queue=None,
    channel: str = "",
    priority: str = TaskPriority.MEDIUM,
    assignee=None,
    team=None,
    due_at=None,
    description: str = "",
    rule=None,
    reason: str = "",
) -> Task:
    """Create a pending task (a conversation task needs its conversation; the queue must take its channel).

    A follow-up or internal task given an `assignee` is on their To Do list (still pending).
    Writes one `created` row (linked to the conversation, if any). Pushes `task.created` on commit;
    a task in a queue for nobody in particular also requests routing (routing_request).
    """
    tenant_id = ensure_same_tenant(conversation, queue, assignee, team, actor, rule)
    if kind == TaskKind.CONVERSATION and conversation is None:
        raise TaskNotAllowed("A conversation task needs its conversation.")
    if assignee is not None and team is not None:
        raise AssignmentNotAllowed("Give the task to an agent or to a team, not both.")
    channel = channel or (conversation.channel if conversation is not None else "")
    if queue is not None and channel and not queue.takes(channel):
        raise TaskNotAllowed(f"The {queue.name} queue does not take {Channel(channel).label} work.")
    with transaction.atomic(savepoint=False):  # nothing in it raises a DomainError for a caller to catch
        task = Task.objects.create(
            tenant_id=tenant_id,
            kind=kind,
            title=title[:200],
            description=description,
            channel=channel,
            priority=priority,
            queue=queue,
            conversation=conversation,
            assignee=assignee,
            team=team,
            due_at=due_at,
            created_by=actor,
            rule=rule,
        )
        activity_record(kind=ActivityKind.CREATED, task=task, actor=actor, via=via, new=kind, reason=reason)
        _push_task(task, "task.created")
        if queue is not None and assignee is None and team is None:
            routing_request(tenant_id=tenant_id)
        _waiting_line_changed(task)
    return task


def task_create_follow_up(
    *,
    conversation,
    actor=None,
    via: str | None = None,
    title: str = "Follow up",
    due_at=None,
    priority: str = "",
    assignee=None,
    team=None,
    description: str = "",
    rule=None,
    reason: str = "",
    kind: str = TaskKind.FOLLOW_UP,
    channel: str = "",
) -> Task:
    """A follow-up task linked to `conversation` (its quick action, or an automation rule).

    `kind` is follow-up (work for the customer) or internal (work behind the scenes); `channel` is
    where it will be done (default: the conversation's). Priority defaults to the conversation's
    (normal → medium, urgent → critical). Writes one `created` row linked to the task and the
    conversation; pushes `task.created` on commit.
    """
    if kind not in (TaskKind.FOLLOW_UP, TaskKind.INTERNAL):
        raise TaskNotAllowed("A follow-up is either a follow-up or an internal task.")
    if channel:
        Channel(channel)  # refuses an unknown channel
    return task_create(
        kind=kind,
        title=title,
        actor=actor,
        via=via,
        conversation=conversation,
        channel=channel,
        priority=priority or CONVERSATION_TO_TASK_PRIORITY[conversation.priority],
        assignee=assignee,
        team=team,
        due_at=due_at,
        description=description,
        rule=rule,
        reason=reason,
    )


def task_assign(*, task: Task, agent=None, team=None, actor=None, via: str | None = None, note: str = "") -> Task:
    """Give `task` to one agent or to a team, with an optional note.

    Locks the task row; if it is no longer as the caller saw it, raises AlreadyTaken ("already taken
    by X") or ChangedMeanwhile. Only pending, reserved or assigned tasks can be given.
    - To an agent (active, same tenant): a conversation task becomes assigned; a follow-up or
      internal task keeps its status (it is on the agent's To Do list).
    - To a team: the agent is cleared and a reserved or assigned task goes back to pending.
    Giving it to whoever already holds it changes and writes nothing.
    Writes one `assignment` row (from → to, note) and, when the status changes, one `status` row.
    Pushes `task.assigned` to supervisors and the old and new agents on commit.
    """
    if (agent is None) == (team is None):
        raise AssignmentNotAllowed("Choose either an agent or a team.")
    ensure_same_tenant(task, agent, team, actor)
    if agent is not None and not agent.is_active:
        raise AssignmentNotAllowed(f"{agent.display_name} is no longer active here and cannot take work.")
    with transaction.atomic():
        _lock_as_seen(task)
        if task.status not in (S.PENDING, S.RESERVED, S.ASSIGNED):
            raise TransitionNotAllowed("task", task.status, "assigned", "Only open tasks can be given to someone.")
        if (task.assignee_id, task.team_id) == (getattr(agent, "pk", None), getattr(team, "pk", None)):
            return task
        previous_agent_id, old_label = task.assignee_id, _holder_label(task)
        changes = {"assignee": agent, "team": team}
        if agent is not None:
            new_status = S.ASSIGNED if task.kind == TaskKind.CONVERSATION else task.status
        else:
            new_status = S.PENDING if task.status in (S.RESERVED, S.ASSIGNED) else task.status
        if new_status != task.status:
            task_transition(task=task, to_status=new_status, actor=actor, via=via, reason=note, fields=changes)
        else:
            Task.objects.filter(pk=task.pk).update(updated_at=timezone.now(), **changes)
            task.assignee, task.team = agent, team
        activity_record(
            kind=ActivityKind.ASSIGNMENT, task=task, actor=actor, via=via, old=old_label, new=_holder_label(task),
            reason=note,
        )  # fmt: skip
        _push_task(task, "task.assigned", previous_agent_id)
    return task


def task_start(*, task: Task, actor, via: str | None = None) -> Task:
    """The agent starts a follow-up or internal task on their To Do list: pending → assigned ("In Progress").

    Only the task's agent may start it. Writes one `status` row; pushes `task.status` on commit.
    """
    ensure_same_tenant(task, actor)
    if task.kind == TaskKind.CONVERSATION:
        raise TaskNotAllowed("A conversation task starts when an agent accepts it.")
    if task.assignee_id != actor.pk:
        raise TaskNotAllowed("Only the agent this task is given to can start it; assign it to yourself first.")
    return task_transition(task=task, to_status=S.ASSIGNED, actor=actor, via=via)


def task_complete(
    *, task: Task, actor=None, via: str | None = None, disposition: Disposition | None = None, notes: str = ""
) -> Task:
    """Complete a task (from assigned or wrapping), with a disposition and notes.

    A conversation task whose queue requires a disposition cannot complete without one
    (DispositionRequired). The disposition must be active and allowed for the task's queue.
    Writes one `completion` row (old → completed, notes) and, with a disposition, one `disposition`
    row. For a conversation task of a resolved conversation, then runs the tenant's
    `conversation_resolved` automation rules in the same transaction (their follow-ups write their
    own `created` rows). Pushes `task.status` on commit.
    """
    ensure_same_tenant(task, actor, disposition)
    queue = task.queue
    if disposition is None and task.kind == TaskKind.CONVERSATION and queue is not None and queue.disposition_required:
        raise DispositionRequired(f"Choose a disposition: the {queue.name} queue needs one to complete this task.")
    if disposition is not None:
        if not disposition.is_active:
            raise DispositionNotAllowed(f"The disposition “{disposition.name}” is no longer in use.")
        limited_to = set(disposition.queues.values_list("pk", flat=True))
        if limited_to and getattr(queue, "pk", None) not in limited_to:
            raise DispositionNotAllowed(f"The disposition “{disposition.name}” is not used in this task's queue.")
    with transaction.atomic():
        task_transition(
            task=task, to_status=S.COMPLETED, actor=actor, via=via, reason=notes, kind=ActivityKind.COMPLETION,
            fields={"disposition": disposition, "completion_notes": notes},
        )  # fmt: skip
        if disposition is not None:
            activity_record(
                kind=ActivityKind.DISPOSITION, task=task, actor=actor, via=via, new=disposition.name, reason=notes
            )
        # Read the conversation now, not from the caller's (possibly cached, stale) object.
        conversation = Conversation.objects.filter(pk=task.conversation_id).first() if task.conversation_id else None
        if task.kind == TaskKind.CONVERSATION and conversation and conversation.status == ConversationStatus.RESOLVED:
            automation_rules_run(
                trigger=RuleTrigger.CONVERSATION_RESOLVED, conversation=conversation, disposition=disposition,
                agent=task.assignee,
            )  # fmt: skip
    return task


def automation_rules_run(*, trigger: str, conversation, disposition=None, agent=None) -> list[Task]:
    """Run the tenant's active rules for `trigger` on `conversation`, in the caller's transaction.

    `conversation_resolved` fires when a resolved conversation's task completes (so its disposition
    is known), or when a conversation without an agent's task is resolved (no disposition: rules
    that name one do not match). `create_follow_up` creates a follow-up due in the rule's hours,
    with the rule's priority (or the conversation's), for the agent who handled it (or the rule's
    team; with no such agent it goes unassigned). Each follow-up writes its `created` row (via rule).
    """
    created = []
    now = timezone.now()
    rules = AutomationRule.objects.filter(
        is_active=True, trigger=trigger, action=RuleAction.CREATE_FOLLOW_UP
    ).select_related("team")
    for rule in rules.order_by("position", "pk"):
        if rule.disposition_id and rule.disposition_id != getattr(disposition, "pk", None):
            continue
        same_agent = rule.assign_to == RuleAssignee.SAME_AGENT
        created.append(
            task_create_follow_up(
                conversation=conversation,
                via=Via.RULE,
                title=rule.follow_up_title,
                due_at=now + timedelta(hours=rule.due_in_hours),
                priority=rule.priority,
                assignee=agent if same_agent and agent is not None and agent.is_active else None,
                team=None if same_agent else rule.team,
                rule=rule,
                reason=f"Rule “{rule.name}”",
            )
        )
    return created


def dispositions_ensure_defaults(*, tenant) -> list[Disposition]:
    """Create the default dispositions ("Resolved", "Follow-up Required", "Escalation") that are missing.

    Idempotent, also when run concurrently (unique per tenant and name). Runs inside
    tenant_context(tenant). Returns the ones it created. Writes no activity; pushes nothing.
    """
    created = []
    for position, name in enumerate(DEFAULT_DISPOSITIONS, start=1):
        disposition, made = Disposition.objects.get_or_create(
            tenant=tenant, name=name, defaults={"position": position * 10}
        )
        if made:
            created.append(disposition)
    return created


# --- routing: agents ------------------------------------------------------------------------------

A = AgentStatus
OS = OfferStatus
# Only a pending offer moves, and only once: the answer (or its withdrawal) is final.
OFFER_TRANSITIONS: dict[str, frozenset[str]] = {
    OS.PENDING: frozenset({OS.ACCEPTED, OS.DECLINED, OS.TIMED_OUT, OS.CANCELED, OS.RESCINDED}),
    **{status: frozenset() for status in (OS.ACCEPTED, OS.DECLINED, OS.TIMED_OUT, OS.CANCELED, OS.RESCINDED)},
}
PRIORITY_RANK = {
    TaskPriority.LOW: routing.Priority.LOW,
    TaskPriority.MEDIUM: routing.Priority.MEDIUM,
    TaskPriority.HIGH: routing.Priority.HIGH,
    TaskPriority.CRITICAL: routing.Priority.CRITICAL,
}
# How many waiting tasks of one queue a routing run looks at: the front of the queue. Agents free
# for more than this many offers at once are rare; the next run takes the next ones.
ROUTING_WINDOW = 200


def break_reasons_ensure_defaults(*, tenant) -> list[BreakReason]:
    """Create the default break reasons that are missing (Break, Lunch, Training, and "Missed
    offers", the one routing sets). Idempotent (unique per tenant and name). Runs inside
    tenant_context(tenant). Returns the ones it created. Writes no activity; pushes nothing."""
    created = []
    for position, name in enumerate(DEFAULT_BREAK_REASONS, start=1):
        reason, made = BreakReason.objects.get_or_create(tenant=tenant, name=name, defaults={"position": position * 10})
        if made:
            created.append(reason)
    return created


def agent_state_for(membership: Membership) -> AgentState:
    """The agent's routing state, created (offline, with its first status period) on first use.

    Concurrent first calls create one row (the one-to-one constraint decides, get_or_create retries).
    Takes no lock; services that change the state lock it themselves (_agent_state_locked).
    """
    tenant_id = ensure_same_tenant(membership)
    with transaction.atomic():
        state, made = AgentState.objects.get_or_create(membership=membership, defaults={"tenant_id": tenant_id})
        if made:
            AgentStatusPeriod.objects.create(
                tenant_id=tenant_id, membership=membership, status=state.status, started_at=state.status_since
            )
    return state


def _agent_state_locked(membership: Membership) -> AgentState:
    agent_state_for(membership)
    return AgentState.objects.select_for_update().get(membership=membership)


def agent_set_status(
    *, membership: Membership, status: str, break_reason: BreakReason | None = None, actor=None
) -> AgentState:
    """Set an agent Available, Unavailable (with a break reason of the tenant's list) or Offline.

    The agent themselves or a supervisor (actor None: the system, e.g. after missed offers).
    Locks the agent's AgentState. Unchanged status and reason write nothing. Closes the open
    AgentStatusPeriod and opens the new one (the time in each status is recorded; `set_by` names a
    supervisor who stepped in). Becoming available resets the missed-offer count and requests
    routing. Offers already made stay until answered or timed out. Pushes `agent.status` to the
    agent and supervisors on commit.
    """
    A(status)
    tenant_id = ensure_same_tenant(membership, break_reason, actor)
    if actor is not None and actor.pk != membership.pk and not actor.can_supervise:
        raise AgentStatusNotAllowed("Only the agent or a supervisor can change an agent's status.")
    if status == A.UNAVAILABLE and (break_reason is None or not break_reason.is_active):
        raise AgentStatusNotAllowed("Choose why you are unavailable (Break, Lunch, Training, …).")
    if status != A.UNAVAILABLE and break_reason is not None:
        raise AgentStatusNotAllowed("Only Unavailable takes a break reason.")
    with transaction.atomic():
        state = _agent_state_locked(membership)
        reason_id = getattr(break_reason, "pk", None)
        if (state.status, state.break_reason_id) == (status, reason_id):
            return state
        now = timezone.now()
        AgentStatusPeriod.objects.filter(membership=membership, ended_at__isnull=True).update(ended_at=now)
        AgentStatusPeriod.objects.create(
            tenant_id=tenant_id, membership=membership, status=status, break_reason=break_reason, started_at=now,
            set_by=actor if actor is not None and actor.pk != membership.pk else None,
        )  # fmt: skip
        fields = {"status": status, "break_reason": break_reason, "status_since": now}
        if status == A.AVAILABLE:
            fields["consecutive_missed_offers"] = 0
        AgentState.objects.filter(pk=state.pk).update(**fields)
        for name, value in fields.items():
            setattr(state, name, value)
        data = {"member": membership.pk, "status": status, "break_reason": getattr(break_reason, "name", "")}
        realtime.push_to_member(tenant_id, membership.pk, event="agent.status", data=data)
        realtime.push_to_supervisors(tenant_id, event="agent.status", data=data)
        if status == A.AVAILABLE:
            routing_request(tenant_id=tenant_id)
    return state


def agent_choose_queues(*, membership: Membership, queues) -> AgentState:
    """The agent chooses the queues they serve, among those a supervisor allows them (no allowed
    queues set: every queue). Locks the AgentState. Requests routing when the agent is available.
    Pushes `agent.queues` to the agent and supervisors on commit. Writes no activity."""
    queues = list(queues)
    tenant_id = ensure_same_tenant(membership, *queues)
    with transaction.atomic():
        state = _agent_state_locked(membership)
        allowed = set(state.allowed_queues.values_list("pk", flat=True))
        if allowed and (refused := [q.name for q in queues if q.pk not in allowed]):
            raise QueueNotAllowed(f"You are not allowed to serve {', '.join(refused)}; ask a supervisor.")
        state.served_queues.set(queues)
        _push_agent_queues(state, tenant_id, [q.pk for q in queues])
    return state


def agent_allow_queues(*, membership: Membership, queues, actor) -> AgentState:
    """A supervisor sets the queues an agent may serve (empty: every queue); served queues outside
    them are dropped. Locks the AgentState; requests routing when available; pushes `agent.queues`."""
    queues = list(queues)
    tenant_id = ensure_same_tenant(membership, actor, *queues)
    if actor is not None and not actor.can_supervise:  # None: a platform operator (superuser) in the admin
        raise QueueNotAllowed("Only supervisors choose which queues an agent may serve.")
    with transaction.atomic():
        state = _agent_state_locked(membership)
        state.allowed_queues.set(queues)
        served = list(state.served_queues.values_list("pk", flat=True))
        if queues:
            kept = [pk for pk in served if pk in {q.pk for q in queues}]
            if kept != served:
                state.served_queues.set(kept)
            served = kept
        _push_agent_queues(state, tenant_id, served)
    return state


def agent_set_capacity(*, membership: Membership, capacity: dict[str, int], actor=None) -> AgentState:
    """A supervisor sets how many tasks of each channel the agent may hold at once; a channel left
    out takes the default (AgentState.capacity_for). Others get AgentStatusNotAllowed. Locks the
    AgentState; requests routing when the agent is available, as more room may mean more offers.
    Writes no activity; pushes nothing."""
    ensure_same_tenant(membership, actor)
    if actor is not None and not actor.can_supervise:  # None: a platform operator (superuser) in the admin
        raise AgentStatusNotAllowed("Only supervisors set how much work an agent may hold.")
    cleaned = {Channel(channel).value: int(limit) for channel, limit in capacity.items()}
    if any(limit < 0 for limit in cleaned.values()):
        raise AgentStatusNotAllowed("A capacity cannot be negative.")
    with transaction.atomic():
        state = _agent_state_locked(membership)
        if state.capacity == cleaned:
            return state
        AgentState.objects.filter(pk=state.pk).update(capacity=cleaned)
        state.capacity = cleaned
        if state.status == A.AVAILABLE:
            routing_request(tenant_id=state.tenant_id)
    return state


def _push_agent_queues(state: AgentState, tenant_id: int, served: list[int]) -> None:
    data = {"member": state.membership_id, "queues": served}
    realtime.push_to_member(tenant_id, state.membership_id, event="agent.queues", data=data)
    realtime.push_to_supervisors(tenant_id, event="agent.queues", data=data)
    if state.status == A.AVAILABLE:
        routing_request(tenant_id=tenant_id)


def _agent_got_work(membership_id: int, now) -> None:
    """The agent took a task: to the back of the rotation, and their missed-offer streak ends."""
    AgentState.objects.filter(membership_id=membership_id).update(last_assigned_at=now, consecutive_missed_offers=0)


# --- routing: runs ------------------------------------------------------------------------------------


def routing_request(*, tenant_id: int) -> None:
    """Ask for a routing run of the tenant once the current transaction commits.

    Called by whatever changes what routing would decide: a task created in a queue or queued
    again, an agent becoming available or choosing queues, capacity freed (a task leaves assigned
    or wrapping), an offer declined or timed out, a queue's settings changed. Enqueues
    `tasks.jobs.route_tenant(tenant_id)`, which calls `routing_run(tenant_id=…)` inside
    tenant_context; nothing when the transaction rolls back. Several requests for one tenant in one
    transaction enqueue one job (a request already waiting on this transaction's commit is enough;
    if its savepoint rolls back, Django drops it and the next request enqueues again). Requests of
    other transactions enqueue nothing while a job for the tenant waits that has not started yet
    (`_routing_pending_key`): that job's run starts after their commit, so it sees their change. A
    backlog of timed-out offers used to queue a job per batch, and the worker ran them all back to
    back while the timer sweeps waited behind them.
    """

    def enqueue() -> None:
        from tasks import jobs  # tasks.jobs imports this module

        # The change is committed; a lost trigger is repaired by the reaper's routing nudge.
        enqueue_unless_waiting(
            jobs.route_tenant, tenant_id, mark=_routing_pending_key(tenant_id), seconds=ROUTING_PENDING_SECONDS
        )

    enqueue.routing_tenant_id = tenant_id
    if connection.in_atomic_block and any(
        getattr(func, "routing_tenant_id", None) == tenant_id for _, func, _ in connection.run_on_commit
    ):
        return
    transaction.on_commit(enqueue)


# How long a routing job may wait in the queue, unstarted, before another request enqueues a second
# one anyway: the mark outlives a job lost with a killed worker for this long at most.
ROUTING_PENDING_SECONDS = 10


def _routing_pending_key(tenant_id: int) -> str:
    return f"routing-pending:{tenant_id}"


def routing_run(*, tenant_id: int, queue_ids=None) -> list[Offer]:
    """Offer the tenant's waiting tasks to its available agents; returns the offers made.

    Runs inside tenant_context(tenant_id), in one transaction:
    1. Locks the front of each queue's waiting tasks (pending; also reserved in queues that offer a
       task to several agents at once) with their conversations, ROUTING_WINDOW per queue, in the
       choice's order (priority, VIP, age), and the available agents who serve those queues: all
       with `FOR UPDATE SKIP LOCKED`. A concurrent run therefore works on other tasks and other agents
       and never waits: no task gets more offers than its queue allows and no agent more work
       than their capacity, because whoever counts an agent's load holds that agent's row. (Every
       other way of adding load locks the AgentState too: task_claim; accepting an offer keeps the
       load it already counted.)
    2. Reads, for those agents, their load per channel and wrap-up (one aggregate query), skills,
       served ∩ allowed queues; for those tasks, VIP (from the contact), who declined or let an
       offer time out, who holds a pending offer, and for sticky queues each contact's last agent.
    3. Calls the pure `tasks.routing.choose_offers` and applies its decisions (_offers_make, in a
       fixed number of statements): one Offer each (expires_at = now + the queue's
       offer_timeout_seconds, with the choice's explanation), the tasks pending → reserved
       (task_transition_many, one `status` row per task naming its agents, one `tasks.status` push
       to supervisors), one `status` row per offer ("offer pending", with the explanation), and one
       `offer.new` to each agent listing their new offers (`data.offers`).
    Pick-mode queues are left out (agents pick). Auto-answer queues make one offer per task and
    accept it right after the commit through offer_accept (its own transaction: it locks the
    conversation before the task, which this run must not do while holding task locks).
    """
    if current_tenant_id() != tenant_id:
        raise CrossTenantWrite(f"routing_run for tenant {tenant_id} must run inside that tenant's context")
    if queue_ids is None:  # a full run starts now: what commits from here on needs a job of its own
        waiting_mark_clear(_routing_pending_key(tenant_id))
    now = timezone.now()
    with transaction.atomic():
        queues = Queue.objects.filter(pick_mode=False).prefetch_related("required_skills")
        if queue_ids is not None:
            queues = queues.filter(pk__in=list(queue_ids))
        queue_by_id = {queue.pk: queue for queue in queues}
        channels = {c for queue in queue_by_id.values() for c in (queue.channels or routing.CHANNELS)}
        with_room = _agents_with_room(list(queue_by_id), channels)
        if not with_room:  # everyone is full: lock no task (agents accepting offers need them)
            return []
        tasks = _routing_lock_tasks(queue_by_id.values())
        if not tasks:
            return []
        agents = _routing_lock_agents(with_room, {task.channel for task, _ in tasks.values()})
        if not agents:
            return []
        decisions = routing.choose_offers(
            [_task_snapshot(task, facts) for task, facts in tasks.values()],
            [_agent_snapshot(state, facts) for state, facts in agents.values()],
            [_queue_rules(queue) for queue in queue_by_id.values()],
            last_handler_by_contact=_last_handlers(tasks.values(), queue_by_id),
            now=now,
        )
        offers = _offers_make(decisions, tasks, queue_by_id, now)
    for offer in offers:
        if queue_by_id[tasks[offer.task_id][0].queue_id].auto_answer:
            try:
                offer_accept(offer=offer, agent=offer.agent, via=Via.SYSTEM)
            except (AlreadyTaken, OfferNotAllowed, ChangedMeanwhile, TransitionNotAllowed) as error:
                logger.info("auto-answer of offer %s did not happen: %s", offer.pk, error)
    return offers


def _routing_lock_tasks(queues) -> dict[int, tuple[Task, dict]]:
    rank = Case(
        *(When(priority=priority, then=Value(int(r))) for priority, r in PRIORITY_RANK.items()),
        default=Value(int(routing.Priority.MEDIUM)),
        output_field=IntegerField(),
    )
    locked: dict[int, tuple[Task, dict]] = {}
    for queue in queues:
        statuses = (S.PENDING,) if queue.max_offers_per_task == 1 else (S.PENDING, S.RESERVED)
        # Each task is locked with its conversation, and skipped when either is locked: an agent
        # accepting an offer holds the conversation and waits for the task, and this run writes
        # activity rows that reference the conversation (a foreign-key share lock), so locking
        # only the task could deadlock the two. select_related is what `of` needs to name the
        # conversation; the caution against it with locks (joined rows are not re-read after a
        # lock wait) does not apply, because SKIP LOCKED never waits.
        rows = (
            Task.objects.filter(queue=queue, kind=TaskKind.CONVERSATION, status__in=statuses, assignee=None, team=None)
            .filter(conversation__isnull=False)
            .exclude(channel="")
            .select_related("conversation")
            .annotate(
                rank=rank,
                vip=Coalesce(F("conversation__contact__is_vip"), Value(False)),
                contact=F("conversation__contact_id"),
            )
            .order_by("-rank", "-vip", "created_at", "pk")
            .select_for_update(skip_locked=True, of=("self", "conversation"))[:ROUTING_WINDOW]
        )
        for task in rows:
            locked[task.pk] = (task, {"declined": set(), "pending": set()})
    if locked:
        for task_id, agent_id, status in Offer.objects.filter(
            task_id__in=list(locked), status__in=(OS.PENDING, OS.DECLINED, OS.TIMED_OUT)
        ).values_list("task_id", "agent_id", "status"):
            locked[task_id][1]["pending" if status == OS.PENDING else "declined"].add(agent_id)
    return locked


def _agents_with_room(queue_ids: list[int], channels: set[str]) -> dict[int, set[str]]:
    """Available agents serving these queues with room on some of `channels`: state id → those channels.

    Read without locks. The load read so can only be too high (nothing adds load without the
    agent's lock), so an agent left out was full a moment ago, and whatever frees them requests
    routing again. Leaving full agents unlocked keeps their accepts from queueing behind routing
    runs, and a run with nobody to offer to locks no task at all.
    """
    served_through = AgentState.served_queues.through.objects.filter(queue_id__in=queue_ids)
    candidates = list(
        AgentState.objects.filter(
            status=A.AVAILABLE, membership__is_active=True, pk__in=served_through.values("agentstate_id")
        ).values_list("pk", "membership_id", "capacity")
    )
    loads, _ = agent_loads(m for _, m, _ in candidates)
    rooms = {
        pk: {c for c in channels if loads[membership_id][c] < _capacity(capacity, c)}
        for pk, membership_id, capacity in candidates
    }
    return {pk: room for pk, room in rooms.items() if room}


def _routing_lock_agents(with_room: dict[int, set[str]], channels: set[str]) -> dict[int, tuple[AgentState, dict]]:
    """Lock (SKIP LOCKED) the agents of `with_room` with room on a channel the locked tasks need,
    and read their facts, load included, under the lock."""
    wanted = [pk for pk, room in with_room.items() if room & channels]
    states = list(
        AgentState.objects.filter(pk__in=wanted, status=A.AVAILABLE)
        .order_by("pk")
        .select_for_update(skip_locked=True, of=("self",))
    )
    if not states:
        return {}
    by_state = {state.pk: (state, {"served": set(), "allowed": set(), "skills": {}}) for state in states}
    for state_id, queue_id in AgentState.served_queues.through.objects.filter(
        agentstate_id__in=list(by_state)
    ).values_list("agentstate_id", "queue_id"):
        by_state[state_id][1]["served"].add(queue_id)
    for state_id, queue_id in AgentState.allowed_queues.through.objects.filter(
        agentstate_id__in=list(by_state)
    ).values_list("agentstate_id", "queue_id"):
        by_state[state_id][1]["allowed"].add(queue_id)
    agents = {state.membership_id: (state, facts) for state, facts in by_state.values()}
    for membership_id, name, level in AgentSkill.objects.filter(membership_id__in=list(agents)).values_list(
        "membership_id", "skill__name", "level"
    ):
        agents[membership_id][1]["skills"][name] = level
    loads, wrapping = agent_loads(agents)
    for membership_id, (_, facts) in agents.items():
        facts["load"], facts["in_wrap_up"] = loads.get(membership_id, {}), membership_id in wrapping
    return agents


def _capacity(capacity: dict | None, channel: str) -> int:
    return int((capacity or {}).get(channel, routing.DEFAULT_CAPACITY[channel]))


def _task_snapshot(task: Task, facts: dict) -> routing.TaskSnapshot:
    return routing.TaskSnapshot(
        task_id=task.pk, queue_id=task.queue_id, channel=task.channel, priority=task.rank, vip=task.vip,
        waiting_since=task.created_at, contact_id=task.contact, declined_by=frozenset(facts["declined"]),
        pending_offers_to=frozenset(facts["pending"]),
    )  # fmt: skip


def _agent_snapshot(state: AgentState, facts: dict) -> routing.AgentSnapshot:
    queue_ids = facts["served"] & facts["allowed"] if facts["allowed"] else facts["served"]
    return routing.AgentSnapshot(
        agent_id=state.membership_id, status=state.status, in_wrap_up=facts["in_wrap_up"],
        queue_ids=frozenset(queue_ids), skills=facts["skills"],
        capacity={c: int(n) for c, n in (state.capacity or {}).items() if c in routing.CHANNELS},
        load=dict(facts["load"]), last_assigned_at=state.last_assigned_at,
    )  # fmt: skip


def _queue_rules(queue: Queue) -> routing.QueueRules:
    return routing.QueueRules(
        queue_id=queue.pk, strategy=queue.strategy,
        required_skills=frozenset(skill.name for skill in queue.required_skills.all()),
        max_offers_per_task=max(queue.max_offers_per_task, 1) if not queue.auto_answer else 1,
        wrap_up_receives_work=queue.wrap_up_receives_work,
        channels=frozenset(queue.channels or routing.CHANNELS),
    )  # fmt: skip


def _last_handlers(tasks, queue_by_id) -> dict[int, int]:
    """For sticky queues: contact → the agent of the contact's most recent handled conversation task."""
    contacts = {
        task.contact
        for task, _ in tasks
        if task.contact and queue_by_id[task.queue_id].strategy == RoutingStrategy.STICKY
    }
    if not contacts:
        return {}
    handled = (
        Task.objects.filter(
            kind=TaskKind.CONVERSATION, conversation__contact_id__in=contacts, assignee__isnull=False,
            status__in=(S.ASSIGNED, S.WRAPPING, S.COMPLETED),
        )
        .order_by("conversation__contact_id", "-status_changed_at", "-pk")
        .distinct("conversation__contact_id")
        .values_list("conversation__contact_id", "assignee_id")
    )  # fmt: skip
    return dict(handled)


def _offers_make(decisions, tasks, queue_by_id, now) -> list[Offer]:
    """Apply a run's decisions in a fixed number of statements, however many offers: the offers in
    one INSERT, the pending tasks → reserved through task_transition_many, every activity row in one
    INSERT, and on commit one `offer.new` per agent (all their offers, push_to_members) and one
    `tasks.status` to supervisors. A statement and a push per offer made a decision cost ~7 ms
    (bench/README.md, routing)."""
    if not decisions:
        return []
    names = {
        m.pk: m.display_name
        for m in Membership.objects.filter(pk__in={d.agent_id for d in decisions}).select_related("user")
    }
    expires_at_of = {
        d.task_id: now + timedelta(seconds=queue_by_id[tasks[d.task_id][0].queue_id].offer_timeout_seconds)
        for d in decisions
    }
    offers = Offer.objects.bulk_create(
        Offer(tenant_id=tasks[d.task_id][0].tenant_id, task=tasks[d.task_id][0], agent_id=d.agent_id, created_at=now,
              expires_at=expires_at_of[d.task_id], explanation=d.explanation)
        for d in decisions
    )  # fmt: skip
    by_task: dict[int, list[Offer]] = defaultdict(list)
    for offer in offers:
        by_task[offer.task_id].append(offer)
    offer_rows, offered_to = [], defaultdict(list)
    for task_id, made in by_task.items():
        task, expires_at = tasks[task_id][0], expires_at_of[task_id]
        for offer in made:
            offer_rows.append(
                activity_new(kind=ActivityKind.STATUS, task=task, via=Via.SYSTEM, new=f"offer {OS.PENDING}",
                             reason=f"Offered to {names[offer.agent_id]} until {expires_at:%H:%M:%S} UTC. "
                                    f"{offer.explanation}")
            )  # fmt: skip
            offered_to[offer.agent_id].append(
                {"offer": offer.public_id, "task": task.public_id, "channel": task.channel,
                 "expires_at": expires_at.isoformat(), "explanation": offer.explanation}
            )  # fmt: skip
    reserved = [tasks[task_id][0] for task_id in by_task if tasks[task_id][0].status == S.PENDING]
    task_transition_many(
        tasks=reserved, to_status=S.RESERVED, via=Via.SYSTEM,
        reasons={task.pk: f"Offered to {', '.join(names[o.agent_id] for o in by_task[task.pk])}." for task in reserved},
        rows_after=offer_rows,
    )  # fmt: skip
    for offer in offers:
        offer.task = tasks[offer.task_id][0]
    realtime.push_to_members(
        tasks[decisions[0].task_id][0].tenant_id,
        {agent_id: {"offers": made} for agent_id, made in offered_to.items()},
        event="offer.new",
    )
    return offers


# --- routing: offers ----------------------------------------------------------------------------------


def offer_transition(*, offer: Offer, to_status: str, actor=None, via: str | None = None, reason: str = "") -> bool:
    """Move a pending offer to its answer; returns whether it moved.

    The only code that changes an offer's status. Checks OFFER_TRANSITIONS (TransitionNotAllowed
    for a move no status allows). Compare-and-set `UPDATE … WHERE status = 'pending'`: an offer
    already answered (by its agent, a sweep, another router) is left alone and False returned, so
    a caller may try twice. Callers hold the task's row lock. Sets `responded_at`.
    Writes one `status` row on the task ("offer pending" → "offer <status>", the agent and reason).
    Pushes `offer.<status>` to the agent on commit.
    """
    if to_status not in OFFER_TRANSITIONS[OS.PENDING]:
        raise TransitionNotAllowed("offer", OS.PENDING, to_status)
    ensure_same_tenant(offer, actor)
    now = timezone.now()
    with transaction.atomic():
        if not Offer.objects.filter(pk=offer.pk, status=OS.PENDING).update(status=to_status, responded_at=now):
            return False
        offer.status, offer.responded_at = to_status, now
        task = offer.task
        agent_name = Membership.objects.select_related("user").get(pk=offer.agent_id).display_name
        activity_record_many([_offer_answered(offer, task, agent_name=agent_name, actor=actor, via=via, reason=reason)])
    return True


def _offer_answered(offer: Offer, task: Task, *, agent_name: str, actor=None, via=None, reason: str) -> Activity:
    """The task's activity row for an offer's answer (unsaved, for the caller to insert), and its
    push to the offered agent on commit."""
    realtime.push_to_member(
        offer.tenant_id, offer.agent_id, event=f"offer.{offer.status}",
        data={"offer": offer.public_id, "task": task.public_id, "status": offer.status, "reason": reason},
    )  # fmt: skip
    return activity_new(
        kind=ActivityKind.STATUS, task=task, actor=actor, via=via, old=f"offer {OS.PENDING}",
        new=f"offer {offer.status}", reason=f"{agent_name}: {reason}".strip(": "),
    )  # fmt: skip


def _offers_withdraw(task: Task, to_status: str, *, reason: str, keep: Offer | None = None) -> list[Offer]:
    """Rescind or cancel every offer of `task` still pending (but `keep`). Caller holds the task lock."""
    withdrawn = []
    for offer in Offer.objects.filter(task=task, status=OS.PENDING).exclude(pk=getattr(keep, "pk", None)):
        offer.task = task
        if offer_transition(offer=offer, to_status=to_status, via=Via.SYSTEM, reason=reason):
            withdrawn.append(offer)
    return withdrawn


def _lock_task_with_conversation(task_id: int) -> tuple[Task, Conversation | None]:
    """Lock a task's conversation, then the task (the module's lock order); return both fresh."""
    conversation_id = Task.objects.filter(pk=task_id).values_list("conversation_id", flat=True).get()
    conversation = None
    if conversation_id is not None:
        # No select_related with these locks: joined rows are not re-read after a lock wait.
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    return Task.objects.select_for_update().get(pk=task_id), conversation


def _taken_by(task: Task, agent) -> AlreadyTaken | None:
    if task.assignee_id and task.assignee_id != agent.pk:
        holder = Membership.objects.select_related("user").get(pk=task.assignee_id)
        return AlreadyTaken(f"This task was already taken by {holder.display_name}.")
    return None


def offer_accept(*, offer: Offer, agent: Membership, via: str | None = None) -> Task:
    """The agent accepts their offer: the first accept of a task wins.

    Locks the task's conversation, then the task (so concurrent accepts of one task queue up; the
    first commits, the next ones see its result). The offer must be the agent's own, still pending
    and not expired (OfferNotAllowed); when someone else holds the task, AlreadyTaken names them.
    Then: the offer → accepted, the task's other pending offers → rescinded (pushed to those
    agents), the task reserved → assigned to the agent through conversations.services
    .conversation_assign (the conversation becomes assigned to them too; its rows: `status`,
    `assignment`) or task_assign for a task without conversation; the agent's `last_assigned_at`
    is set and their missed-offer streak ends. Last, still inside the transaction, the channel's
    acceptance hook runs (tasks.acceptance: a call is bridged to the agent's phone); its DomainError
    rolls the acceptance back. `via` SYSTEM (auto-answer) records no actor.
    """
    from conversations.services import conversation_assign

    ensure_same_tenant(offer, agent)
    if offer.agent_id != agent.pk:
        raise OfferNotAllowed("This offer is for someone else.")
    actor = None if via == Via.SYSTEM else agent
    with transaction.atomic():
        task, conversation = _lock_task_with_conversation(offer.task_id)
        current = Offer.objects.get(pk=offer.pk)
        if current.status != OS.PENDING:
            if taken := _taken_by(task, agent):
                raise taken
            raise OfferNotAllowed(f"This offer was {OS(current.status).label.lower()}; it can no longer be accepted.")
        now = timezone.now()
        if current.expires_at <= now:
            raise OfferNotAllowed("This offer has expired.")
        current.task = task
        offer_transition(offer=current, to_status=OS.ACCEPTED, actor=actor, via=via)
        _offers_withdraw(task, OS.RESCINDED, reason=f"Accepted by {agent.display_name}.")
        if conversation is not None and task.kind == TaskKind.CONVERSATION:
            conversation_assign(conversation=conversation, agent=agent, actor=actor, via=via, note="Offer accepted.")
        else:
            task_assign(task=task, agent=agent, actor=actor, via=via, note="Offer accepted.")
        _agent_got_work(agent.pk, now)
        offer.status, offer.responded_at = current.status, current.responded_at
        task.refresh_from_db()
        acceptance_hooks_run(task=task, agent=agent)  # a call is connected to the agent's phone
    return task


def offer_decline(*, offer: Offer, agent: Membership) -> Offer:
    """The agent declines their offer: they are never offered this task again.

    Locks the task's conversation, then the task. The offer must be the agent's own and pending (OfferNotAllowed; AlreadyTaken
    when someone else holds the task). The offer → declined; the task reserved → pending when no
    other offer of it is pending (`status` row naming the agent); routing is requested. A decline
    is an answer: the agent's missed-offer streak ends.
    """
    ensure_same_tenant(offer, agent)
    if offer.agent_id != agent.pk:
        raise OfferNotAllowed("This offer is for someone else.")
    with transaction.atomic():
        task, _ = _lock_task_with_conversation(offer.task_id)
        offer.task = task
        if not offer_transition(offer=offer, to_status=OS.DECLINED, actor=agent, reason="Declined."):
            if taken := _taken_by(task, agent):
                raise taken
            current = Offer.objects.values_list("status", flat=True).get(pk=offer.pk)
            raise OfferNotAllowed(f"This offer was already {OS(current).label.lower()}.")
        AgentState.objects.filter(membership=agent).update(consecutive_missed_offers=0)
        _task_back_to_queue(task, reason=f"{agent.display_name} declined the offer.", actor=agent)
    return offer


def offer_time_out(*, offer: Offer) -> bool:
    """A pending offer ran out of time (the sweep in tasks.timers calls this for each expired one).

    Idempotent: locks the task's conversation and the task, then compare-and-set pending → timed_out; returns False, changing
    nothing, when the offer was already answered. Otherwise the agent is never offered this task
    again, the task goes back to pending when no other offer is pending, routing is requested, and
    the agent's `consecutive_missed_offers` rises; at the queue's `missed_offers_before_unavailable`
    (0: never) an available agent is set Unavailable with the reason "Missed offers"
    (agent_set_status) and told why (`agent.notice` push).
    """
    with transaction.atomic():
        task, _ = _lock_task_with_conversation(offer.task_id)
        offer.task = task
        queue = Queue.objects.filter(pk=task.queue_id).first()
        timeout = f" within {queue.offer_timeout_seconds}s" if queue else ""
        if not offer_transition(offer=offer, to_status=OS.TIMED_OUT, via=Via.SYSTEM, reason=f"No answer{timeout}."):
            return False
        agent = Membership.objects.select_related("user").get(pk=offer.agent_id)
        state = _agent_state_locked(agent)
        state.consecutive_missed_offers += 1
        AgentState.objects.filter(pk=state.pk).update(consecutive_missed_offers=state.consecutive_missed_offers)
        limit = queue.missed_offers_before_unavailable if queue else 0
        if limit and state.consecutive_missed_offers >= limit and state.status == A.AVAILABLE:
            break_reasons_ensure_defaults(tenant=Tenant.objects.get(pk=task.tenant_id))
            agent_set_status(
                membership=agent, status=A.UNAVAILABLE, break_reason=BreakReason.objects.get(name=MISSED_OFFERS_REASON)
            )
            realtime.push_to_member(
                task.tenant_id, agent.pk, event="agent.notice",
                data={"status": A.UNAVAILABLE, "break_reason": MISSED_OFFERS_REASON,
                      "message": f"You were set Unavailable because {state.consecutive_missed_offers} offers in a row "
                                 "went unanswered. Set yourself Available when you are back."},
            )  # fmt: skip
        _task_back_to_queue(task, reason=f"The offer to {agent.display_name} timed out.")
    return True


def _task_back_to_queue(task: Task, *, reason: str, actor=None) -> None:
    """After an offer ended unaccepted: reserved → pending when no offer holds the task any more
    (task_transition then requests routing); otherwise routing may still add offers."""
    if task.status == S.RESERVED and not Offer.objects.filter(task=task, status=OS.PENDING).exists():
        task_transition(task=task, to_status=S.PENDING, actor=actor, reason=reason)
    else:
        routing_request(tenant_id=task.tenant_id)


# --- routing: offers timed out in bulk --------------------------------------------------------------


def task_transition_many(
    *,
    tasks: list[Task],
    to_status: str,
    via: str | None = None,
    reasons: dict[int, str],
    rows_before: list = (),
    rows_after: list = (),
) -> None:
    """The bulk form of task_transition for moves that need no per-task fields (→ pending, → reserved,
    → canceled): the same checks, row, side effects and pushes, in a fixed number of statements.

    Callers hold the tasks' row locks and pass each as they saw it. Checks TASK_TRANSITIONS for every
    task (TransitionNotAllowed, nothing written). Compare-and-set per seen status; when any task moved
    meanwhile, ChangedMeanwhile (the caller's savepoint undoes the rest). Leaving reserved cancels the
    tasks' pending offers; → pending or out of assigned/wrapping requests routing once; into or out
    of pending tells the queues' waiting webchat visitors. Writes one `status` row per task (old →
    new, `reasons[task.pk]`) in one INSERT, after the caller's `rows_before` and before its
    `rows_after` (both written even when `tasks` is empty), with the withdrawn offers' rows. Pushes
    one `tasks.status` to supervisors and one to each agent holding some, on commit.
    """
    if to_status not in (S.PENDING, S.RESERVED, S.CANCELED):
        raise ValueError(f"task_transition_many does not move tasks to {to_status}: use task_transition")
    if not tasks:
        activity_record_many([*rows_before, *rows_after])
        return
    tenant_id = ensure_same_tenant(*tasks)
    for task in tasks:
        if to_status not in TASK_TRANSITIONS.get(task.status, ()):
            raise TransitionNotAllowed("task", task.status, to_status)
    now = timezone.now()
    fields = {"completed_at": now} if to_status == S.CANCELED else {}
    by_old: dict[str, list[int]] = defaultdict(list)
    for task in tasks:
        by_old[task.status].append(task.pk)
    with transaction.atomic():
        for old, ids in by_old.items():
            updated = Task.objects.filter(pk__in=ids, status=old).update(
                status=to_status, status_changed_at=now, updated_at=now, **fields
            )
            if updated != len(ids):
                raise ChangedMeanwhile("Some of these tasks changed meanwhile. Reload to see them.")
        rows, left_reserved = list(rows_before), {}
        for task in tasks:
            old = task.status
            rows.append(activity_new(kind=ActivityKind.STATUS, task=task, via=via, old=old, new=to_status,
                                     reason=reasons.get(task.pk, "")))  # fmt: skip
            task.status, task.status_changed_at, task.updated_at = to_status, now, now
            for name, value in fields.items():
                setattr(task, name, value)
            if old == S.RESERVED:
                left_reserved[task.pk] = task
            if S.PENDING in (old, to_status):
                _waiting_line_changed(task)
        rows += _offers_withdraw_many(
            left_reserved, OS.CANCELED, reason=f"The task became {S(to_status).label.lower()}."
        )
        activity_record_many([*rows, *rows_after])
        _push_tasks_changed(tenant_id, tasks, "tasks.status", status=to_status)
        if to_status == S.PENDING or by_old.keys() & {S.ASSIGNED, S.WRAPPING}:
            routing_request(tenant_id=tenant_id)


def offers_time_out(*, offers: list[Offer]) -> list[Offer]:
    """The bulk form of offer_time_out for the timer sweep: the same rows, state and pushes for a batch
    of one tenant's expired offers, in a fixed number of statements (plus agent_set_status for each
    agent it sets Unavailable).

    Locks the offers' conversations, then their tasks, in id order and with SKIP LOCKED: an offer
    whose conversation or task someone holds (an agent accepting it) is left for the next sweep.
    Then compare-and-set pending → timed_out (an offer answered meanwhile is left alone), one
    `status` row per offer as offer_transition writes it; each agent's `consecutive_missed_offers`
    rises by their offers timed out (an available agent at the queue's limit is set Unavailable
    and told why, as offer_time_out does); each reserved task no offer holds any more goes back to
    pending through task_transition_many (reason: the last timed-out offer's agent), the others
    ask for routing. Pushes one `offer.timed_out` per agent, on commit. Returns the offers timed out.
    """
    if not offers:
        return []
    tenant_id = ensure_same_tenant(*offers)
    with transaction.atomic():
        task_ids = {offer.task_id for offer in offers}
        held = set(
            Conversation.objects.select_for_update(skip_locked=True)
            .filter(pk__in=Task.objects.filter(pk__in=task_ids).values("conversation_id"))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        # A task whose conversation another transaction holds is skipped with it (it is not in `held`).
        tasks = {
            task.pk: task
            for task in Task.objects.select_for_update(skip_locked=True)
            .filter(Q(conversation__isnull=True) | Q(conversation_id__in=held), pk__in=task_ids)
            .order_by("pk")
        }
        due = list(
            Offer.objects.select_for_update(of=("self",))
            .filter(pk__in=[offer.pk for offer in offers], task_id__in=tasks, status=OS.PENDING)
            .select_related("agent__user")
            .order_by("pk")
        )
        if not due:
            return []
        now = timezone.now()
        Offer.objects.filter(pk__in=[offer.pk for offer in due], status=OS.PENDING).update(
            status=OS.TIMED_OUT, responded_at=now
        )
        queues = {queue.pk: queue for queue in Queue.objects.filter(pk__in={task.queue_id for task in tasks.values()})}
        rows, last_agent_of_task, missed = [], {}, Counter()
        by_agent: dict[int, list[Offer]] = defaultdict(list)
        for offer in due:
            offer.status, offer.responded_at, offer.task = OS.TIMED_OUT, now, tasks[offer.task_id]
            queue = queues.get(offer.task.queue_id)
            reason = f"No answer within {queue.offer_timeout_seconds}s." if queue else "No answer."
            rows.append(
                activity_new(kind=ActivityKind.STATUS, task=offer.task, via=Via.SYSTEM, old=f"offer {OS.PENDING}",
                             new=f"offer {OS.TIMED_OUT}", reason=f"{offer.agent.display_name}: {reason}")
            )  # fmt: skip
            last_agent_of_task[offer.task_id] = offer.agent
            missed[offer.agent_id] += 1
            by_agent[offer.agent_id].append(offer)
        for agent_id, answered in by_agent.items():
            realtime.push_to_member(
                tenant_id, agent_id, event=f"offer.{OS.TIMED_OUT}",
                data={"offers": [offer.public_id for offer in answered], "tasks": [offer.task.public_id for offer in answered],
                      "status": OS.TIMED_OUT},
            )  # fmt: skip
        _agents_missed_offers(tenant_id, missed, {offer.agent_id: queues.get(offer.task.queue_id) for offer in due},
                              {offer.agent_id: offer.agent for offer in due})  # fmt: skip
        still_offered = set(
            Offer.objects.filter(task_id__in=last_agent_of_task, status=OS.PENDING).values_list("task_id", flat=True)
        )
        back = [
            tasks[task_id]
            for task_id in last_agent_of_task
            if tasks[task_id].status == S.RESERVED and task_id not in still_offered
        ]
        task_transition_many(
            tasks=back, to_status=S.PENDING,
            reasons={task.pk: f"The offer to {last_agent_of_task[task.pk].display_name} timed out." for task in back},
            rows_before=rows,
        )  # fmt: skip
        if len(back) < len(last_agent_of_task):
            routing_request(tenant_id=tenant_id)
    return due


def _agents_missed_offers(tenant_id: int, missed: Counter, queue_of: dict, agent_of: dict) -> None:
    """Raise each agent's missed-offer streak by their offers timed out (one UPDATE); an available
    agent reaching their queue's limit is set Unavailable and told why (offer_time_out's rule)."""
    states = list(AgentState.objects.select_for_update().filter(membership_id__in=missed).order_by("pk"))
    if len(states) < len(missed):  # an agent offered work before their state existed: made on first use
        for agent_id in missed.keys() - {state.membership_id for state in states}:
            agent_state_for(agent_of[agent_id])
        states = list(AgentState.objects.select_for_update().filter(membership_id__in=missed).order_by("pk"))
    AgentState.objects.filter(pk__in=[state.pk for state in states]).update(
        consecutive_missed_offers=F("consecutive_missed_offers")
        + Case(*(When(membership_id=agent_id, then=Value(n)) for agent_id, n in missed.items()), default=Value(0),
               output_field=IntegerField())
    )  # fmt: skip
    for state in states:
        state.consecutive_missed_offers += missed[state.membership_id]
        queue = queue_of[state.membership_id]
        limit = queue.missed_offers_before_unavailable if queue else 0
        if limit and state.consecutive_missed_offers >= limit and state.status == A.AVAILABLE:
            agent = agent_of[state.membership_id]
            break_reasons_ensure_defaults(tenant=Tenant.objects.get(pk=tenant_id))
            agent_set_status(
                membership=agent, status=A.UNAVAILABLE, break_reason=BreakReason.objects.get(name=MISSED_OFFERS_REASON)
            )
            realtime.push_to_member(
                tenant_id, agent.pk, event="agent.notice",
                data={"status": A.UNAVAILABLE, "break_reason": MISSED_OFFERS_REASON,
                      "message": f"You were set Unavailable because {state.consecutive_missed_offers} offers in a row "
                                 "went unanswered. Set yourself Available when you are back."},
            )  # fmt: skip


# --- routing: claiming --------------------------------------------------------------------------------


def task_claim(*, task: Task, agent: Membership, actor=None, via: str | None = None, note: str = "") -> Task:
    """Give a waiting conversation task to one agent: "Assign to me", pick mode, a supervisor's
    assignment and "Assign to staff" with a note all come here.

    `actor` None means the agent claims it themselves; giving it to someone else takes a supervisor.
    Locks the conversation, then the task, then (self-assignment) the agent's AgentState. Only
    pending or reserved tasks nobody holds can be claimed: when someone holds it the loser gets
    AlreadyTaken naming them, so of concurrent claims exactly one wins. Self-assignment checks the
    agent's capacity on the task's channel (AtCapacity); a supervisor may overload an agent on
    purpose. The agent's own pending offer of the task → accepted, the others → rescinded. The task
    (and its conversation) become assigned through conversation_assign (rows: `status`,
    `assignment` with the note). The agent's `last_assigned_at` is set.
    """
    from conversations.services import conversation_assign

    actor = actor or agent
    ensure_same_tenant(task, agent, actor)
    self_assigned = actor.pk == agent.pk
    if not self_assigned and not actor.can_supervise:
        raise AssignmentNotAllowed("Only supervisors can give work to someone else.")
    if not agent.is_active:
        raise AssignmentNotAllowed(f"{agent.display_name} is no longer active here and cannot take work.")
    with transaction.atomic():
        current, conversation = _lock_task_with_conversation(task.pk)
        if current.assignee_id == agent.pk and current.status in (S.ASSIGNED, S.WRAPPING):
            return current
        if taken := _taken_by(current, agent):
            raise taken
        if current.status not in (S.PENDING, S.RESERVED):
            raise TransitionNotAllowed("task", current.status, S.ASSIGNED, "Only waiting tasks can be claimed.")
        own_offer = Offer.objects.filter(task=current, agent=agent, status=OS.PENDING).first()
        if self_assigned and current.channel:
            capacity = _agent_state_locked(agent).capacity_for(current.channel)
            load = agent_loads([agent.pk])[0].get(agent.pk, {}).get(current.channel, 0) - bool(own_offer)
            if load >= capacity:
                raise AtCapacity(f"You already hold {load} of {capacity} {current.get_channel_display()} tasks.")
        if own_offer is not None:
            own_offer.task = current
            offer_transition(offer=own_offer, to_status=OS.ACCEPTED, actor=actor, via=via)
        _offers_withdraw(current, OS.RESCINDED, reason=f"Given to {agent.display_name}.")
        if conversation is not None and current.kind == TaskKind.CONVERSATION:
            conversation_assign(conversation=conversation, agent=agent, actor=actor, via=via, note=note)
        else:
            task_assign(task=current, agent=agent, actor=actor, via=via, note=note)
        _agent_got_work(agent.pk, timezone.now())
        current.refresh_from_db()
        acceptance_hooks_run(task=current, agent=agent)
    return current


# --- routing: where tasks come from -----------------------------------------------------------------


def conversation_task_title(conversation: Conversation) -> str:
    """What a conversation's task is called in every list: the channel and who is waiting."""
    return f"{conversation.get_channel_display()} with {conversation.contact}"


def conversation_task_ensure(*, conversation: Conversation, queue: Queue, via: str = Via.WEBHOOK) -> Task:
    """The conversation's open conversation task, created in `queue` when it has none.

    The channels call this after storing an inbound message. Locks the conversation, so two
    messages arriving together make one task. An open task (pending, reserved or assigned) is
    returned (a new message does not make a second task). Otherwise a pending task is created
    (task_create: its `created` row, `task.created` push, a routing request) with the
    conversation's priority. Either way the task's response deadline for the customer's current
    wait is set up front, and renewed when they wait anew (tasks.timers.task_response_deadline_refresh).
    """
    from conversations.services import conversation_lock_refresh  # conversations' services build on these

    ensure_same_tenant(conversation, queue)
    with transaction.atomic():
        conversation_lock_refresh(conversation)
        existing = (
            Task.objects.filter(conversation=conversation, kind=TaskKind.CONVERSATION)
            .filter(status__in=(S.PENDING, S.RESERVED, S.ASSIGNED))
            .order_by("-created_at", "-pk")
            .first()
        )
        from tasks.timers import task_response_deadline_refresh  # timers build on these services

        if existing is not None:
            task_response_deadline_refresh(task=existing, conversation=conversation)  # a new wait, a new clock
            return existing
        task = task_create(
            kind=TaskKind.CONVERSATION, title=conversation_task_title(conversation),
            via=via, conversation=conversation, queue=queue,
            priority=CONVERSATION_TO_TASK_PRIORITY[conversation.priority], reason="The customer wrote.",
        )  # fmt: skip
        task_response_deadline_refresh(task=task, conversation=conversation)
    return task


# --- supervisors' bulk actions ----------------------------------------------------------------------


@dataclass
class BulkOutcome:
    """What a bulk action did: the rows it changed, and why it left the others (why → how many)."""

    changed: list = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


def each_counting_refusals(rows: Iterable, change: Callable[[object], object]) -> BulkOutcome:
    """Apply a one-row service to each row, each in its own savepoint: a refused one (closed, changed
    meanwhile, …) is counted under the service's own message, and the others still apply."""
    outcome = BulkOutcome()
    for row in rows:
        try:
            with transaction.atomic():
                change(row)
        except DomainError as refused:
            outcome.skipped[str(refused)] += 1
        else:
            outcome.changed.append(row)
    return outcome


def tasks_cancel(*, tasks: QuerySet[Task], actor=None, via: str | None = None, reason: str = "") -> list[Task]:
    """Cancel many open tasks at once (a supervisor's bulk action) in a constant number of statements.

    The bulk form of task_transition(→ canceled), side effects included: locks the tasks in id
    order (a caller that locks their conversations does so first), cancels those TASK_TRANSITIONS
    lets go to canceled (pending, reserved, assigned; the others are left as they are), cancels the
    pending offers of the reserved ones and requests routing when an agent's capacity was freed.
    Writes one `status` row per task and per offer, in one INSERT. Pushes one `tasks.status` event
    to supervisors and one to each agent who held some (and `offer.canceled` per offer) on commit.
    Returns the canceled tasks.
    """
    tenant_id = ensure_same_tenant(actor)
    with transaction.atomic():
        locked = list(tasks.select_for_update().order_by("pk"))
        locked = [task for task in locked if S.CANCELED in TASK_TRANSITIONS[task.status]]
        if not locked:
            return []
        ensure_same_tenant(actor, *locked)
        now = timezone.now()
        Task.objects.filter(pk__in=[task.pk for task in locked], status__in=[S.PENDING, S.RESERVED, S.ASSIGNED]).update(
            status=S.CANCELED, status_changed_at=now, updated_at=now, completed_at=now
        )
        rows, old_statuses = [], set()
        for task in locked:
            old_statuses.add(task.status)
            rows.append(
                activity_new(
                    kind=ActivityKind.STATUS, task=task, actor=actor, via=via, old=task.status, new=S.CANCELED,
                    reason=reason,
                )
            )  # fmt: skip
            task.status, task.status_changed_at, task.updated_at, task.completed_at = S.CANCELED, now, now, now
        reserved = {row.task_id: row.task for row in rows if row.old_value == S.RESERVED}
        rows += _offers_withdraw_many(reserved, OS.CANCELED, reason="The task became canceled.")
        activity_record_many(rows)
        _push_tasks_changed(tenant_id, locked, "tasks.status", status=S.CANCELED)
        if old_statuses & {S.ASSIGNED, S.WRAPPING}:
            routing_request(tenant_id=tenant_id)
    return locked


def _offers_withdraw_many(tasks_by_id: dict[int, Task], to_status: str, *, reason: str) -> list:
    """Withdraw every pending offer of these tasks in one UPDATE (callers hold the tasks' locks);
    return their unsaved activity rows, as offer_transition would write them."""
    if not tasks_by_id:
        return []
    offers = list(
        Offer.objects.select_for_update(of=("self",))
        .filter(task_id__in=tasks_by_id, status=OS.PENDING)
        .select_related("agent__user")
    )
    if not offers:
        return []
    now = timezone.now()
    withdrawn = Offer.objects.filter(pk__in=[offer.pk for offer in offers], status=OS.PENDING)
    withdrawn.update(status=to_status, responded_at=now)
    rows = []
    for offer in offers:
        offer.status, offer.responded_at = to_status, now
        rows.append(
            _offer_answered(
                offer, tasks_by_id[offer.task_id], agent_name=offer.agent.display_name, via=Via.SYSTEM, reason=reason
            )
        )
    return rows


def _push_tasks_changed(tenant_id: int, tasks: list[Task], event: str, **data) -> None:
    """One event for many tasks: all of them to supervisors, each agent's own to that agent (a
    push per task would cost a round trip to Redis each, seconds for a few hundred)."""
    by_agent: dict[int, list[str]] = defaultdict(list)
    for task in tasks:
        if task.assignee_id:
            by_agent[task.assignee_id].append(task.public_id)
    realtime.push_to_supervisors(tenant_id, event=event, data={"tasks": [task.public_id for task in tasks], **data})
    for agent_id, public_ids in by_agent.items():
        realtime.push_to_member(tenant_id, agent_id, event=event, data={"tasks": public_ids, **data})


SUPERVISOR_COMPLETION = "Completed by supervisor"


def tasks_complete(
    *, tasks: Iterable[Task], actor, disposition: Disposition | None = None, notes: str = "", via: str = Via.SUPERVISOR
) -> BulkOutcome:
    """A supervisor steps in on stuck tasks: task_complete for each (from assigned or wrapping, with
    the queue's disposition rules), the supervisor as actor and "Completed by supervisor" (and their
    notes) as the reason. Tasks it refuses are left as they are and counted."""
    notes = notes.strip()
    reason = f"{SUPERVISOR_COMPLETION}: {notes}" if notes else SUPERVISOR_COMPLETION
    return each_counting_refusals(
        tasks, lambda task: task_complete(task=task, actor=actor, via=via, disposition=disposition, notes=reason)
    )


def tasks_reassign(
    *, tasks: Iterable[Task], agent=None, team=None, actor, via: str = Via.SUPERVISOR, note: str = ""
) -> BulkOutcome:
    """Give each open task to an agent or a team. A conversation's task moves with its conversation
    (conversations.services.conversation_assign: both rows and both logs), any other through
    task_assign. Tasks refused (no longer open, taken meanwhile, …) are left as they are and counted."""
    from conversations.services import conversation_assign  # it builds on this module

    def reassign(task: Task) -> None:
        if task.kind != TaskKind.CONVERSATION or task.conversation_id is None:
            task_assign(task=task, agent=agent, team=team, actor=actor, via=via, note=note)
        elif task.status not in (S.PENDING, S.RESERVED, S.ASSIGNED):
            raise TransitionNotAllowed("task", task.status, S.ASSIGNED, "Only open tasks can be given to someone.")
        else:
            conversation_assign(conversation=task.conversation, agent=agent, team=team, actor=actor, via=via, note=note)

    return each_counting_refusals(tasks, reassign)


def agents_set_status(
    *, memberships: Iterable[Membership], status: str, break_reason: BreakReason | None = None, actor
) -> BulkOutcome:
    """A supervisor sets agents' status (say Unavailable, with a break reason): agent_set_status for
    each, which records the period with the supervisor in `set_by`. Refusals are counted."""
    return each_counting_refusals(
        memberships,
        lambda member: agent_set_status(membership=member, status=status, break_reason=break_reason, actor=actor),
    )
