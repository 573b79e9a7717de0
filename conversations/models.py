"""Contacts, conversations, messages, attachments, notes, reply templates, sensitive-data patterns
and the activity log.

Models hold data and constraints only. Every write and status change is a service in
`conversations.services` (or `tasks.services`); the activity log is written only by
`conversations.activity.activity_record`.
"""

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.text import get_valid_filename

from channels_inbound.models import Channel
from contactcenter.tenancy import TenantOwnedModel
from conversations.sensitive import validate_safe_regex


class IdentityKind(models.TextChoices):
    PHONE = "phone", "Phone number"
    EMAIL = "email", "Email address"
    WHATSAPP = "whatsapp", "WhatsApp"
    MESSENGER = "messenger", "Messenger id"
    WEBCHAT = "webchat", "Webchat visitor"


class Contact(TenantOwnedModel):
    """A customer in the tenant's directory, found again by any of their identities."""

    name = models.CharField(max_length=200, blank=True)
    is_vip = models.BooleanField("VIP", default=False)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantOwnedModel.Meta):
        ordering = ["name", "id"]

    def __str__(self) -> str:
        """The name, else how they reached us (a phone number, an address): what an agent recognises.
        Uses prefetched identities when a list prefetched them: as `identities_in_order` (a
        `Prefetch(..., to_attr=...)`, which builds no queryset per contact) or the plain way."""
        if self.name:
            return self.name
        identities = getattr(self, "identities_in_order", None)
        if identities is None:
            identities = self.identities.all() if self.pk else ()
        identity = next(iter(identities), None)
        return identity.value if identity else f"Contact {self.public_id}"


class ContactIdentity(TenantOwnedModel):
    """One way to reach a contact. `value` is normalised (see conversations.identities).

    A WhatsApp identity stores the bare number (+1555…), so it meets the phone identity of the same
    number: a customer who writes by SMS and later by WhatsApp is one contact.
    """

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=16, choices=IdentityKind.choices)
    value = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["tenant", "kind", "value"], name="one_contact_per_identity")
        ]
        indexes = [models.Index(fields=["tenant", "value"])]
        verbose_name_plural = "contact identities"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.value}"


class ConversationStatus(models.TextChoices):
    NEW = "new", "New"
    OPEN = "open", "Open"
    ASSIGNED = "assigned", "Assigned"
    IN_PROGRESS = "in_progress", "In progress"
    PENDING = "pending", "Pending"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"
    ARCHIVED = "archived", "Archived"


class ConversationPriority(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"
    URGENT = "urgent", "Urgent"


class Conversation(TenantOwnedModel):
    """One thread with a contact on a channel. `status` changes only in conversation_transition.

    `first_response_at`, `last_customer_message_at` and `waiting_since` (the oldest customer message
    not yet answered) are kept current by the message services, so SLA and metrics read columns.
    """

    contact = models.ForeignKey(Contact, on_delete=models.RESTRICT, related_name="conversations")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    subject = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=ConversationStatus.choices, default=ConversationStatus.NEW)
    pending_reason = models.CharField(max_length=200, blank=True)
    priority = models.CharField(
        max_length=8, choices=ConversationPriority.choices, default=ConversationPriority.NORMAL
    )
    tags = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    assignee = models.ForeignKey(
        "contactcenter.Membership", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    team = models.ForeignKey("tasks.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_duplicates"
    )
    split_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="split_offs"
    )
    first_response_at = models.DateTimeField(null=True, blank=True)
    last_customer_message_at = models.DateTimeField(null=True, blank=True)
    waiting_since = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantOwnedModel.Meta):
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "status"]),
            models.Index(fields=["contact", "channel"]),
            GinIndex(fields=["tags"], name="conversation_tags_gin"),
        ]

    def __str__(self) -> str:
        return self.subject or f"{self.get_channel_display()} conversation {self.public_id}"


class Direction(models.TextChoices):
    INBOUND = "inbound", "From the customer"
    OUTBOUND = "outbound", "To the customer"


class DeliveryStatus(models.TextChoices):
    RECEIVED = "received", "Received"  # inbound messages
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    UNDELIVERED = "undelivered", "Undelivered"
    FAILED = "failed", "Failed"
    READ = "read", "Read"


