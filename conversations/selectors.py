"""Reads of contacts, conversations, messages, templates and sensitive-data patterns."""

import re

from django.db.models import QuerySet
from django.utils import timezone

from contactcenter.tenancy import dangerously_all_tenants
from conversations.identities import EQUIVALENT_IDENTITY_KINDS, normalise_identity
from conversations.markup import fill_placeholders
from conversations.models import (
    Activity,
    Contact,
    ContactIdentity,
    Conversation,
    DeliveryStatus,
    Direction,
    Message,
    ReplyTemplate,
    SensitiveDataPattern,
)
from conversations.sensitive import Span, find_sensitive_spans


def contact_by_identity(*, kind: str, value: str) -> Contact | None:
    """The contact of the current tenant reachable at (kind, value), the way contact_find_or_create finds it."""
    identity = (
        ContactIdentity.objects.filter(
            kind__in=EQUIVALENT_IDENTITY_KINDS.get(kind, (kind,)), value=normalise_identity(kind, value)
        )
        .select_related("contact")
        .first()
    )
    return identity.contact if identity else None


def conversations_tagged(tag: str) -> QuerySet[Conversation]:
    return Conversation.objects.filter(tags__contains=[tag.strip().lower()])


def conversation_messages(conversation: Conversation) -> QuerySet[Message]:
    """The messages in order, with their attachments and authors, for the conversation view."""
    return (
        Message.objects.filter(conversation=conversation)
        .select_related("author__user")
        .prefetch_related("attachments")
        .order_by("created_at", "pk")
    )


def conversation_history(conversation: Conversation) -> QuerySet[Activity]:
    """Every activity row of the conversation and of its tasks, oldest first."""
    return Activity.objects.filter(conversation=conversation).select_related("actor__user", "task").order_by(
        "created_at", "pk"
    )


def message_by_provider_id(provider_message_id: str) -> Message | None:
    return Message.objects.filter(provider_message_id=provider_message_id).select_related("conversation").first()


def scheduled_messages_due(now=None) -> list[tuple[int, int]]:
    """(tenant id, message id) of scheduled messages due and not yet claimed, across tenants.

    Crosses tenants on purpose (a system sweep): it returns ids only, and each delivery then runs
    inside its own tenant (conversations.jobs.deliver_outbound_message).
    """
    with dangerously_all_tenants():
        return list(
            Message.objects.filter(
                direction=Direction.OUTBOUND,
                delivery_status=DeliveryStatus.QUEUED,
                send_at__lte=now or timezone.now(),
                send_claimed_at__isnull=True,
            ).values_list("tenant_id", "pk")[:1000]
        )


def reply_templates_matching(prefix: str) -> QuerySet[ReplyTemplate]:
    """Active templates whose shortcut starts with `prefix` (what the agent typed after "/")."""
    return ReplyTemplate.objects.filter(is_active=True, shortcut__startswith="/" + prefix.lstrip("/").lower())


def reply_template_render(*, template: ReplyTemplate, contact: Contact | None, agent) -> str:
    """The template's body with {{contact.name}} and {{agent.name}} filled in (plain text, for the reply box)."""
    return fill_placeholders(
        template.body,
        {
            "contact.name": (contact.name if contact else "") or "there",
            "agent.name": agent.display_name if agent else "",
        },
    )


def sensitive_spans(text: str) -> list[Span]:
    """Where `text` shows card numbers, SSNs or the current tenant's own sensitive patterns."""
    patterns = [
        (pattern.name, re.compile(pattern.pattern)) for pattern in SensitiveDataPattern.objects.filter(is_active=True)
    ]
    return find_sensitive_spans(text, patterns)
