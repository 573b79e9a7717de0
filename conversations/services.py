"""Writes and transitions of contacts, conversations, messages and notes.

Each service is one transaction (its own, or a savepoint inside the caller's), runs inside the
current tenant and refuses rows of another tenant (CrossTenantLink). It writes the activity rows its
docstring lists and pushes through contactcenter.realtime, which sends on commit.
`conversation_transition` is the only code that changes a conversation's status and
`message_delivery_update` the only one that changes a message's delivery status.

Operations that move a conversation and its task together (assign, end, transfer, merge, split) are
here and call tasks.services, which never imports this module.

Locks: a service that changes a conversation locks its row first (`SELECT … FOR UPDATE`) and, where
the person acted on what they saw, checks it is still so (ChangedMeanwhile / AlreadyTaken). Several
conversations are locked in id order; a conversation before its task.
"""

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Case, Max, Min, Value, When
from django.utils import timezone
from django.utils.text import get_valid_filename

from channels_inbound.models import Channel
from contactcenter import realtime
from contactcenter.errors import AlreadyTaken, TransitionNotAllowed
from contactcenter.models import Membership
from contactcenter.tenancy import tenant_context
from conversations import delivery, jobs
from conversations.activity import activity_new, activity_record, activity_record_many
from conversations.errors import (
    ChangedMeanwhile,
    MergeNotAllowed,
    MessageNotAllowed,
    ReasonRequired,
    SplitNotAllowed,
    TagsNotAllowed,
    TransferNotAllowed,
    ensure_same_tenant,
)
from conversations.files import outbound_file_check
from conversations.identities import (
    EQUIVALENT_IDENTITY_KINDS,
    IDENTITY_KINDS_OF_OUTBOUND_CHANNEL,
    normalise_identity,
)
from conversations.markup import mentioned_usernames, render_note_html
from conversations.models import (
    Activity,
    ActivityKind,
    Attachment,
    Contact,
    ContactIdentity,
    Conversation,
    ConversationPriority,
    ConversationStatus,
    CsatSurvey,
    DeliveryStatus,
    Direction,
    InternalNote,
    Message,
    Via,
)
from conversations.selectors import (
    attachment_restrictions_for,
    outbound_messages_claimed_before,
    outbound_messages_never_claimed,
)
from tasks.errors import AssignmentNotAllowed
from tasks.models import RuleTrigger, Task, TaskKind, TaskStatus
from tasks.services import (
    CONVERSATION_TO_TASK_PRIORITY,
    BulkOutcome,
    automation_rules_run,
    conversation_task_title,
    each_counting_refusals,
    task_assign,
    task_create,
    task_transition,
    tasks_cancel,
)

C = ConversationStatus
LIVE = (C.NEW, C.OPEN, C.ASSIGNED, C.IN_PROGRESS, C.PENDING)
CONVERSATION_TRANSITIONS: dict[str, frozenset[str]] = {
    C.NEW: frozenset({C.OPEN, C.ASSIGNED, C.PENDING, C.RESOLVED, C.CLOSED}),
    C.OPEN: frozenset({C.ASSIGNED, C.IN_PROGRESS, C.PENDING, C.RESOLVED, C.CLOSED}),
    C.ASSIGNED: frozenset({C.OPEN, C.IN_PROGRESS, C.PENDING, C.RESOLVED, C.CLOSED}),
    C.IN_PROGRESS: frozenset({C.OPEN, C.ASSIGNED, C.PENDING, C.RESOLVED, C.CLOSED}),
    C.PENDING: frozenset({C.OPEN, C.ASSIGNED, C.IN_PROGRESS, C.RESOLVED, C.CLOSED}),
    C.RESOLVED: frozenset({C.OPEN, C.ASSIGNED, C.CLOSED}),  # reopened, or closed (also by the auto-close timer)
    C.CLOSED: frozenset({C.ARCHIVED}),
    C.ARCHIVED: frozenset(),
}

D = DeliveryStatus
# Delivery only moves forward: queued < sent < delivered | undelivered | failed < read, where
# undelivered and failed are final. A callback may arrive late or twice; the update applies only
# when the stored status is one of these predecessors (compare-and-set), so "sent" arriving after
# "delivered" changes nothing.
DELIVERY_PREDECESSORS: dict[str, frozenset[str]] = {
    D.SENT: frozenset({D.QUEUED}),
    D.DELIVERED: frozenset({D.QUEUED, D.SENT}),
    D.UNDELIVERED: frozenset({D.QUEUED, D.SENT}),
    D.FAILED: frozenset({D.QUEUED, D.SENT}),
    D.READ: frozenset({D.QUEUED, D.SENT, D.DELIVERED}),
}

OPEN_TASK_STATUSES = (TaskStatus.PENDING, TaskStatus.RESERVED, TaskStatus.ASSIGNED)
MAX_TAGS = 20


# --- helpers ----------------------------------------------------------------------------------


def _push_conversation(conversation: Conversation, event: str, *also_members: int | None, **extra) -> None:
    data = {"conversation": conversation.public_id, "status": conversation.status, **extra}
    realtime.push_to_supervisors(conversation.tenant_id, event=event, data=data)
    for member_id in {conversation.assignee_id, *also_members} - {None}:
        realtime.push_to_member(conversation.tenant_id, member_id, event=event, data=data)


def _lock_as_seen(conversation: Conversation) -> Conversation:
    """Lock the row and check it still has the status and agent the caller saw; return the fresh row."""
    # No select_related (see tasks.services._lock_as_seen): joined rows are not re-read after a lock wait.
    current = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if (current.status, current.assignee_id) == (conversation.status, conversation.assignee_id):
        return current
    if current.assignee_id and current.assignee_id != conversation.assignee_id:
        raise AlreadyTaken(f"This conversation was already taken by {current.assignee.display_name}.")
    raise ChangedMeanwhile(f"This conversation changed meanwhile: it is now {current.get_status_display().lower()}.")


def _lock_fresh(conversation: Conversation) -> None:
    """Lock the row and bring the caller's object up to date (for changes that do not depend on what was seen)."""
    conversation_lock_refresh(conversation)


def conversation_lock_refresh(conversation: Conversation) -> None:
    """Lock the conversation's row and bring the object up to date, in one statement (a locking
    read, then refresh_from_db, took two on every inbound message). Like refresh_from_db it drops
    prefetched rows and reverse relations, but keeps a cached related row whose key did not change
    (the contact, say), which refresh_from_db would read again."""
    fresh = Conversation.objects.select_for_update().get(pk=conversation.pk)
    for field in Conversation._meta.concrete_fields:
        value = getattr(fresh, field.attname)
        if field.is_relation and field.is_cached(conversation) and getattr(conversation, field.attname) != value:
            field.delete_cached_value(conversation)
        setattr(conversation, field.attname, value)
    for relation in Conversation._meta.related_objects:
        if relation.is_cached(conversation):
            relation.delete_cached_value(conversation)
    conversation._prefetched_objects_cache = {}


def _active_task(conversation: Conversation, statuses=OPEN_TASK_STATUSES) -> Task | None:
    """The conversation's current conversation task in one of `statuses`, locked."""
    return (
        Task.objects.select_for_update()
        .filter(conversation=conversation, kind=TaskKind.CONVERSATION, status__in=statuses)
        .order_by("-created_at", "-pk")
        .first()
    )


def _update(obj, **fields) -> None:
    """Write plain columns (never a status) to the row and the object."""
    type(obj).objects.filter(pk=obj.pk).update(**fields)
    for name, value in fields.items():
        setattr(obj, name, value)


def _holder_label(conversation: Conversation) -> str:
    if conversation.assignee_id:
        return conversation.assignee.display_name
    return f"team {conversation.team.name}" if conversation.team_id else "nobody"


def _route_label(queue, channel: str) -> str:
    return f"{queue.name if queue else 'no queue'} · {Channel(channel).label}"


