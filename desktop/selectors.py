"""What the agent desktop shows, read in a fixed number of queries whatever the agent holds.

Every function runs inside the current tenant (the scoped managers) and reads; nothing here writes.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, Subquery, prefetch_related_objects

from channels_inbound.models import Channel
from contactcenter.models import Membership
from contactcenter.tenancy import get_in_tenant_or_404
from conversations.identities import IDENTITY_KINDS_OF_OUTBOUND_CHANNEL
from conversations.models import (
    Activity,
    Attachment,
    Contact,
    ContactIdentity,
    Conversation,
    Message,
    ReplyTemplate,
)
from tasks import routing
from tasks.models import (
    AgentState,
    AgentStatus,
    BreakReason,
    Offer,
    OfferStatus,
    Queue,
    Task,
    TaskKind,
    TaskStatus,
    Team,
)
from tasks.selectors import agent_loads, dispositions_for_queue

CHANNEL_SYMBOLS = {
    "sms": "💬",
    "whatsapp": "🟢",
    "messenger": "🔵",
    "webchat": "🌐",
    "email": "✉️",
    "voice": "📞",
    "fax": "📠",
}


def _last_message_preview(conversation_path: str = "conversation"):
    return Subquery(
        Message.objects.filter(conversation=OuterRef(conversation_path))
        .order_by("-created_at", "-id")
        .values("body")[:1]
    )


def _identify_the_nameless(tasks: list[Task]) -> list[Task]:
    """A contact without a name shows how they reached us (Contact.__str__): their identities are
    read for them alone, in one query, none when every contact has a name. Into a plain list, which
    Contact.__str__ reads: a prefetched manager costs a queryset per contact."""
    nameless = [task.conversation.contact for task in tasks if task.conversation and not task.conversation.contact.name]
    in_order = Prefetch("identities", queryset=ContactIdentity.objects.order_by("id"), to_attr="identities_in_order")
    prefetch_related_objects(nameless, in_order)
    return tasks


# The columns a task line shows (desktop/partials/task_list.html#task-line). Task lists load
# only these: of a task with its conversation and contact, all ~70 columns cost more to compile and
# turn into objects than the rows cost to read. A line that starts showing another field adds it
# here, or each row fetches it with a query of its own (which the query-count tests catch).
TASK_LINE_FIELDS = (
    "public_id", "kind", "title", "channel", "status", "priority", "created_at", "due_at",
    "first_response_due_at", "sla_warning_at", "sla_state",
    "conversation", "conversation__public_id",
    "conversation__contact", "conversation__contact__public_id", "conversation__contact__name",
)  # fmt: skip


def _conversation_tasks(queryset: QuerySet[Task], *also: str) -> QuerySet[Task]:
    """Task lines: `also` names the related objects and columns a list shows beyond a line's."""
    return (
        queryset.select_related("conversation__contact", *(name for name in also if "__" not in name))
        .only(*TASK_LINE_FIELDS, *also)
        .annotate(preview=_last_message_preview())
    )


@dataclass
class AgentBar:
    """The header: status, break reasons, the queues served and load against capacity."""

    state: AgentState
    break_reasons: list[BreakReason]
    queues: list[Queue]
    served_queue_ids: set[int]
    load: list[tuple[str, int, int]]  # (channel, active, capacity)
    pick_queue_ids: set[int] = field(default_factory=set)  # the pick-mode queues served


@dataclass
class TaskList:
    offers: list[Offer]
    tasks: list[Task]
    picks: list[Task] = field(default_factory=list)


