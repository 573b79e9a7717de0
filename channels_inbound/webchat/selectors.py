"""Reads for the webchat widget: its endpoint, a visitor's live conversation, and their place in the queue."""

from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import BooleanField, Case, IntegerField, OuterRef, Q, Value, When
from django.db.models.functions import Coalesce

from channels_inbound.models import Channel, ChannelEndpoint, Provider
from contactcenter.tenancy import dangerously_all_tenants
from conversations.models import (
    ContactIdentity,
    Conversation,
    ConversationStatus,
    DeliveryStatus,
    Direction,
    IdentityKind,
    Message,
)
from conversations.selectors import contact_by_identity
from tasks.models import Task, TaskKind, TaskPriority, TaskStatus

HISTORY_LIMIT = 200
# What the visitor sees of an agent's messages: sent ones. Queued (not yet delivered, or scheduled)
# and failed replies never reached them; a queued one arrives live when its delivery job runs.
VISIBLE_OUTBOUND = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ)
PRIORITY_RANK = {TaskPriority.LOW: 0, TaskPriority.MEDIUM: 1, TaskPriority.HIGH: 2, TaskPriority.CRITICAL: 3}


def webchat_endpoint_for(key) -> ChannelEndpoint | None:
    """The active widget with this public key, in whichever tenant owns it.

    Crosses tenants on purpose: the key is how we learn the tenant. Safe because the key only
    identifies the widget; the caller must still check the Origin against the endpoint's allowed
    origins, and a visitor reaches only their own conversation (their signed token).
    """
    if not isinstance(key, str) or not key or len(key) > 255 or "\x00" in key:
        return None  # (PostgreSQL text cannot hold NUL: no key has one)
    with dangerously_all_tenants():
        return ChannelEndpoint.objects.filter(
            provider=Provider.WEBCHAT, channel=Channel.WEBCHAT, address=key, is_active=True
        ).first()


def visitor_live_conversation(visitor_id: str) -> Conversation | None:
    """The visitor's current webchat conversation in the current tenant (the one their next message
    goes to: live, or resolved and reopened by it), or None."""
    contact = contact_by_identity(kind=IdentityKind.WEBCHAT, value=visitor_id)
    if contact is None:
        return None
    return (
        Conversation.objects.filter(contact=contact, channel=Channel.WEBCHAT, merged_into=None)
        .exclude(status__in=(ConversationStatus.CLOSED, ConversationStatus.ARCHIVED))
        .order_by("-created_at", "-pk")
        .first()
    )


def visitor_history(conversation: Conversation) -> list[Message]:
    """The last HISTORY_LIMIT messages the visitor may see, oldest first."""
    messages = (
        Message.objects.filter(conversation=conversation)
        .filter(Q(direction=Direction.INBOUND) | Q(delivery_status__in=VISIBLE_OUTBOUND))
        .select_related("author__user")
        .prefetch_related("attachments")
        .order_by("-created_at", "-pk")[:HISTORY_LIMIT]
    )
    return list(reversed(messages))


def queue_position(conversation: Conversation) -> int | None:
    """1 + the pending conversation tasks of the same queue that routing offers first, or None while
    the conversation has no pending task in a queue (not routed yet, or already with an agent).

    Same order as tasks.routing: higher priority, then VIP, then longest waiting (task creation),
    then task id. Two queries.
    """
    mine = _waiting_tasks(conversation=conversation).exclude(queue=None).order_by("-created_at", "-pk").first()
    if mine is None:
        return None
    same_rank = Q(rank=mine.rank)
    waited_longer = Q(created_at__lt=mine.created_at) | Q(created_at=mine.created_at, pk__lt=mine.pk)
    ahead = Q(rank__gt=mine.rank) | (same_rank & Q(vip=mine.vip) & waited_longer)
    if not mine.vip:
        ahead |= same_rank & Q(vip=True)
    return 1 + _waiting_tasks(queue_id=mine.queue_id).filter(ahead).count()


def _waiting_tasks(**lookup):
    """Pending conversation tasks with routing's sort keys: priority rank and the contact's VIP flag."""
    return _with_routing_order(Task.objects.filter(kind=TaskKind.CONVERSATION, status=TaskStatus.PENDING, **lookup))


def _with_routing_order(tasks):
    return tasks.annotate(
        rank=Case(*(When(priority=p, then=Value(r)) for p, r in PRIORITY_RANK.items()), output_field=IntegerField()),
        vip=Coalesce("conversation__contact__is_vip", Value(False), output_field=BooleanField()),
    )


def webchat_tasks_in_line(*, queue_id: int, task_ids=()) -> bool:
    """Whether a webchat conversation waits in the queue, or is among `task_ids` (just left it)."""
    return (
        Task.objects.filter(queue_id=queue_id, kind=TaskKind.CONVERSATION, channel=Channel.WEBCHAT)
        .filter(Q(status=TaskStatus.PENDING) | Q(pk__in=list(task_ids)))
        .exists()
    )


def queue_line_visitors(*, queue_id: int, task_ids=()) -> list[tuple[str, int | None]]:
    """(visitor id, place in line) of every webchat visitor waiting in the queue, the way
    queue_position counts (routing's order over all pending conversation tasks of the queue, whatever
    their channel), plus (visitor id, None) for the visitors of `task_ids` no longer waiting in it.
    One query, whatever the length of the line."""
    webchat_visitors = ContactIdentity.objects.filter(
        contact_id=OuterRef("conversation__contact_id"), kind=IdentityKind.WEBCHAT
    ).values("value")
    tasks = (
        _with_routing_order(
            Task.objects.filter(queue_id=queue_id, kind=TaskKind.CONVERSATION).filter(
                Q(status=TaskStatus.PENDING) | Q(pk__in=list(task_ids))
            )
        )
        .annotate(visitors=ArraySubquery(webchat_visitors))
        .order_by("-rank", "-vip", "created_at", "pk")
        .values_list("status", "visitors")
    )
    line, place = [], 0
    for status, visitors in tasks:
        waiting = status == TaskStatus.PENDING
        place += waiting
        line += [(visitor_id, place if waiting else None) for visitor_id in visitors]
    return line


def visitor_ids_of(conversation: Conversation) -> list[str]:
    """The webchat visitors (browsers) of the conversation's contact: usually one."""
    return list(
        ContactIdentity.objects.filter(contact_id=conversation.contact_id, kind=IdentityKind.WEBCHAT).values_list(
            "value", flat=True
        )
    )