def _recount(conversation: Conversation) -> None:
    """Recompute the SLA columns from the messages (after a merge or split moved some)."""
    messages = Message.objects.filter(conversation=conversation)
    replies = messages.filter(direction=Direction.OUTBOUND, author__isnull=False, send_at__isnull=True)
    inbound = messages.filter(direction=Direction.INBOUND)
    last_reply = replies.aggregate(at=Max("created_at"))["at"]
    unanswered = inbound.filter(created_at__gt=last_reply) if last_reply else inbound
    _update(
        conversation,
        first_response_at=replies.aggregate(at=Min("created_at"))["at"],
        last_customer_message_at=inbound.aggregate(at=Max("created_at"))["at"],
        waiting_since=unanswered.aggregate(at=Min("created_at"))["at"],
    )


def _clean_body(body: str) -> str:
    # PostgreSQL text cannot hold NUL. Browsers submit a textarea's line breaks as CRLF (the HTML
    # form rules); one kind of line break is stored, so what an agent typed reads the same everywhere.
    return body.replace("\x00", "").replace("\r\n", "\n")


# --- contacts ---------------------------------------------------------------------------------


def contact_find_or_create(*, kind: str, value: str, name: str = "") -> tuple[Contact, bool]:
    """The contact reachable at (kind, value), created with that identity when there is none.

    A phone number and a WhatsApp number are one identity: `whatsapp:+1555…` finds the contact of
    phone `+1555…` (and the WhatsApp identity is then added to it, so later lookups are direct).
    A found contact without a name takes `name`.
    Concurrency: the identity's unique constraint decides; the loser of a race (IntegrityError in a
    savepoint) returns the winner's contact. Returns (contact, created). Writes no activity.
    """
    value = normalise_identity(kind, value)
    tenant_id = ensure_same_tenant()
    name = name.strip()[:200]
    # No savepoint of its own when called in a transaction: nothing in it raises for a caller to
    # catch (the race's IntegrityError has its own), and every inbound message comes through here.
    with transaction.atomic(savepoint=False):
        identities = {
            identity.kind: identity
            for identity in ContactIdentity.objects.filter(
                kind__in=EQUIVALENT_IDENTITY_KINDS.get(kind, (kind,)), value=value
            ).select_related("contact")
        }
        found = identities.get(kind) or next(iter(identities.values()), None)
        if found is not None:
            contact = found.contact
            if kind not in identities:
                _identity_add(contact, kind, value)
            if name and not contact.name:
                _update(contact, name=name)
            return contact, False
        try:
            with transaction.atomic():
                contact = Contact.objects.create(tenant_id=tenant_id, name=name)
                ContactIdentity.objects.create(tenant_id=tenant_id, contact=contact, kind=kind, value=value)
                return contact, True
        except IntegrityError:
            return ContactIdentity.objects.select_related("contact").get(kind=kind, value=value).contact, False


def _identity_add(contact: Contact, kind: str, value: str) -> None:
    try:
        with transaction.atomic():
            ContactIdentity.objects.create(tenant_id=contact.tenant_id, contact=contact, kind=kind, value=value)
    except IntegrityError:
        pass  # added meanwhile by a concurrent call: the identity exists, which is all we wanted


# --- conversations ----------------------------------------------------------------------------


def conversation_start(
    *, contact: Contact, channel: str, subject: str = "", priority: str = ConversationPriority.NORMAL,
    actor=None, via: str | None = None,
) -> Conversation:  # fmt: skip
    """Start a conversation (status new) with `contact` on `channel`.

    Writes one `created` row (new value: the channel). Pushes `conversation.created` on commit.
    """
    tenant_id = ensure_same_tenant(contact, actor)
    Channel(channel)  # refuses an unknown channel
    with transaction.atomic(savepoint=False):  # nothing in it raises a DomainError for a caller to catch
        conversation = Conversation.objects.create(
            tenant_id=tenant_id, contact=contact, channel=channel, subject=subject[:200], priority=priority
        )
        activity_record(kind=ActivityKind.CREATED, conversation=conversation, actor=actor, via=via, new=channel)
        _push_conversation(conversation, "conversation.created")
    return conversation


def conversation_find_or_start(*, contact: Contact, channel: str, via: str | None = None) -> tuple[Conversation, bool]:
    """The contact's latest live (or resolved, which a new message reopens) conversation on `channel`,
    or a new one. Locks the contact row so two messages arriving together start one conversation.

    Returns (conversation, started). Writes what conversation_start writes when it starts one.
    """
    ensure_same_tenant(contact)
    with transaction.atomic(savepoint=False):  # nothing in it raises a DomainError for a caller to catch
        Contact.objects.select_for_update().filter(pk=contact.pk).values_list("pk").get()
        found = (
            Conversation.objects.filter(contact=contact, channel=channel, merged_into=None)
            .exclude(status__in=(C.CLOSED, C.ARCHIVED))
            .order_by("-created_at", "-pk")
            .first()
        )
        if found is not None:
            return found, False
        return conversation_start(contact=contact, channel=channel, via=via), True


def conversation_transition(
    *,
    conversation: Conversation,
    to_status: str,
    actor=None,
    via: str | None = None,
    reason: str = "",
    fields: dict | None = None,
) -> Conversation:
    """Move `conversation` from the status the caller saw to `to_status`.

    The only code that changes a conversation's status. Checks CONVERSATION_TRANSITIONS
    (TransitionNotAllowed, nothing written). Pending needs a reason (what it waits for); assigned
    and in progress need an agent. Keeps `pending_reason`, `resolved_at`, `closed_at` in step.
    Compare-and-set on the seen status (ChangedMeanwhile when someone else moved it first);
    `fields` are written by the same UPDATE.
    Writes one `status` row (old → new, reason). Pushes `conversation.status` on commit.
    """
    ensure_same_tenant(conversation, actor)
    old = conversation.status
    if to_status not in CONVERSATION_TRANSITIONS.get(old, ()):
        raise TransitionNotAllowed("conversation", old, to_status)
    reason = reason.strip()
    if to_status == C.PENDING and not reason:
        raise ReasonRequired("Say what the conversation is waiting for (the customer, a refund, …).")
    fields = dict(fields or {})
    if to_status in (C.ASSIGNED, C.IN_PROGRESS) and not fields.get("assignee", conversation.assignee_id):
        raise TransitionNotAllowed("conversation", old, to_status, "It has no agent.")
    now = timezone.now()
    fields["pending_reason"] = reason[:200] if to_status == C.PENDING else ""
    if to_status == C.RESOLVED:
        fields["resolved_at"] = now
    elif to_status in LIVE:
        fields["resolved_at"] = None
    if to_status == C.CLOSED:
        fields["closed_at"] = now
    with transaction.atomic():
        updated = Conversation.objects.filter(pk=conversation.pk, status=old).update(
            status=to_status, status_changed_at=now, updated_at=now, **fields
        )
        if not updated:
            current = Conversation.objects.filter(pk=conversation.pk).values_list("status", flat=True).first()
            raise ChangedMeanwhile(
                f"Someone else changed this conversation first: it is now {C(current).label.lower()}. Reload to see it."
                if current
                else "This conversation no longer exists."
            )
        for name, value in fields.items():
            setattr(conversation, name, value)
        conversation.status, conversation.status_changed_at, conversation.updated_at = to_status, now, now
        activity_record(
            kind=ActivityKind.STATUS, conversation=conversation, actor=actor, via=via, old=old, new=to_status,
            reason=reason,
        )  # fmt: skip
        _push_conversation(conversation, "conversation.status")
    return conversation