def agent_bar(membership: Membership) -> AgentBar:
    state = AgentState.objects.filter(membership=membership).select_related("break_reason").first() or AgentState(
        membership=membership,
        tenant_id=membership.tenant_id,
        status=AgentStatus.OFFLINE,
    )
    allowed = set(state.allowed_queues.values_list("pk", flat=True)) if state.pk else set()
    served = set(state.served_queues.values_list("pk", flat=True)) if state.pk else set()
    every_queue = list(Queue.objects.order_by("name"))
    queues = [q for q in every_queue if not allowed or q.pk in allowed]
    loads, _ = agent_loads([membership.pk])
    active = loads.get(membership.pk, {})
    capacity = {**routing.DEFAULT_CAPACITY, **(state.capacity or {})}
    served_channels = {channel for q in queues if q.pk in served for channel in q.channels}
    channels = sorted((served_channels | set(active)) & set(capacity))
    load = [(channel, active.get(channel, 0), int(capacity[channel])) for channel in channels]
    return AgentBar(
        state=state,
        break_reasons=list(BreakReason.objects.filter(is_active=True)),
        queues=queues,
        served_queue_ids=served,
        load=load,
        pick_queue_ids={q.pk for q in every_queue if q.pick_mode and q.pk in served},
    )


def agent_task_list(membership: Membership, *, pick_queue_ids: set[int] | None = None) -> TaskList:
    """Offers waiting for the agent's answer, the tasks they hold (conversations and To Do items),
    and the tasks they may pick from pick-mode queues they serve: three queries (four with identities
    to show). `pick_queue_ids`: those queues, when the caller has read them (the workspace has, for
    the status bar); the picks are then not read at all when there are none."""
    offers = list(
        Offer.objects.filter(agent=membership, status=OfferStatus.PENDING)
        .select_related("task__conversation__contact")
        .only("public_id", "expires_at", "task", *(f"task__{name}" for name in TASK_LINE_FIELDS))
        .annotate(preview=_last_message_preview("task__conversation"))
        .order_by("expires_at", "pk")
    )
    held = Task.objects.filter(
        assignee=membership,
        status__in=(TaskStatus.PENDING, TaskStatus.ASSIGNED, TaskStatus.WRAPPING),
    ).exclude(kind=TaskKind.CONVERSATION, status=TaskStatus.PENDING)
    if pick_queue_ids is None:
        served = AgentState.objects.filter(membership=membership).values("served_queues")
        pick_queues = Q(queue__pick_mode=True, queue__in=served)
    else:
        pick_queues = Q(queue__in=pick_queue_ids)
    pickable = Task.objects.filter(pick_queues, status=TaskStatus.PENDING, kind=TaskKind.CONVERSATION)
    for offer in offers:
        offer.task.preview = offer.preview  # a task line reads its task's preview
    tasks = list(_conversation_tasks(held).order_by("created_at", "pk"))
    picks = list(_conversation_tasks(pickable).order_by("created_at", "pk")[:50]) if pick_queue_ids != set() else []
    _identify_the_nameless([offer.task for offer in offers] + tasks + picks)
    return TaskList(offers=offers, tasks=tasks, picks=picks)


def unassigned_tasks(limit: int = 50) -> list[Task]:
    """Conversation tasks nobody holds yet, oldest first, for the Unassigned view."""
    unassigned = Task.objects.filter(kind=TaskKind.CONVERSATION, status=TaskStatus.PENDING, assignee__isnull=True)
    return _identify_the_nameless(
        list(_conversation_tasks(unassigned, "queue", "queue__name").order_by("created_at", "pk")[:limit])
    )


@dataclass
class HistoryEntry:
    """One line of a conversation's history: a message, an internal note or an activity line."""

    kind: str  # "message" | "note" | "activity"
    at: datetime
    item: object


@dataclass
class ConversationPane:
    conversation: Conversation
    history: list[HistoryEntry]
    earlier_before: Message | None  # the oldest message shown, when older ones exist
    task: Task | None
    dispositions: list
    templates: list[ReplyTemplate]
    recent: list[Conversation]
    can_reply: bool


# The messages a pane opens with; older ones come on request ("Show earlier messages"), this many at a
# time. An agent answers from the last few, and 30 fill a few screens; each one more is read and
# rendered on every open (100 were a third of the workspace's time).
HISTORY_WINDOW = 30
REPLYABLE_STATUSES = ("new", "open", "assigned", "in_progress", "pending")
# Activity lines that say something a reader of the chat needs; message and note rows show themselves.
HISTORY_ACTIVITY_KINDS = (
    "status",
    "assignment",
    "priority",
    "transfer",
    "merge",
    "split",
    "tags",
    "sla",
    "escalation",
)


