"""Filters of the context column (right of a conversation pane). No queries: they read what the pane
already holds."""

from django import template

from conversations.models import ConversationPriority
from tasks.models import TaskKind, TaskPriority

register = template.Library()

CLOSED_STATUSES = ("closed", "archived")


@register.filter
def last_change(history, kind: str):
    """The latest activity row of `kind` ("priority", ...) in a pane's history, or None."""
    for entry in reversed(history or ()):
        if entry.kind == "activity" and entry.item.kind == kind:
            return entry.item
    return None


@register.filter
def may_change(conversation, membership) -> bool:
    """Whether `membership` may change the conversation itself: the agent handling it or a supervisor
    (the rule desktop.views._conversation_for_reply enforces; this only hides what would be refused)."""
    return conversation.assignee_id == membership.pk or membership.can_supervise


@register.filter
def is_closed(conversation) -> bool:
    return conversation.status in CLOSED_STATUSES


@register.simple_tag
def conversation_priorities():
    return ConversationPriority.choices


@register.simple_tag
def task_priorities():
    return TaskPriority.choices


@register.simple_tag
def follow_up_kinds():
    return [(TaskKind.FOLLOW_UP, "Follow-up (for the customer)"), (TaskKind.INTERNAL, "Internal")]