def conversation_set_priority(
    *, conversation: Conversation, priority: str, actor=None, via: str | None = None, reason: str = ""
) -> Conversation:
    """Change the priority, with an optional reason; the conversation's active task follows
    (low → low, normal → medium, high → high, urgent → critical). Locks the conversation, then the task.
    Unchanged priority writes nothing. Writes one `priority` row (old → new, reason) linked to the
    conversation and its active task. Pushes `conversation.priority` on commit.
    """
    ConversationPriority(priority)  # refuses an unknown priority
    ensure_same_tenant(conversation, actor)
    with transaction.atomic():
        current = _lock_as_seen(conversation)
        if current.priority == priority:
            return conversation
        task = _active_task(conversation, statuses=(*OPEN_TASK_STATUSES, TaskStatus.WRAPPING))
        now = timezone.now()
        _update(conversation, priority=priority, updated_at=now)
        if task is not None:
            _update(task, priority=CONVERSATION_TO_TASK_PRIORITY[priority], updated_at=now)
        activity_record(
            kind=ActivityKind.PRIORITY, conversation=conversation, task=task, actor=actor, via=via,
            old=current.priority, new=priority, reason=reason,
        )  # fmt: skip
        _push_conversation(conversation, "conversation.priority")
    return conversation


def conversations_set_priority_locked(
    *, changes: Sequence[tuple[Conversation, Task | None, str]], via: str, reason: str
) -> list[Activity]:
    """The bulk form of conversation_set_priority, for a sweep raising many priorities at once.

    The caller holds the locks of every conversation and task named (conversation first, as
    conversation_set_priority takes them) and passes, per conversation, its active task (or None) and
    the new priority; an unchanged priority is skipped. Two UPDATEs whatever the count; the task's
    priority follows as in the single form. Returns the `priority` activity rows unsaved, for the
    caller to write with its own rows in one INSERT (activity_record_many) in the same transaction.
    Pushes `conversation.priority` on commit, as the single form does.
    """
    changes = [(c, task, new) for c, task, new in changes if c.priority != new]
    if not changes:
        return []
    for _, _, new in changes:
        ConversationPriority(new)  # refuses an unknown priority
    now = timezone.now()
    Conversation.objects.filter(pk__in=[c.pk for c, _, _ in changes]).update(
        priority=Case(*(When(pk=c.pk, then=Value(new)) for c, _, new in changes)), updated_at=now
    )
    with_task = [(task, new) for _, task, new in changes if task is not None]
    if with_task:
        Task.objects.filter(pk__in=[task.pk for task, _ in with_task]).update(
            priority=Case(*(When(pk=task.pk, then=Value(CONVERSATION_TO_TASK_PRIORITY[new])) for task, new in with_task)),
            updated_at=now,
        )
    rows = []
    for conversation, task, new in changes:
        rows.append(activity_new(kind=ActivityKind.PRIORITY, conversation=conversation, task=task, via=via,
                                 old=conversation.priority, new=new, reason=reason))  # fmt: skip
        conversation.priority = new
        if task is not None:
            task.priority = CONVERSATION_TO_TASK_PRIORITY[new]
        _push_conversation(conversation, "conversation.priority")
    return rows


def _clean_tags(tags: Iterable[str]) -> list[str]:
    cleaned = []
    for tag in tags:
        tag = re.sub(r"\s+", "-", tag.strip().lower())
        if not tag:
            continue
        if len(tag) > 40:
            raise TagsNotAllowed(f"The tag “{tag[:40]}…” is too long (40 characters at most).")
        if tag not in cleaned:
            cleaned.append(tag)
    if len(cleaned) > MAX_TAGS:
        raise TagsNotAllowed(f"A conversation can have at most {MAX_TAGS} tags.")
    return cleaned


def conversation_set_tags(
    *, conversation: Conversation, tags: Iterable[str], actor=None, via: str | None = None
) -> Conversation:
    """Replace the tags (lowercased, spaces → dashes, deduplicated; filter with `tags__contains`).

    Locks the conversation. Unchanged tags write nothing. Writes one `tags` row (old → new list).
    Pushes `conversation.tags` on commit.
    """
    cleaned = _clean_tags(tags)
    ensure_same_tenant(conversation, actor)
    with transaction.atomic():
        current = _lock_as_seen(conversation)
        if current.tags == cleaned:
            return conversation
        _update(conversation, tags=cleaned, updated_at=timezone.now())
        activity_record(
            kind=ActivityKind.TAGS, conversation=conversation, actor=actor, via=via,
            old=", ".join(current.tags), new=", ".join(cleaned),
        )  # fmt: skip
        _push_conversation(conversation, "conversation.tags")
    return conversation


def conversation_assign(
    *, conversation: Conversation, agent=None, team=None, actor=None, via: str | None = None, note: str = ""
) -> Conversation:
    """Give the conversation, and its open task, to an agent or a team, with a note.

    Locks the conversation, then its task; both must still be as the caller saw them
    (AlreadyTaken "already taken by X", or ChangedMeanwhile). Closed or archived: refused.
    - To an agent (active, same tenant): new, open, assigned or in-progress conversations become
      assigned; pending and resolved ones keep their status. The task becomes assigned.
    - To a team: the agent is cleared; assigned or in-progress conversations go back to open and
      the task back to pending.
    Giving it to whoever already holds it writes nothing.
    Writes one `assignment` row (from → to, note; linked to the task too, when there is one) and a
    `status` row for the conversation and for the task when theirs change. Pushes to supervisors
    and the old and new agents on commit.
    """
    if (agent is None) == (team is None):
        raise AssignmentNotAllowed("Choose either an agent or a team.")
    ensure_same_tenant(conversation, agent, team, actor)
    if agent is not None and not agent.is_active:
        raise AssignmentNotAllowed(f"{agent.display_name} is no longer active here and cannot take work.")
    wanted = (getattr(agent, "pk", None), getattr(team, "pk", None))
    with transaction.atomic():
        _lock_as_seen(conversation)
        if conversation.status in (C.CLOSED, C.ARCHIVED):
            raise TransitionNotAllowed("conversation", conversation.status, C.ASSIGNED)
        task = _active_task(conversation)
        if (conversation.assignee_id, conversation.team_id) == wanted and (
            task is None or (task.assignee_id, task.team_id) == wanted
        ):
            return conversation
        previous_agent_id, old_label = conversation.assignee_id, _holder_label(conversation)
        changes = {"assignee": agent, "team": team}
        status = conversation.status
        if agent is not None:
            new_status = C.ASSIGNED if status in (C.NEW, C.OPEN, C.ASSIGNED, C.IN_PROGRESS) else status
        else:
            new_status = C.OPEN if status in (C.ASSIGNED, C.IN_PROGRESS) else status
        if new_status != status:
            conversation_transition(
                conversation=conversation, to_status=new_status, actor=actor, via=via, reason=note, fields=changes
            )
        else:
            _update(conversation, updated_at=timezone.now(), **changes)
        if task is not None:
            task_assign(task=task, agent=agent, team=team, actor=actor, via=via, note=note)
        else:
            activity_record(
                kind=ActivityKind.ASSIGNMENT, conversation=conversation, actor=actor, via=via, old=old_label,
                new=_holder_label(conversation), reason=note,
            )  # fmt: skip
        _push_conversation(conversation, "conversation.assigned", previous_agent_id)
    return conversation


def conversation_end(
    *, conversation: Conversation, actor=None, via: str | None = None, reason: str = ""
) -> Conversation:
    """The agent is done talking: the conversation becomes resolved and its task goes to wrap-up.

    Locks the conversation (as seen), then its task. An assigned task → wrapping (its completion,
    with a disposition, later fires the `conversation_resolved` rules); a task nobody holds yet
    (pending or reserved) is canceled, and then, as with no task at all, the rules fire now without
    a disposition.
    Writes the conversation's `status` row (→ resolved) and the task's `status` row, plus whatever
    the rules create. Pushes on commit. With an agent's task, the customer is then asked to rate
    the conversation when its queue asks for ratings (csat_survey_send).
    """
    ensure_same_tenant(conversation, actor)
    with transaction.atomic():
        _lock_as_seen(conversation)
        conversation_transition(conversation=conversation, to_status=C.RESOLVED, actor=actor, via=via, reason=reason)
        task = _active_task(conversation)
        if task is not None and task.status == TaskStatus.ASSIGNED:
            task_transition(task=task, to_status=TaskStatus.WRAPPING, actor=actor, via=via, reason=reason)
            csat_survey_send(conversation=conversation, task=task)
            return conversation
        if task is not None:
            task_transition(
                task=task, to_status=TaskStatus.CANCELED, actor=actor, via=via,
                reason="The conversation was resolved before an agent took it.",
            )  # fmt: skip
        automation_rules_run(
            trigger=RuleTrigger.CONVERSATION_RESOLVED, conversation=conversation, agent=conversation.assignee
        )
    return conversation