def _named(member_path: str) -> tuple[str, ...]:
    """The columns that show a member by name (Membership.display_name), for `.only()`."""
    return (member_path, f"{member_path}__user", *(f"{member_path}__user__{name}" for name in USER_NAME_FIELDS))


# What a pane shows of its task (actions.html), of each message, note and activity line
# (history_entries.html, note.html, context.html): the history reads only these columns, which with
# their authors' rows cost more to compile and turn into objects than the rows do to read. A
# template that starts showing another field adds it here (the query-count tests catch a miss).
USER_NAME_FIELDS = ("username", "first_name", "last_name")
PANE_TASK_FIELDS = (
    "public_id", "kind", "status", "conversation", "assignee", "created_at", "wrap_up_due_at",
    "queue", "queue__disposition_required", "disposition", "disposition__name",
)  # fmt: skip
MESSAGE_FIELDS = (
    "public_id", "conversation", "direction", "body", "delivery_status", "error_code", "error_reason",
    "send_at", "created_at", *_named("author"),
)  # fmt: skip
NOTE_FIELDS = ("public_id", "conversation", "body_html", "created_at", *_named("author"))
ACTIVITY_FIELDS = (
    "public_id", "conversation", "kind", "old_value", "new_value", "reason", "created_at", *_named("actor"),
)  # fmt: skip


@dataclass
class PaneTask:
    """What the pane's actions (End chat, wrap-up, Handled) need: the conversation's task for this
    agent and the dispositions its queue allows."""

    task: Task | None
    dispositions: list


def conversation_pane_task(conversation: Conversation, membership: Membership) -> PaneTask:
    """The conversation's open task, else the last one this agent held (to show it Handled), and the
    dispositions only while this agent wraps it up (the one time the pane offers them); one to three
    queries."""
    tasks = Task.objects.select_related("queue", "disposition").only(*PANE_TASK_FIELDS).order_by("-created_at")
    task = (
        tasks.filter(conversation=conversation, kind=TaskKind.CONVERSATION)
        .exclude(status__in=(TaskStatus.COMPLETED, TaskStatus.CANCELED))
        .first()
    ) or tasks.filter(conversation=conversation, kind=TaskKind.CONVERSATION, assignee=membership).first()
    wrapping = task is not None and task.status == TaskStatus.WRAPPING and task.assignee_id == membership.pk
    return PaneTask(task=task, dispositions=list(dispositions_for_queue(task.queue)) if wrapping else [])


def conversation_pane(
    conversation: Conversation, membership: Membership, *, with_templates: bool = True
) -> ConversationPane:
    """Everything the middle and right columns show for one conversation, in a fixed number of queries.
    `with_templates=False` leaves out the reply templates, which only the reply box shows."""
    history, earlier_before = _history(conversation)
    pane_task = conversation_pane_task(conversation, membership)
    recent = list(
        Conversation.objects.filter(contact_id=conversation.contact_id)
        .exclude(pk=conversation.pk)
        .order_by("-created_at")[:5]
    )
    return ConversationPane(
        conversation=conversation,
        history=history,
        earlier_before=earlier_before,
        task=pane_task.task,
        dispositions=pane_task.dispositions,
        templates=reply_templates() if with_templates else [],
        recent=recent,
        can_reply=conversation.assignee_id == membership.pk and conversation.status in REPLYABLE_STATUSES,
    )


def reply_templates() -> list[ReplyTemplate]:
    return list(ReplyTemplate.objects.filter(is_active=True).order_by("shortcut"))


