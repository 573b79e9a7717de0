"""Reads of contacts, conversations, messages, templates and sensitive-data patterns."""

import re
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from contactcenter.tenancy import dangerously_all_tenants, tenant_context
from conversations.identities import EQUIVALENT_IDENTITY_KINDS, normalise_identity
from conversations.markup import fill_placeholders
from conversations.models import (
    Activity,
    Attachment,
    AttachmentRestriction,
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


RECOVERY_BATCH = 500


def outbound_messages_never_claimed(*, created_before) -> list[tuple[int, int, str]]:
    """(tenant id, message id, public id) of outbound messages queued before `created_before`, not
    scheduled, whose send no worker ever claimed: their delivery job was lost. Across tenants (a
    system sweep; ids only), oldest first, at most RECOVERY_BATCH; the partial index message_queued."""
    with dangerously_all_tenants():
        return list(
            Message.objects.filter(
                delivery_status=DeliveryStatus.QUEUED,
                direction=Direction.OUTBOUND,
                send_at__isnull=True,
                send_claimed_at__isnull=True,
                created_at__lt=created_before,
            )
            .order_by("created_at")
            .values_list("tenant_id", "pk", "public_id")[:RECOVERY_BATCH]
        )


def outbound_messages_claimed_before(*, claimed_before) -> list[tuple[int, int]]:
    """(tenant id, message id) of outbound messages still queued whose send was claimed before
    `claimed_before`: the worker that claimed them died mid-send, or never got an answer. Across
    tenants (ids only), oldest claim first, at most RECOVERY_BATCH; the partial index message_queued."""
    with dangerously_all_tenants():
        return list(
            Message.objects.filter(
                delivery_status=DeliveryStatus.QUEUED,
                direction=Direction.OUTBOUND,
                send_claimed_at__lt=claimed_before,
            )
            .order_by("send_claimed_at")
            .values_list("tenant_id", "pk")[:RECOVERY_BATCH]
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


# --- attachments ------------------------------------------------------------------------------

# A salt of its own, so no other signed value of the site (sessions, visitor tokens) can pass as one.
ATTACHMENT_PUBLIC_SALT = "conversations.attachment-public-url"
ATTACHMENT_PUBLIC_MAX_AGE = timedelta(hours=1)


def attachment_url(attachment: Attachment) -> str:
    """Where a signed-in member of the tenant opens the file (conversations.views.attachment_download)."""
    return reverse("attachment-download", args=[attachment.public_id])


def attachment_public_url(attachment: Attachment) -> str:
    """An absolute URL anyone holding it may fetch the file from for ATTACHMENT_PUBLIC_MAX_AGE: for
    providers that fetch outbound media themselves (Twilio's MediaUrl).

    The token is signed with SECRET_KEY and names the tenant and the attachment's public id, so it
    cannot be forged, altered to reach another file, or used after it expires. Built on
    PUBLIC_BASE_URL, the address providers reach us at; ImproperlyConfigured without it.
    """
    if not settings.PUBLIC_BASE_URL:
        raise ImproperlyConfigured("PUBLIC_BASE_URL must be set for providers to fetch files from us")
    token = signing.dumps([attachment.tenant_id, attachment.public_id], salt=ATTACHMENT_PUBLIC_SALT, compress=True)
    return settings.PUBLIC_BASE_URL + reverse("attachment-public", args=[token])


def attachment_from_public_token(token: str) -> Attachment | None:
    """The attachment a token of attachment_public_url names, looked up inside the token's tenant;
    None when the token is forged, altered, expired or its file gone."""
    try:
        tenant_id, public_id = signing.loads(token, salt=ATTACHMENT_PUBLIC_SALT, max_age=ATTACHMENT_PUBLIC_MAX_AGE)
    except (signing.BadSignature, TypeError, ValueError):
        return None
    if not isinstance(tenant_id, int) or not isinstance(public_id, str):
        return None
    with tenant_context(tenant_id):
        return Attachment.objects.filter(public_id=public_id).first()


def attachment_restrictions_for(*, channel: str) -> list[AttachmentRestriction]:
    """The current tenant's refused kinds of file on `channel` (its own and those for every channel)."""
    return list(AttachmentRestriction.objects.filter(Q(channel="") | Q(channel=channel)))
