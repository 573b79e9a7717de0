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
    row = activity_new(
        kind=kind, conversation=conversation, task=task, actor=actor, via=via, old=old, new=new, reason=reason
    )
    row.save(force_insert=True)
    return row


def activity_new(
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
    """The row activity_record would append, unsaved: bulk services collect them for activity_record_many."""
    anchor = task if task is not None else conversation
    return Activity(
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


# PostgreSQL takes at most 65,535 parameters per statement; an activity row has 11.
ACTIVITY_ROWS_PER_INSERT = 2000


def activity_record_many(rows: list[Activity]) -> list[Activity]:
    """Append many rows (built by activity_new) in one INSERT per ACTIVITY_ROWS_PER_INSERT rows.

    For services that change many rows at once (a supervisor's bulk action): the same contract as
    activity_record, inside the transaction of the change, without one statement per row.
    """
    return Activity.objects.bulk_create(rows, batch_size=ACTIVITY_ROWS_PER_INSERT)