def _history(conversation: Conversation, before: Message | None = None) -> tuple[list[HistoryEntry], Message | None]:
    """The newest HISTORY_WINDOW messages (older than the message `before`, when given) with the
    notes and activity lines of the same stretch, oldest first; and, when older messages exist, the
    oldest one shown, to ask "Show earlier" before. A long history costs the same to open as a short one.

    Messages page by (created_at, id), the order the history shows them in, so that messages written
    in the same instant (an import, a burst) are neither skipped nor shown twice at a page's edge."""
    messages = Message.objects.filter(conversation=conversation)
    notes = conversation.notes.all()
    activity = Activity.objects.filter(conversation=conversation, kind__in=HISTORY_ACTIVITY_KINDS)
    if before is not None:
        messages = messages.filter(
            Q(created_at__lt=before.created_at) | Q(created_at=before.created_at, pk__lt=before.pk)
        )
        notes, activity = (rows.filter(created_at__lt=before.created_at) for rows in (notes, activity))
    newest = list(
        messages.select_related("author__user")
        .only(*MESSAGE_FIELDS)
        .annotate(has_files=_has_files())
        .order_by("-created_at", "-id")[: HISTORY_WINDOW + 1]
    )
    shown = newest[:HISTORY_WINDOW][::-1]
    earlier_before = shown[0] if len(newest) > HISTORY_WINDOW else None
    if earlier_before is not None:
        notes, activity = (rows.filter(created_at__gte=earlier_before.created_at) for rows in (notes, activity))
    attach_files(shown)
    entries = sorted(
        chain(
            (HistoryEntry("message", m.created_at, m) for m in shown),
            (
                HistoryEntry("note", n.created_at, n)
                for n in notes.select_related("author__user").only(*NOTE_FIELDS).order_by("created_at", "id")
            ),
            (
                HistoryEntry("activity", a.created_at, a)
                for a in activity.select_related("actor__user").only(*ACTIVITY_FIELDS).order_by("created_at", "id")
            ),
        ),
        key=lambda entry: entry.at,
    )
    return entries, earlier_before


def conversation_history_before(
    conversation: Conversation, before_public_id: str
) -> tuple[list[HistoryEntry], Message | None]:
    """The stretch of history before one of the conversation's messages, for "Show earlier
    messages" (404 for a message of another conversation or tenant); one query more than a pane's."""
    before = get_in_tenant_or_404(
        Message.objects.filter(conversation=conversation).only("created_at"), public_id=before_public_id
    )
    return _history(conversation, before)


def _has_files():
    """Annotated on messages (`has_files`), so attach_files skips its query when none has any."""
    return Exists(Attachment.objects.filter(message=OuterRef("pk")))


def attach_files(messages: list[Message]) -> list[Message]:
    """Give each message its attachments as `files`, in one query for all of them (none when every
    message was read with `has_files` false: most of a chat is text).

    Not prefetch_related: it builds a related manager per message, which on a 500-message history
    cost more than rendering it."""
    files: dict[int, list[Attachment]] = defaultdict(list)
    with_files = [m.pk for m in messages if getattr(m, "has_files", True)]
    for attachment in Attachment.objects.filter(message_id__in=with_files).order_by("created_at", "id"):
        files[attachment.message_id].append(attachment)
    for message in messages:
        message.files = files.get(message.pk, [])
    return messages


def newest_messages(conversation_public_ids: list[str]) -> dict[str, str]:
    """Conversation public id -> the public id of its newest message (as its history orders them), in
    one query."""
    rows = (
        Message.objects.filter(conversation__public_id__in=conversation_public_ids)
        .order_by("conversation_id", "-created_at", "-id")
        .distinct("conversation_id")
        .values_list("conversation__public_id", "public_id")
    )
    return dict(rows)


def conversation_for_pane(public_id: str) -> Conversation:
    """The conversation an agent opens, inside the current tenant (404 for another tenant's)."""
    return get_in_tenant_or_404(
        Conversation.objects.select_related("contact", "assignee__user").prefetch_related(
            Prefetch("contact__identities", queryset=ContactIdentity.objects.order_by("id"))
        ),
        public_id=public_id,
    )


# --- the context column (right of a conversation pane) and the contact page ----------------------
# The column itself reads nothing of its own: it shows the pane's conversation, contact and history.
# The quick actions that need lists (staff, queues, conversations, messages) read them here when
# their disclosure is opened.