def conversation_transfer(
    *, conversation: Conversation, queue=None, channel: str = "", actor=None, via: str | None = None, note: str = ""
) -> Conversation:
    """Hand a live conversation to another queue and/or continue it on another channel, with a note.

    The agent lets go: the conversation's agent and team are cleared (assigned or in progress →
    open) and its open task is re-queued (reserved or assigned → pending) with the new queue and
    channel. With no open task and a queue given, a pending conversation task is created there.
    The queue must take the channel (TransferNotAllowed). Locks the conversation (as seen), then the task.
    Writes one `transfer` row ("queue · channel" → "queue · channel", note) linked to the task,
    `status` rows for what changes status, and the new task's `created` row. Pushes on commit.
    """
    if queue is None and not channel:
        raise TransferNotAllowed("Choose a queue or a channel to transfer to.")
    ensure_same_tenant(conversation, queue, actor)
    new_channel = Channel(channel or conversation.channel)
    if queue is not None and not queue.takes(new_channel):
        raise TransferNotAllowed(f"The {queue.name} queue does not take {new_channel.label} conversations.")
    with transaction.atomic():
        _lock_as_seen(conversation)
        if conversation.status not in LIVE:
            raise TransferNotAllowed(
                f"This conversation is {conversation.get_status_display().lower()}; only a live one can be transferred."
            )
        task = _active_task(conversation)
        old_label = _route_label(task.queue if task else None, conversation.channel)
        previous_agent_id = conversation.assignee_id
        changes = {"channel": new_channel, "assignee": None, "team": None}
        if conversation.status in (C.ASSIGNED, C.IN_PROGRESS):
            conversation_transition(
                conversation=conversation, to_status=C.OPEN, actor=actor, via=via, reason=note, fields=changes
            )
        else:
            _update(conversation, updated_at=timezone.now(), **changes)
        if task is not None:
            task_changes = {"queue": queue or task.queue, "channel": new_channel, "assignee": None, "team": None}
            if task.status in (TaskStatus.RESERVED, TaskStatus.ASSIGNED):
                task_transition(
                    task=task, to_status=TaskStatus.PENDING, actor=actor, via=via, reason=note, fields=task_changes
                )
            else:
                _update(task, updated_at=timezone.now(), **task_changes)
        elif queue is not None:
            task = task_create(
                kind=TaskKind.CONVERSATION, title=conversation_task_title(conversation), actor=actor, via=via,
                conversation=conversation, queue=queue, channel=new_channel,
                priority=CONVERSATION_TO_TASK_PRIORITY[conversation.priority], reason=note,
            )  # fmt: skip
        activity_record(
            kind=ActivityKind.TRANSFER, conversation=conversation, task=task, actor=actor, via=via, old=old_label,
            new=_route_label(task.queue if task else None, new_channel), reason=note,
        )  # fmt: skip
        _push_conversation(conversation, "conversation.transferred", previous_agent_id)
    return conversation


def conversation_merge(
    *, duplicate: Conversation, survivor: Conversation, actor=None, via: str | None = None, reason: str = ""
) -> Conversation:
    """Merge `duplicate` into `survivor`: its messages, notes and tasks move; it is closed and points to the survivor.

    Both must be live, of one tenant, different, and as the caller saw them; they are locked in id
    order (two merges of one pair cannot deadlock). When both have an open conversation task, the
    duplicate's is canceled (one agent handles the merged thread); otherwise tasks move as they are.
    The survivor gains the duplicate's tags; both have their SLA columns recomputed from their messages.
    Writes a `merge` row on each conversation, the duplicate's `status` row (→ closed) and a
    `status` row for a canceled task. Pushes `conversation.merged` for both on commit.
    """
    ensure_same_tenant(duplicate, survivor, actor)
    if duplicate.pk == survivor.pk:
        raise MergeNotAllowed("A conversation cannot be merged into itself.")
    with transaction.atomic():
        for conversation in sorted((duplicate, survivor), key=lambda c: c.pk):
            _lock_as_seen(conversation)
        for conversation in (duplicate, survivor):
            if conversation.status not in (*LIVE, C.RESOLVED):
                raise MergeNotAllowed(
                    f"Conversation {conversation.public_id} is {conversation.get_status_display().lower()}; "
                    "closed conversations cannot be merged."
                )
        duplicate_task, survivor_task = _active_task(duplicate), _active_task(survivor)
        if duplicate_task is not None and survivor_task is not None:
            task_transition(
                task=duplicate_task, to_status=TaskStatus.CANCELED, actor=actor, via=via,
                reason=f"Merged into conversation {survivor.public_id}.",
            )  # fmt: skip
        for model in (Message, InternalNote, Task):
            model.objects.filter(conversation=duplicate).update(conversation=survivor)
        _update(survivor, tags=survivor.tags + [t for t in duplicate.tags if t not in survivor.tags])
        _recount(survivor)
        _recount(duplicate)
        conversation_transition(
            conversation=duplicate, to_status=C.CLOSED, actor=actor, via=via,
            reason=reason or f"Merged into conversation {survivor.public_id}.", fields={"merged_into": survivor},
        )  # fmt: skip
        activity_record(
            kind=ActivityKind.MERGE, conversation=duplicate, actor=actor, via=via, new=survivor.public_id, reason=reason
        )
        activity_record(
            kind=ActivityKind.MERGE, conversation=survivor, actor=actor, via=via, old=duplicate.public_id, reason=reason
        )
        _push_conversation(duplicate, "conversation.merged", into=survivor.public_id)
        _push_conversation(survivor, "conversation.merged", into=survivor.public_id)
    return survivor


def conversation_split(
    *, conversation: Conversation, message_ids: Iterable[str], actor=None, via: str | None = None, reason: str = ""
) -> Conversation:
    """Move the chosen messages (by public id) to a new conversation with the same contact, channel,
    priority and tags (status new, `split_from` the original). Returns the new conversation.

    Every chosen message must be in this conversation, and at least one must stay. Attachments move
    with their messages; notes stay. When the original has an active task in a queue, the new
    conversation gets a pending conversation task in that queue, so it is routed. Both have their
    SLA columns recomputed. Locks the original (as seen).
    Writes a `split` row on the original ("n messages" → new id, reason), a `created` row on the
    new conversation and its task's `created` row. Pushes on commit.
    """
    wanted = set(message_ids)
    if not wanted:
        raise SplitNotAllowed("Choose the messages to move to a new conversation.")
    tenant_id = ensure_same_tenant(conversation, actor)
    with transaction.atomic():
        _lock_as_seen(conversation)
        if conversation.status not in (*LIVE, C.RESOLVED):
            raise SplitNotAllowed("Closed conversations cannot be split.")
        moving = Message.objects.filter(conversation=conversation, public_id__in=wanted)
        count = moving.count()
        if count != len(wanted):
            raise SplitNotAllowed("Some of the chosen messages are not in this conversation.")
        if count == Message.objects.filter(conversation=conversation).count():
            raise SplitNotAllowed("Leave at least one message in the original conversation.")
        new = Conversation.objects.create(
            tenant_id=tenant_id, contact_id=conversation.contact_id, channel=conversation.channel,
            subject=conversation.subject, priority=conversation.priority, tags=conversation.tags,
            split_from=conversation,
        )  # fmt: skip
        moving.update(conversation=new)
        _recount(conversation)
        _recount(new)
        label = f"{count} message{'s' if count != 1 else ''}"
        activity_record(
            kind=ActivityKind.SPLIT, conversation=conversation, actor=actor, via=via, old=label, new=new.public_id,
            reason=reason,
        )  # fmt: skip
        activity_record(
            kind=ActivityKind.CREATED, conversation=new, actor=actor, via=via, new=new.channel,
            reason=f"Split from conversation {conversation.public_id}. {reason}".strip(),
        )  # fmt: skip
        original_task = _active_task(conversation, statuses=(*OPEN_TASK_STATUSES, TaskStatus.WRAPPING))
        if original_task is not None and original_task.queue_id:
            task_create(
                kind=TaskKind.CONVERSATION, title=conversation_task_title(new), actor=actor, via=via, conversation=new,
                queue=original_task.queue, priority=CONVERSATION_TO_TASK_PRIORITY[new.priority],
                reason=f"Split from conversation {conversation.public_id}.",
            )  # fmt: skip
        _push_conversation(conversation, "conversation.split", into=new.public_id)
        _push_conversation(new, "conversation.created")
    return new


