"""Reads of tasks, queues, dispositions, offers and agents' routing state."""

from collections import Counter, defaultdict
from collections.abc import Iterable

from django.db.models import Count, Q, QuerySet, Value

from tasks.models import ACTIVE_TASK_STATUSES, Disposition, Offer, OfferStatus, Task, TaskKind, TaskStatus


def dispositions_for_queue(queue) -> QuerySet[Disposition]:
    """The active dispositions an agent may choose for a task of `queue` (in their order)."""
    limited = Q(queues=queue) if queue is not None else Q(pk__in=[])
    return Disposition.objects.filter(Q(is_active=True) & (Q(queues__isnull=True) | limited)).distinct()


def tasks_of_agent(membership) -> QuerySet[Task]:
    """The agent's open work: conversation tasks they hold and their To Do list."""
    return (
        Task.objects.filter(assignee=membership, status__in=ACTIVE_TASK_STATUSES)
        .select_related("conversation__contact", "queue")
        .order_by("due_at", "created_at")
    )


def offers_pending_for_agent(membership) -> QuerySet[Offer]:
    """The offers waiting for the agent's answer, soonest to expire first."""
    return (
        Offer.objects.filter(agent=membership, status=OfferStatus.PENDING)
        .select_related("task__conversation__contact", "task__queue")
        .order_by("expires_at", "pk")
    )


def agent_loads(membership_ids: Iterable[int]) -> tuple[dict[int, Counter], set[int]]:
    """What each agent holds now: (load per channel, the agents in wrap-up), in one aggregate query.

    Load = conversation tasks assigned to the agent + pending offers to the agent, per channel (a
    pending offer counts as if accepted, so routing never offers past capacity). Tasks in wrap-up do
    not count as load; they only put the agent "in wrap-up", which each queue treats by its
    `wrap_up_receives_work`. Follow-up and internal tasks are to-do items, not channel sessions, and
    do not count. Read under the caller's locks of the agents' AgentState rows to be exact.
    """
    ids = list(membership_ids)
    held = (
        Task.objects.filter(assignee_id__in=ids, kind=TaskKind.CONVERSATION)
        .filter(status__in=(TaskStatus.ASSIGNED, TaskStatus.WRAPPING))
        .values_list("assignee_id", "channel", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    offered = (
        Offer.objects.filter(agent_id__in=ids, status=OfferStatus.PENDING)
        .values_list("agent_id", "task__channel", Value(OfferStatus.PENDING.value))
        .annotate(n=Count("pk"))
        .order_by()
    )
    loads: dict[int, Counter] = defaultdict(Counter)
    wrapping: set[int] = set()
    # The union takes Task's default ordering back unless told otherwise, and PostgreSQL refuses to
    # order a union by a column it does not return.
    for agent_id, channel, status, n in held.union(offered, all=True).order_by():
        if status == TaskStatus.WRAPPING:
            wrapping.add(agent_id)
        elif channel:
            loads[agent_id][channel] += n
    return loads, wrapping
