"""Writes and transitions of tasks, dispositions and automation rules.

Each service is one transaction (its own, or a savepoint inside the caller's), runs inside the
current tenant and refuses rows of another tenant (CrossTenantLink). It writes the activity rows its
docstring lists and pushes through contactcenter.realtime, which sends on commit. `task_transition`
is the only code that changes a task's status.

Conversation-level operations that also move a task (assign, end, transfer, merge, split) live in
conversations.services and call these; this module never imports conversations.services.
"""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from channels_inbound.models import Channel
from contactcenter import realtime
from contactcenter.errors import AlreadyTaken, TransitionNotAllowed
from conversations.activity import activity_record
from conversations.errors import ChangedMeanwhile, ensure_same_tenant
from conversations.models import ActivityKind, Conversation, ConversationPriority, ConversationStatus, Via
from tasks.errors import AssignmentNotAllowed, DispositionNotAllowed, DispositionRequired, TaskNotAllowed
from tasks.models import (
    AutomationRule,
    Disposition,
    RuleAction,
    RuleAssignee,
    RuleTrigger,
    Task,
    TaskKind,
    TaskPriority,
    TaskStatus,
)

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
    Writes one `created` row (linked to the conversation, if any). Pushes `task.created` on commit.
    """
    tenant_id = ensure_same_tenant(conversation, queue, assignee, team, actor, rule)
    if kind == TaskKind.CONVERSATION and conversation is None:
        raise TaskNotAllowed("A conversation task needs its conversation.")
    if assignee is not None and team is not None:
        raise AssignmentNotAllowed("Give the task to an agent or to a team, not both.")
    channel = channel or (conversation.channel if conversation is not None else "")
    if queue is not None and channel and not queue.takes(channel):
        raise TaskNotAllowed(f"The {queue.name} queue does not take {Channel(channel).label} work.")
    with transaction.atomic():
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
) -> Task:
    """A follow-up task linked to `conversation` (its quick action, or an automation rule).

    Priority defaults to the conversation's (normal → medium, urgent → critical). Writes one
    `created` row linked to the task and the conversation; pushes `task.created` on commit.
    """
    return task_create(
        kind=TaskKind.FOLLOW_UP,
        title=title,
        actor=actor,
        via=via,
        conversation=conversation,
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