def conversation_start_outbound(*, contact: Contact, channel: str, author, body: str, queue=None) -> Conversation:
    """An agent writes to a contact first: a new conversation on `channel`, held by `author`, with
    their message queued for delivery. One transaction, so a refused message leaves no empty conversation.

    The contact needs an identity the channel reaches (IDENTITY_KINDS_OF_OUTBOUND_CHANNEL), else
    MessageNotAllowed. With `queue` (it must take the channel) the conversation gets its conversation
    task, assigned to the author as if they had accepted it, so the customer's answer comes back to
    them and counts against their capacity; without one, only the conversation is theirs.
    Writes what conversation_start, task_create, conversation_assign and message_send_reply write
    (`created`, `status` and `assignment` rows). Pushes and enqueues the delivery on commit.
    """
    label = dict(Channel.choices).get(channel, channel)
    kinds = IDENTITY_KINDS_OF_OUTBOUND_CHANNEL.get(channel)
    if kinds is None:
        raise MessageNotAllowed(f"Agents cannot start {label} conversations: the customer has to reach us there.")
    ensure_same_tenant(contact, author, queue)
    if not ContactIdentity.objects.filter(contact=contact, kind__in=kinds).exists():
        raise MessageNotAllowed(f"{contact} has no {label} address to write to.")
    with transaction.atomic():
        conversation = conversation_start(contact=contact, channel=channel, actor=author)
        if queue is not None:
            task_create(
                kind=TaskKind.CONVERSATION, title=conversation_task_title(conversation), actor=author,
                conversation=conversation, queue=queue, priority=CONVERSATION_TO_TASK_PRIORITY[conversation.priority],
                reason="An agent wrote to the customer first.",
            )  # fmt: skip
        conversation_assign(conversation=conversation, agent=author, actor=author)
        message_send_reply(conversation=conversation, author=author, body=body)
    return conversation


# --- messages ---------------------------------------------------------------------------------


def message_append_inbound(
    *,
    conversation: Conversation,
    body: str,
    provider_message_id: str | None = None,
    received_at=None,
    via: str = Via.WEBHOOK,
) -> tuple[Message, bool]:
    """Append a customer's message; idempotent on `provider_message_id`. Returns (message, created).

    Locks the conversation. The unique constraint (tenant, provider_message_id) decides duplicates:
    the insert runs in a savepoint, and on IntegrityError the existing message is returned with
    nothing else changed, so a provider's retries, sequential or concurrent, yield one message.
    A new message sets `last_customer_message_at`, starts `waiting_since` when nobody was waiting
    and reopens the conversation: resolved → open (agent cleared, so it is routed again), pending →
    in progress (back to its agent) or open. Closed conversations take no messages (start a new one).
    A reply 1–5 to the CSAT survey of a resolved conversation is its rating (csat_reply_record): no
    wait starts and the conversation stays resolved, so it is not routed again.
    Writes a `status` row only when it reopens. Pushes `message.new` on commit.
    """
    ensure_same_tenant(conversation)
    with transaction.atomic():
        _lock_fresh(conversation)
        if conversation.status in (C.CLOSED, C.ARCHIVED):
            raise MessageNotAllowed("This conversation is closed; the message belongs in a new one.")
        try:
            with transaction.atomic():
                message = Message.objects.create(
                    tenant_id=conversation.tenant_id, conversation=conversation, direction=Direction.INBOUND,
                    body=_clean_body(body), provider_message_id=provider_message_id or None,
                    delivery_status=DeliveryStatus.RECEIVED, created_at=received_at or timezone.now(),
                )  # fmt: skip
        except IntegrityError as error:
            if not provider_message_id or "one_message_per_provider_id" not in str(error):
                raise
            return Message.objects.get(provider_message_id=provider_message_id), False
        at = message.created_at
        if conversation.status == C.RESOLVED and csat_reply_record(conversation=conversation, message=message):
            last = max(filter(None, (conversation.last_customer_message_at, at)))
            _update(conversation, last_customer_message_at=last, updated_at=timezone.now())
            _push_conversation(conversation, "message.new", message=message.public_id, csat=True)
            return message, True
        _update(
            conversation,
            last_customer_message_at=max(filter(None, (conversation.last_customer_message_at, at))),
            waiting_since=conversation.waiting_since or at,
            updated_at=timezone.now(),
        )
        if conversation.status == C.RESOLVED:
            conversation_transition(
                conversation=conversation, to_status=C.OPEN, via=via, reason="The customer wrote again.",
                fields={"assignee": None},
            )  # fmt: skip
        elif conversation.status == C.PENDING:
            conversation_transition(
                conversation=conversation, to_status=C.IN_PROGRESS if conversation.assignee_id else C.OPEN, via=via,
                reason="The customer wrote again.",
            )  # fmt: skip
        _push_conversation(conversation, "message.new", message=message.public_id)
    return message, True


def _outbound_create(conversation: Conversation, author, body: str, send_at=None, has_files: bool = False) -> Message:
    body = _clean_body(body)
    if not body.strip() and not has_files:
        raise MessageNotAllowed("Write something before sending.")
    if conversation.status in (C.CLOSED, C.ARCHIVED):
        raise MessageNotAllowed("This conversation is closed; start a new one to write to the customer.")
    return Message.objects.create(
        tenant_id=conversation.tenant_id, conversation=conversation, direction=Direction.OUTBOUND, body=body,
        author=author, delivery_status=DeliveryStatus.QUEUED, send_at=send_at,
    )  # fmt: skip


def _enqueue_delivery(message: Message, eta=None) -> None:
    tenant_id, message_id = message.tenant_id, message.pk
    transaction.on_commit(
        lambda: jobs.deliver_outbound_message.apply_async(args=[tenant_id, message_id], eta=eta), robust=True
    )


def message_send_reply(
    *,
    conversation: Conversation,
    author,
    body: str,
    files: Sequence[tuple[str, bytes]] = (),
    sensitive_data_sent: Sequence[str] = (),
) -> Message:
    """An agent's reply: recorded as an outbound message (queued), delivered by a job after commit.

    `files` are (name, bytes) pairs, checked against the channel's rules before anything is written
    (conversations.files: what each channel carries, told by the bytes, and the tenant's
    AttachmentRestriction rows; AttachmentNotAllowed says what it takes or the admin's reason) and
    stored as attachments of the message.
    Locks the conversation. Sets `first_response_at` (first reply only) and clears `waiting_since`;
    an assigned conversation whose agent replies becomes in progress (one `status` row).
    Enqueues `conversations.jobs.deliver_outbound_message` and pushes `message.new` on commit.
    """
    ensure_same_tenant(conversation, author)
    restrictions = attachment_restrictions_for(channel=conversation.channel) if files else ()
    checked = [
        (name, content, outbound_file_check(
            channel=conversation.channel, filename=name, content=content, restrictions=restrictions
        ))
        for name, content in files
    ]  # fmt: skip
    with transaction.atomic():
        _lock_fresh(conversation)
        message = _outbound_create(conversation, author, body, has_files=bool(checked))
        for name, content, content_type in checked:
            attachment_add(message=message, filename=name, content=content, content_type=content_type)
        _update(
            conversation,
            first_response_at=conversation.first_response_at or message.created_at,
            waiting_since=None,
            updated_at=timezone.now(),
        )
        if conversation.status == C.ASSIGNED and conversation.assignee_id == getattr(author, "pk", None):
            conversation_transition(conversation=conversation, to_status=C.IN_PROGRESS, actor=author)
        if sensitive_data_sent:
            activity_record(
                kind=ActivityKind.SENSITIVE, conversation=conversation, actor=author, new=message.public_id,
                reason=f"Sent despite the warning: {', '.join(sorted(set(sensitive_data_sent)))}.",
            )  # fmt: skip
        _enqueue_delivery(message)
        _push_conversation(conversation, "message.new", message=message.public_id)
    return message


