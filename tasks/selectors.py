"""Reads of tasks, queues and dispositions."""

from django.db.models import Q, QuerySet

from tasks.models import ACTIVE_TASK_STATUSES, Disposition, Task


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