CONTACT_PAGE_CONVERSATIONS = 20
SPLIT_MESSAGES_SHOWN = 100
MERGEABLE_STATUSES = ("new", "open", "assigned", "in_progress", "pending", "resolved")


@dataclass
class ContactPage:
    contact: Contact
    conversations: list[Conversation]  # newest first, each with `preview` (its last message)


def contact_page(public_id: str) -> ContactPage:
    """A contact of the current tenant (404 otherwise) with their identities and latest
    conversations, each with its last message and agent: three queries whatever they hold."""
    contact = get_in_tenant_or_404(
        Contact.objects.prefetch_related(Prefetch("identities", queryset=ContactIdentity.objects.order_by("id"))),
        public_id=public_id,
    )
    conversations = (
        Conversation.objects.filter(contact=contact)
        .select_related("assignee__user")
        .annotate(preview=_last_message_preview("pk"))
        .order_by("-created_at", "-pk")[:CONTACT_PAGE_CONVERSATIONS]
    )
    return ContactPage(contact=contact, conversations=list(conversations))


def staff_to_choose() -> tuple[list[Membership], list[Team]]:
    """Active members and the teams, by name, for the assign, transfer and follow-up forms."""
    members = Membership.objects.filter(is_active=True).select_related("user").order_by("user__username")
    return list(members), list(Team.objects.order_by("name"))


def queues_to_choose() -> list[Queue]:
    return list(Queue.objects.order_by("name"))


def merge_candidates(conversation: Conversation) -> list[Conversation]:
    """The contact's other conversations that could be merged into this one (live or resolved,
    not merged already), newest first, with their last message and agent."""
    return list(
        Conversation.objects.filter(contact_id=conversation.contact_id, merged_into=None, status__in=MERGEABLE_STATUSES)
        .exclude(pk=conversation.pk)
        .select_related("assignee__user")
        .annotate(preview=_last_message_preview("pk"))
        .order_by("-created_at", "-pk")[:CONTACT_PAGE_CONVERSATIONS]
    )


def split_candidates(conversation: Conversation) -> list[Message]:
    """The conversation's latest messages, oldest first, to choose from when splitting it."""
    latest = list(
        Message.objects.filter(conversation=conversation).order_by("-created_at", "-id")[:SPLIT_MESSAGES_SHOWN]
    )
    return latest[::-1]


def outbound_channels(contact: Contact) -> list[tuple[str, str]]:
    """(channel, label) an agent can write to `contact` on first: those its identities reach.
    Uses the contact's prefetched identities when the caller loaded them."""
    kinds = {identity.kind for identity in contact.identities.all()}
    return [
        (channel, label)
        for channel, label in Channel.choices
        if kinds.intersection(IDENTITY_KINDS_OF_OUTBOUND_CHANNEL.get(channel, ()))
    ]


def conversation_waiting_task(conversation: Conversation) -> Task | None:
    """The conversation's task waiting for an agent (pending or reserved, nobody holding it), if any."""
    return (
        Task.objects.filter(
            conversation=conversation,
            kind=TaskKind.CONVERSATION,
            status__in=(TaskStatus.PENDING, TaskStatus.RESERVED),
            assignee__isnull=True,
        )
        .order_by("-created_at", "-pk")
        .first()
    )


def members_named(usernames: list[str]) -> list[Membership]:
    """The active members of the current tenant with these usernames (whom a note's @mentions reach)."""
    if not usernames:
        return []
    return list(Membership.objects.filter(user__username__in=usernames, is_active=True).select_related("user"))


def conversation_queue_id(conversation: Conversation) -> int | None:
    """The queue of the conversation's latest conversation task: where writing to its contact again
    is queued unless the agent chooses another."""
    return (
        Task.objects.filter(conversation=conversation, kind=TaskKind.CONVERSATION)
        .order_by("-created_at", "-pk")
        .values_list("queue_id", flat=True)
        .first()
    )