class Message(TenantOwnedModel):
    """A message of a conversation. `delivery_status` changes only in message_delivery_update."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=8, choices=Direction.choices)
    body = models.TextField(blank=True)
    author = models.ForeignKey(
        "contactcenter.Membership", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    provider_message_id = models.CharField(max_length=255, null=True, blank=True)
    delivery_status = models.CharField(max_length=12, choices=DeliveryStatus.choices)
    error_code = models.CharField(max_length=32, blank=True)
    error_reason = models.TextField(blank=True)
    send_at = models.DateTimeField(null=True, blank=True, help_text="Scheduled messages are sent at this time")
    send_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    delivery_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta(TenantOwnedModel.Meta):
        ordering = ["created_at", "id"]
        constraints = [
            # Providers retry webhooks; this constraint (not a check before the insert) is what makes
            # appending the same provider message twice yield one row, even concurrently.
            models.UniqueConstraint(
                fields=["tenant", "provider_message_id"],
                condition=models.Q(provider_message_id__isnull=False),
                name="one_message_per_provider_id",
            )
        ]
        indexes = [
            models.Index(fields=["conversation", "created_at"]),
            models.Index(
                fields=["send_at"],
                condition=models.Q(delivery_status="queued", send_at__isnull=False),
                name="message_scheduled_due",
            ),
            # The queued outbound messages (few at any time), for the recovery sweep of sends that
            # never started or whose worker died (conversations.selectors.outbound_messages_*).
            models.Index(fields=["created_at"], condition=models.Q(delivery_status="queued"), name="message_queued"),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()}: {self.body[:60]}"


def attachment_path(attachment: "Attachment", filename: str) -> str:
    # Tenant first, then an unguessable id: files of two tenants never share a directory, and a
    # file name cannot collide with or overwrite another.
    return f"tenants/{attachment.tenant_id}/attachments/{attachment.public_id}/{get_valid_filename(filename)}"


class Attachment(TenantOwnedModel):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to=attachment_path, max_length=300)
    filename = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta(TenantOwnedModel.Meta):
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.filename


class AttachmentRestriction(TenantOwnedModel):
    """A kind of file the tenant's admins do not allow, on top of what each channel carries
    (conversations.files.OUTBOUND_FILE_RULES): refused in agents' replies and in webchat visitors'
    uploads, with `reason` shown to whoever tried."""

    content_type = models.CharField(
        max_length=100,
        validators=[
            RegexValidator(
                r"^[A-Za-z0-9.+-]+/(\*|[A-Za-z0-9.+-]+)\Z",
                "A content type (application/zip) or a family of them (video/*).",
            )
        ],
        help_text="A content type such as application/zip, or a whole family such as video/*",
    )
    channel = models.CharField(
        max_length=16, choices=Channel.choices, blank=True, help_text="Leave empty to refuse it on every channel"
    )
    reason = models.CharField(max_length=200, help_text="Shown to the agent or visitor whose file is refused")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "content_type", "channel"], name="one_attachment_restriction_per_type_and_channel"
            )
        ]
        ordering = ["content_type", "channel"]

    def __str__(self) -> str:
        return f"{self.content_type} on {self.get_channel_display() or 'every channel'}"


class InternalNote(TenantOwnedModel):
    """A note agents leave on a conversation; the customer never sees it.

    `body_html` is the sanitised rendering of `body_markdown` (see conversations.markup) and the
    only form a page may show unescaped.
    """

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        "contactcenter.Membership", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    body_markdown = models.TextField()
    body_html = models.TextField(editable=False)
    mentions = models.ManyToManyField("contactcenter.Membership", blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta(TenantOwnedModel.Meta):
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.body_markdown[:60]


class ReplyTemplate(TenantOwnedModel):
    """A canned reply an agent inserts by typing its `/shortcut`; see selectors.reply_template_render."""

    name = models.CharField(max_length=120)
    shortcut = models.CharField(
        max_length=40,
        validators=[
            RegexValidator(
                r"^/[a-z0-9][a-z0-9_-]*$", "A shortcut is a slash and lowercase letters, digits, - or _ (/hello)."
            )
        ],
    )
    category = models.CharField(max_length=60, blank=True)
    body = models.TextField(help_text="Placeholders: {{contact.name}}, {{agent.name}}")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta(TenantOwnedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant", "shortcut"], name="one_template_per_shortcut")]
        ordering = ["category", "shortcut"]

    def __str__(self) -> str:
        return f"{self.shortcut} — {self.name}"


class SensitiveDataPattern(TenantOwnedModel):
    """A tenant's own kind of sensitive data, found in messages next to the built-in card and SSN checks."""

    name = models.CharField(max_length=80)
    pattern = models.CharField(
        max_length=200, validators=[validate_safe_regex], help_text="A regular expression without nested repetition"
    )
    is_active = models.BooleanField(default=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="one_sensitive_pattern_per_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Via(models.TextChoices):
    AGENT = "agent", "Agent"
    SUPERVISOR = "supervisor", "Supervisor"
    RULE = "rule", "Automation rule"
    WEBHOOK = "webhook", "Webhook"
    SYSTEM = "system", "System"


class ActivityKind(models.TextChoices):
    CREATED = "created", "Created"
    STATUS = "status", "Status"
    ASSIGNMENT = "assignment", "Assignment"
    PRIORITY = "priority", "Priority"
    DISPOSITION = "disposition", "Disposition"
    COMPLETION = "completion", "Completion"
    MERGE = "merge", "Merge"
    SPLIT = "split", "Split"
    TRANSFER = "transfer", "Transfer"
    TAGS = "tags", "Tags"
    NOTE = "note", "Note"
    SLA = "sla", "Service level"
    ESCALATION = "escalation", "Escalation"
    SENSITIVE = "sensitive", "Sensitive data sent"
    DELIVERY = "delivery", "Delivery"


class Activity(TenantOwnedModel):
    """The append-only log of every change of a conversation or task (who, how, from what to what, why).

    Written only by `conversations.activity.activity_record`, in the transaction of the change it
    records. Never updated or deleted: a database trigger (migration 0003) refuses UPDATE and
    DELETE of these rows. The only exception is erasing a whole tenant, which must first run
    `SET LOCAL switchboard.erasing_tenant = 'on'` in its transaction.
    """

    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.CASCADE, related_name="activities"
    )
    task = models.ForeignKey("tasks.Task", null=True, blank=True, on_delete=models.CASCADE, related_name="activities")
    # RESTRICT, not SET_NULL: clearing the actor would be an UPDATE of the log. A membership that
    # acted is deactivated, not deleted.
    actor = models.ForeignKey(
        "contactcenter.Membership", null=True, blank=True, on_delete=models.RESTRICT, related_name="+"
    )
    via = models.CharField(max_length=12, choices=Via.choices)
    kind = models.CharField(max_length=12, choices=ActivityKind.choices)
    old_value = models.CharField(max_length=255, blank=True)
    new_value = models.CharField(max_length=255, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta(TenantOwnedModel.Meta):
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"]), models.Index(fields=["task", "created_at"])]
        verbose_name_plural = "activities"

    def __str__(self) -> str:
        change = f"{self.old_value} → {self.new_value}" if self.old_value or self.new_value else ""
        return f"{self.get_kind_display()} {change}".strip()


class CsatSurvey(TenantOwnedModel):
    """One "How did we do? Reply 1–5" sent after an agent resolved a conversation, and the rating.

    Written only by conversations.services (csat_survey_send, csat_reply_record). The rating counts
    for the agent who held the conversation and the queue of its task. A reply is a rating only
    while the conversation is still resolved and before `reply_by`; it is never routed as new work.
    """

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="csat_surveys")
    agent = models.ForeignKey(
        "contactcenter.Membership", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    queue = models.ForeignKey("tasks.Queue", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    question = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    answer = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    score = models.PositiveSmallIntegerField(null=True, blank=True)
    sent_at = models.DateTimeField(default=timezone.now)
    reply_by = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwnedModel.Meta):
        ordering = ["-sent_at", "-id"]
        verbose_name = "CSAT survey"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(score__isnull=True) | models.Q(score__gte=1, score__lte=5), name="csat_score_1_to_5"
            )
        ]
        indexes = [
            models.Index(fields=["conversation", "sent_at"]),
            models.Index(fields=["tenant", "answered_at"]),
        ]

    def __str__(self) -> str:
        return f"CSAT {self.score or '–'} for conversation {self.conversation_id}"