def message_schedule(*, conversation: Conversation, author, body: str, send_at) -> Message:
    """A message to send later: recorded queued with `send_at`; counts as a reply only when sent.

    Within CELERY_MAX_COUNTDOWN_SECONDS the delivery job is enqueued with that ETA on commit; later
    ones are picked up by the sweep `conversations.jobs.deliver_due_scheduled_messages`. Delivery
    claims the message, so both paths send it once. Writes no activity; pushes `message.scheduled`.
    """
    ensure_same_tenant(conversation, author)
    now = timezone.now()
    if send_at <= now:
        raise MessageNotAllowed("Choose a time in the future to schedule the message.")
    with transaction.atomic():
        _lock_fresh(conversation)
        message = _outbound_create(conversation, author, body, send_at=send_at)
        if send_at - now <= timedelta(seconds=settings.CELERY_MAX_COUNTDOWN_SECONDS):
            _enqueue_delivery(message, eta=send_at)
        _push_conversation(conversation, "message.scheduled", message=message.public_id)
    return message


def message_deliver(*, message: Message, final_attempt: bool = True) -> None:
    """Hand a queued outbound message to its channel's sender (conversations.delivery).

    Not one transaction, on purpose: a provider call must not hold row locks. (1) Claim the message
    by compare-and-set (`send_claimed_at` null and status queued), so a duplicate job or the
    scheduled sweep never sends it twice; a scheduled message not yet due is left alone.
    (2) Call the sender outside any transaction. (3) Record the outcome with
    message_delivery_update: sent with the provider's id; failed with the reason when no sender is
    registered ("no sender configured for channel X"), on a permanent failure, or on a temporary one
    at the last attempt. Before the last attempt a temporary failure releases the claim and is
    re-raised for the job to retry. Writes no activity.
    """
    now = timezone.now()
    if message.direction != Direction.OUTBOUND or (message.send_at and message.send_at > now):
        return
    claimed = Message.objects.filter(
        pk=message.pk, delivery_status=DeliveryStatus.QUEUED, send_claimed_at__isnull=True
    ).update(send_claimed_at=now)
    if not claimed:
        return
    channel = message.conversation.channel
    sender = delivery.sender_for(channel)
    if sender is None:
        message_delivery_update(
            message=message, status=DeliveryStatus.FAILED, error_reason=f"no sender configured for channel {channel}"
        )
        return
    try:
        provider_message_id = sender(message)
    except delivery.PermanentFailure as failure:
        message_delivery_update(message=message, status=D.FAILED, error_code=failure.code, error_reason=str(failure))
        return
    except Exception as failure:  # temporary by default: a network error may well pass
        if not final_attempt:
            Message.objects.filter(pk=message.pk).update(send_claimed_at=None)
            raise
        code = failure.code if isinstance(failure, delivery.DeliveryFailure) else ""
        message_delivery_update(
            message=message, status=D.FAILED, error_code=code, error_reason=str(failure) or repr(failure)
        )
        return
    message_delivery_update(message=message, status=D.SENT, provider_message_id=provider_message_id)


def message_delivery_retry(*, message: Message, actor) -> Message:
    """An agent's Retry on an outbound message that failed: a new delivery attempt.

    The one way back from `failed`, on purpose and only from there (compare-and-set): the message
    is queued again with its error cleared and the delivery job enqueued on commit. Anything else
    (sent, delivered, queued already) raises MessageNotAllowed. Pushes `message.status`.
    """
    ensure_same_tenant(message, actor)
    with transaction.atomic():
        retried = Message.objects.filter(
            pk=message.pk, direction=Direction.OUTBOUND, delivery_status=D.FAILED
        ).update(
            delivery_status=D.QUEUED, send_claimed_at=None, error_code="", error_reason="",
            delivery_updated_at=timezone.now(),
        )  # fmt: skip
        if not retried:
            raise MessageNotAllowed("Only a message that failed can be sent again.")
        message.refresh_from_db()
        _enqueue_delivery(message)
        _push_conversation(message.conversation, "message.status", message.author_id, message=message.public_id,
                           delivery=D.QUEUED)  # fmt: skip
    return message


def message_delivery_update(
    *,
    message: Message,
    status: str,
    error_code: str = "",
    error_reason: str = "",
    provider_message_id: str | None = None,
) -> bool:
    """Record a delivery status (from the sender or a provider's callback), only ever moving forward.

    The only code that changes `delivery_status`. Compare-and-set: the UPDATE applies only when the
    stored status is one of DELIVERY_PREDECESSORS[status]; returns whether it did. Error code and
    reason are kept with the status. Writes no activity. Pushes `message.status` on commit when changed.
    """
    if status not in DELIVERY_PREDECESSORS:
        raise ValueError(f"{status!r} is not a delivery status an outbound message can move to")
    fields = {"delivery_status": status, "delivery_updated_at": timezone.now()}
    if error_code or error_reason:
        fields.update(error_code=str(error_code)[:32], error_reason=error_reason)
    if provider_message_id:
        fields["provider_message_id"] = provider_message_id
    with transaction.atomic():
        updated = Message.objects.filter(
            pk=message.pk, direction=Direction.OUTBOUND, delivery_status__in=DELIVERY_PREDECESSORS[status]
        ).update(**fields)
        if not updated:
            return False
        for name, value in fields.items():
            setattr(message, name, value)
        conversation = message.conversation
        _push_conversation(
            conversation, "message.status", message.author_id, message=message.public_id, delivery=status
        )
    return True


# --- recovery of outbound sends ---------------------------------------------------------------

logger = logging.getLogger(__name__)

# A delivery job starts within seconds of its commit: a message still unclaimed after this lost its
# job (a broker that forgot it, a worker killed after taking it from the queue).
OUTBOUND_UNCLAIMED_AFTER = timedelta(seconds=45)
# A live send holds its claim for the provider call at most (Twilio's client times out after 10 s);
# a claim older than this belongs to a worker that died mid-send.
OUTBOUND_CLAIM_IN_DOUBT_AFTER = timedelta(seconds=60)


def outbound_messages_recover(*, now=None) -> dict[str, int]:
    """Send every queued outbound message whose delivery was lost, once: the sweep
    `conversations.jobs.recover_outbound_messages` (every 10 s), across tenants, each message in its own.

    (a) Never claimed and queued longer than OUTBOUND_UNCLAIMED_AFTER (not scheduled ones: their own
    sweep re-enqueues them): the delivery job is enqueued again on commit, at most once per
    OUTBOUND_UNCLAIMED_AFTER per message (a mark in the cache), so a backlog the worker is working
    through does not grow. message_deliver's claim makes a duplicate job harmless.
    (b) Claimed longer ago than OUTBOUND_CLAIM_IN_DOUBT_AFTER: in doubt, see
    _outbound_message_in_doubt_resolve. One message's failure is logged and left for the next sweep.
    Returns how many were re-enqueued, found sent at the provider, and sent again.
    """
    now = now or timezone.now()
    counts = {"requeued": 0, "found_sent": 0, "resent": 0}
    stale = outbound_messages_never_claimed(created_before=now - OUTBOUND_UNCLAIMED_AFTER)
    for tenant_id, message_id, public_id in stale:
        if not cache.add(f"outbound-requeued:{public_id}", 1, timeout=int(OUTBOUND_UNCLAIMED_AFTER.total_seconds())):
            continue  # re-enqueued a moment ago; Redis forgetting the mark costs one no-op job
        with tenant_context(tenant_id), transaction.atomic():
            message = Message.objects.filter(pk=message_id).first()
            if message is not None:
                _enqueue_delivery(message)
                counts["requeued"] += 1
    for tenant_id, message_id in outbound_messages_claimed_before(claimed_before=now - OUTBOUND_CLAIM_IN_DOUBT_AFTER):
        try:
            with tenant_context(tenant_id):
                outcome = _outbound_message_in_doubt_resolve(message_id=message_id, now=now)
        except Exception:
            logger.exception("recovering message %s of tenant %s failed; the next sweep retries", message_id, tenant_id)
            continue
        if outcome:
            counts[outcome] += 1
    return counts


