"""The one writer of the activity log.

Services call `activity_record` inside the transaction of the change it describes, so the row and
the change commit or roll back together. There is deliberately no function here (or anywhere) that
updates or deletes a row; the database refuses both as well (see Activity).
"""

from conversations.models import Activity, ActivityKind, Via


def via_of(actor) -> str:
    """How a change was made when the caller does not say: by an agent or supervisor, else the system."""
    if actor is None:
        return Via.SYSTEM
    return Via.SUPERVISOR if actor.can_supervise else Via.AGENT


def activity_record(
    *,
    kind: ActivityKind,
    conversation=None,
    task=None,
    actor=None,
    via: str | None = None,
    old: object = "",
    new: object = "",
    reason: str = "",
) -> Activity:
    """Append one row. A task row is also linked to the task's conversation, so a conversation's
    history shows the work done on it."""
    anchor = task if task is not None else conversation
    return Activity.objects.create(
        tenant_id=anchor.tenant_id,
        conversation_id=conversation.pk if conversation is not None else task.conversation_id,
        task=task,
        actor=actor,
        via=via or via_of(actor),
        kind=kind,
        old_value=str(old)[:255],
        new_value=str(new)[:255],
        reason=reason,
    )