def _outbound_message_in_doubt_resolve(*, message_id: int, now) -> str:
    """A send whose worker died mid-call: the provider may have the message or not. Asks the
    channel's sender (its `find_sent` lookup, conversations.delivery); a match not already recorded
    on another message is marked sent with the provider's id (message_delivery_update) and logged
    (activity DELIVERY); otherwise the claim is released, logged, and the delivery job enqueued on
    commit. A channel with no lookup is sent again: once more rather than never.

    First takes the claim over by compare-and-set on the claim seen, so a concurrent sweep leaves the
    message alone; if the lookup fails (raises) the message keeps the new claim and is in doubt again
    after OUTBOUND_CLAIM_IN_DOUBT_AFTER. Returns "found_sent", "resent", or "" (nothing to do).
    """
    message = Message.objects.select_related("conversation__contact").filter(pk=message_id).first()
    if message is None or message.delivery_status != D.QUEUED or message.send_claimed_at is None:
        return ""
    claimed_at = message.send_claimed_at
    if not Message.objects.filter(pk=message.pk, delivery_status=D.QUEUED, send_claimed_at=claimed_at).update(
        send_claimed_at=now
    ):
        return ""
    channel = message.conversation.channel
    find_sent = delivery.sent_finder_for(channel)
    if find_sent is not None:
        candidates = find_sent(message, claimed_at)  # outside any transaction: a provider call
        taken = set(
            Message.objects.filter(provider_message_id__in=candidates).values_list("provider_message_id", flat=True)
        )
        provider_message_id = next((c for c in candidates if c not in taken), None)
        if provider_message_id is not None:
            with transaction.atomic():
                if message_delivery_update(message=message, status=D.SENT, provider_message_id=provider_message_id):
                    activity_record(
                        kind=ActivityKind.DELIVERY, conversation=message.conversation, old=D.QUEUED, new=D.SENT,
                        reason=f"The worker stopped while sending; {channel} has the message ({provider_message_id}), "
                        "so it was marked sent, not sent again.",
                    )  # fmt: skip
            return "found_sent"
    with transaction.atomic():
        released = Message.objects.filter(pk=message.pk, delivery_status=D.QUEUED, send_claimed_at=now).update(
            send_claimed_at=None
        )
        if not released:
            return ""
        activity_record(
            kind=ActivityKind.DELIVERY, conversation=message.conversation, old="in doubt", new=D.QUEUED,
            reason=f"The worker stopped while sending; {channel} does not have the message"
            f"{'' if find_sent else ' (or cannot tell)'}, so it is sent again.",
        )  # fmt: skip
        _enqueue_delivery(message)
    return "resent"


def attachment_add(*, message: Message, filename: str, content: bytes, content_type: str) -> Attachment:
    """Store a file on a message under MEDIA_ROOT/tenants/<tenant id>/attachments/<public id>/.

    The file is written before the row; if the transaction then rolls back the file stays orphaned
    (harmless: nothing points to it, and its name cannot be guessed). Writes no activity.
    """
    tenant_id = ensure_same_tenant(message)
    # Keep only the last path component: the name comes from outside and must not climb directories.
    safe_name = get_valid_filename(filename.replace("\\", "/").rsplit("/", 1)[-1].lstrip(".") or "file")
    attachment = Attachment(
        tenant_id=tenant_id, message=message, filename=safe_name[:200],
        content_type=content_type[:100] or "application/octet-stream", size=len(content),
    )  # fmt: skip
    attachment.file.save(attachment.filename, ContentFile(content), save=False)
    attachment.save()
    return attachment


# --- customer satisfaction ------------------------------------------------------------------

CSAT_QUESTION = "How did we do? Reply 1–5 (5 is best)."
# The channels that carry a written question and its answer (not calls, not faxes).
CSAT_CHANNELS = (Channel.SMS, Channel.WHATSAPP, Channel.MESSENGER, Channel.WEBCHAT, Channel.EMAIL)
_QUOTED_HISTORY = re.compile(r"^(>|On .+ wrote:$|-+ ?Original Message ?-+$)")
_RATING = re.compile(r"([1-5])(?:\s*/\s*5)?[\s.!]*")


def csat_score_of(body: str) -> int | None:
    """The rating a customer's reply gives ("4", " 5! ", "3/5"), or None when it says anything else.
    The quoted history an email client adds below the answer is left out."""
    answer = []
    for line in body.strip().splitlines():
        if _QUOTED_HISTORY.match(line.strip()):
            break
        answer.append(line)
    match = _RATING.fullmatch("\n".join(answer).strip())
    return int(match.group(1)) if match else None


def csat_survey_send(*, conversation: Conversation, task: Task) -> CsatSurvey | None:
    """Ask the customer to rate the conversation their agent just resolved ("How did we do? Reply
    1–5"), when the task's queue asks for ratings and the channel carries text. Returns the survey.

    Runs in the caller's transaction (conversation_end, holding the conversation's lock). The question
    is an outbound message without author (the system's: no reply, no first response), delivered and
    retried like any reply by the delivery job enqueued on commit. The survey takes a rating until
    `reply_by` (the queue's `csat_reply_hours`); a conversation asked within that time is not asked
    again. Writes no activity. Pushes `message.new` on commit.
    """
    queue = task.queue
    if queue is None or not queue.csat_survey or conversation.channel not in CSAT_CHANNELS:
        return None
    now = timezone.now()
    if conversation.assignee_id is None:
        return None
    if CsatSurvey.objects.filter(conversation=conversation, reply_by__gt=now).exists():
        return None  # asked already, and the customer may still answer
    question = _outbound_create(conversation, None, CSAT_QUESTION)
    survey = CsatSurvey.objects.create(
        tenant_id=conversation.tenant_id, conversation=conversation, agent_id=conversation.assignee_id, queue=queue,
        question=question, sent_at=now, reply_by=now + timedelta(hours=queue.csat_reply_hours),
    )  # fmt: skip
    _enqueue_delivery(question)
    _push_conversation(conversation, "message.new", message=question.public_id)
    return survey


def csat_reply_record(*, conversation: Conversation, message: Message) -> CsatSurvey | None:
    """Take a customer's message as the rating of the conversation's survey, if it is one.

    A rating says only 1–5 (csat_score_of) and arrives before the latest survey's `reply_by`. The
    first rating counts: it is written by compare-and-set on an empty score, and a repeated one
    (a second "5") is taken in without changing it. Runs in the caller's transaction
    (message_append_inbound, holding the conversation's lock). Returns the survey the message
    answered, or None: then it is an ordinary message. Writes no activity; pushes nothing.
    """
    score = csat_score_of(message.body)
    if score is None:
        return None
    at = message.created_at
    survey = (
        CsatSurvey.objects.filter(conversation=conversation, sent_at__lte=at, reply_by__gt=at)
        .order_by("-sent_at", "-pk")
        .first()
    )
    if survey is None:
        return None
    if CsatSurvey.objects.filter(pk=survey.pk, score__isnull=True).update(score=score, answer=message, answered_at=at):
        survey.score, survey.answer, survey.answered_at = score, message, at
    return survey


# --- notes ------------------------------------------------------------------------------------


def note_add(*, conversation: Conversation, author, body: str) -> InternalNote:
    """An internal note: markdown kept as written and rendered to sanitised HTML (conversations.markup).

    `@username` mentions of active members of this tenant are recorded and each mentioned member
    (but the author) is notified with `note.mention`; names of other tenants' users match nobody.
    Writes one `note` row (new value: the note's public id). Pushes `note.new` on commit.
    """
    if not body.strip():
        raise MessageNotAllowed("Write something in the note first.")
    tenant_id = ensure_same_tenant(conversation, author)
    usernames = mentioned_usernames(body)
    mentioned = list(Membership.objects.filter(user__username__in=usernames, is_active=True)) if usernames else []
    with transaction.atomic():
        note = InternalNote.objects.create(
            tenant_id=tenant_id, conversation=conversation, author=author, body_markdown=_clean_body(body),
            body_html=render_note_html(_clean_body(body)),
        )  # fmt: skip
        note.mentions.set(mentioned)
        activity_record(kind=ActivityKind.NOTE, conversation=conversation, actor=author, new=note.public_id)
        for member in mentioned:
            if member.pk != getattr(author, "pk", None):
                realtime.push_to_member(
                    tenant_id, member.pk, event="note.mention",
                    data={"conversation": conversation.public_id, "note": note.public_id,
                          "by": author.display_name if author else ""},
                )  # fmt: skip
        _push_conversation(conversation, "note.new", note=note.public_id)
    return note


# --- supervisors' bulk actions --------------------------------------------------------------------


def _conversations_move(
    conversations: Sequence[Conversation], to_status: str, *, actor, via: str | None, reason: str, fields: dict
) -> tuple[BulkOutcome, list]:
    """The bulk form of conversation_transition: lock the rows in id order, keep those still in the
    status the caller saw and allowed by CONVERSATION_TRANSITIONS, move them with one UPDATE.
    Returns the outcome and the unsaved `status` rows (the caller adds its own and inserts once)."""
    seen = {conversation.pk: conversation.status for conversation in conversations}
    ensure_same_tenant(actor, *conversations)
    outcome = BulkOutcome()
    locked = list(Conversation.objects.select_for_update().filter(pk__in=seen).order_by("pk"))
    outcome.skipped["no longer there"] += len(seen) - len(locked)
    for conversation in locked:
        if conversation.status != seen[conversation.pk]:
            outcome.skipped["changed by someone else meanwhile"] += 1
        elif to_status not in CONVERSATION_TRANSITIONS[conversation.status]:
            outcome.skipped[f"{conversation.get_status_display().lower()} already"] += 1
        else:
            outcome.changed.append(conversation)
    outcome.skipped = +outcome.skipped  # drop the zero counts
    if not outcome.changed:
        return outcome, []
    now = timezone.now()
    fields = {"status": to_status, "status_changed_at": now, "updated_at": now, "pending_reason": "", **fields}
    # Compare-and-set like conversation_transition; the row locks make it match every kept row.
    Conversation.objects.filter(pk__in=[c.pk for c in outcome.changed], status__in=set(seen.values())).update(**fields)
    rows = []
    for conversation in outcome.changed:
        rows.append(
            activity_new(
                kind=ActivityKind.STATUS, conversation=conversation, actor=actor, via=via, old=conversation.status,
                new=to_status, reason=reason,
            )
        )  # fmt: skip
        for name, value in fields.items():
            setattr(conversation, name, value)
    return outcome, rows


def _push_conversations_changed(conversations: list[Conversation], event: str, **data) -> None:
    """One event for many conversations: all of them to supervisors, each agent's own to that agent
    (a push per conversation would cost a round trip to Redis each, seconds for a few hundred)."""
    if not conversations:
        return
    tenant_id = conversations[0].tenant_id
    by_agent: dict[int, list[str]] = defaultdict(list)
    for conversation in conversations:
        if conversation.assignee_id:
            by_agent[conversation.assignee_id].append(conversation.public_id)
    everyone = [conversation.public_id for conversation in conversations]
    realtime.push_to_supervisors(tenant_id, event=event, data={"conversations": everyone, **data})
    for agent_id, public_ids in by_agent.items():
        realtime.push_to_member(tenant_id, agent_id, event=event, data={"conversations": public_ids, **data})


def conversations_resolve(
    *, conversations: Sequence[Conversation], actor, via: str | None = None, reason: str = ""
) -> BulkOutcome:
    """Resolve many conversations at once (a supervisor's bulk action) in a constant number of statements.

    Each conversation is checked against CONVERSATION_TRANSITIONS from the status the caller saw;
    those changed meanwhile or not resolvable are left as they are and counted in `skipped`. Locks
    the conversations in id order, then their open conversation tasks. Those tasks (pending,
    reserved, assigned) are canceled through tasks.services.tasks_cancel: the supervisor closes the
    work, so nobody is left to wrap it up (unlike conversation_end); tasks already in wrap-up stay
    with their agent. Fires no automation rules and sends no satisfaction survey: a supervisor's
    clean-up is not the end of a conversation someone handled.
    Writes one `status` row per conversation (and tasks_cancel one per task and offer). Pushes one
    `conversations.status` event to supervisors and one to each agent concerned on commit.
    """
    with transaction.atomic():
        outcome, rows = _conversations_move(
            conversations, C.RESOLVED, actor=actor, via=via, reason=reason, fields={"resolved_at": timezone.now()}
        )
        if not outcome.changed:
            return outcome
        activity_record_many(rows)
        open_tasks = Task.objects.filter(
            conversation__in=[c.pk for c in outcome.changed], kind=TaskKind.CONVERSATION, status__in=OPEN_TASK_STATUSES
        )
        tasks_cancel(tasks=open_tasks, actor=actor, via=via, reason=reason or "The conversation was resolved.")
        _push_conversations_changed(outcome.changed, "conversations.status", status=C.RESOLVED)
    return outcome


def conversations_archive(
    *, conversations: Sequence[Conversation], actor, via: str | None = None, reason: str = ""
) -> BulkOutcome:
    """Archive many closed conversations at once (closed → archived is the only way in), in a
    constant number of statements; the others are left as they are and counted in `skipped`.
    Locks the conversations in id order. Writes one `status` row per conversation. Pushes one
    `conversations.status` event to supervisors and one to each agent concerned on commit.
    """
    with transaction.atomic():
        outcome, rows = _conversations_move(conversations, C.ARCHIVED, actor=actor, via=via, reason=reason, fields={})
        activity_record_many(rows)
        _push_conversations_changed(outcome.changed, "conversations.status", status=C.ARCHIVED)
    return outcome


def conversations_assign(
    *, conversations: Iterable[Conversation], agent=None, team=None, actor, via: str | None = None, note: str = ""
) -> BulkOutcome:
    """conversation_assign for each conversation (its rows, locks and pushes), skipping and counting
    those it refuses. Giving a conversation to whoever holds it already changes nothing."""
    return each_counting_refusals(
        conversations,
        lambda c: conversation_assign(conversation=c, agent=agent, team=team, actor=actor, via=via, note=note),
    )


def conversations_add_tags(
    *, conversations: Iterable[Conversation], tags: Iterable[str], actor, via: str | None = None
) -> BulkOutcome:
    """Add `tags` to each conversation's own (conversation_set_tags: one `tags` row where they change),
    skipping and counting those refused (too many tags)."""
    added = _clean_tags(tags)
    return each_counting_refusals(
        conversations,
        lambda c: conversation_set_tags(conversation=c, tags=[*c.tags, *added], actor=actor, via=via),
    )


def conversations_set_priority(
    *, conversations: Iterable[Conversation], priority: str, actor, via: str | None = None, reason: str = ""
) -> BulkOutcome:
    """conversation_set_priority for each conversation (its task follows; one `priority` row where it
    changes), skipping and counting those refused."""
    ConversationPriority(priority)
    return each_counting_refusals(
        conversations,
        lambda c: conversation_set_priority(conversation=c, priority=priority, actor=actor, via=via, reason=reason),
    )
