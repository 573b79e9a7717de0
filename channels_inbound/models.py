"""Channel endpoints: the addresses (numbers, pages, widget keys, mailboxes) customers reach a tenant on."""

import os

from django.db import models

from channels_inbound.webchat.origins import validate_allowed_origins
from contactcenter.credentials import decrypt_secret, encrypt_secret, masked
from contactcenter.tenancy import TenantOwnedModel


class Provider(models.TextChoices):
    TWILIO = "twilio", "Twilio"
    WEBCHAT = "webchat", "Webchat widget"
    EMAIL = "email", "Inbound email"


class Channel(models.TextChoices):
    SMS = "sms", "SMS"
    WHATSAPP = "whatsapp", "WhatsApp"
    MESSENGER = "messenger", "Messenger"
    WEBCHAT = "webchat", "Webchat"
    EMAIL = "email", "Email"
    VOICE = "voice", "Voice"
    FAX = "fax", "Fax"


class ChannelEndpoint(TenantOwnedModel):
    """One address a provider delivers to. Webhooks find the tenant from it (and its credentials).

    The auth token is stored encrypted, or read from the environment variable named in
    `auth_token_env_var` so it need not be in the database at all.
    """

    provider = models.CharField(max_length=16, choices=Provider.choices)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    address = models.CharField(
        max_length=255, help_text="Phone number (+15005550001), whatsapp:+…, Messenger page id, widget key or email address"
    )
    name = models.CharField(max_length=120, blank=True)
    account_sid = models.CharField(max_length=64, blank=True, help_text="Twilio Account SID")
    auth_token_encrypted = models.TextField(blank=True, editable=False)
    auth_token_env_var = models.CharField(
        max_length=64, blank=True, help_text="Read the auth token from this environment variable instead of storing it"
    )
    default_queue = models.ForeignKey(
        "tasks.Queue", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Where work arriving here is queued (else the organisation's first queue taking this channel)",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Webchat: the websites that may embed the widget (checked on the websocket handshake and uploads).
    allowed_origins = models.TextField(
        blank=True, validators=[validate_allowed_origins],
        help_text="Webchat only: the websites that may embed the widget, one origin per line (https://www.example.com)",
    )  # fmt: skip

    class Meta(TenantOwnedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["provider", "address"], name="one_endpoint_per_address")]
        ordering = ["provider", "address"]

    def __str__(self) -> str:
        return self.name or f"{self.get_channel_display()} {self.address}"

    def set_auth_token(self, plain: str) -> None:
        self.auth_token_encrypted = encrypt_secret(plain)

    def auth_token(self) -> str:
        if self.auth_token_env_var:
            return os.environ.get(self.auth_token_env_var, "")
        return decrypt_secret(self.auth_token_encrypted)

    @property
    def auth_token_masked(self) -> str:
        return masked(self.auth_token())


class InboundOutcome(models.TextChoices):
    RECEIVED = "received", "Received, not yet processed"
    STORED = "stored", "Stored"
    DUPLICATE = "duplicate", "Duplicate (already stored)"
    BAD_SIGNATURE = "bad_signature", "Rejected: bad or missing signature"
    MALFORMED = "malformed", "Rejected: malformed"
    UNKNOWN_ENDPOINT = "unknown_endpoint", "Rejected: no endpoint for this address"
    FAILED = "failed", "Failed while processing"


class InboundEvent(TenantOwnedModel):
    """Every request a provider sent to one of the tenant's endpoints, written before it is processed.

    Operators see and replay what arrived from here. Only the headers that matter are kept, and
    never a credential.
    """

    endpoint = models.ForeignKey(ChannelEndpoint, on_delete=models.SET_NULL, null=True, related_name="+")
    provider = models.CharField(max_length=16, choices=Provider.choices)
    kind = models.CharField(max_length=32, help_text="messaging, status, voice, fax, email, …")
    path = models.CharField(max_length=255)
    headers = models.JSONField(default=dict)
    body = models.JSONField(default=dict, help_text="The form fields as received")
    idempotency_key = models.CharField(max_length=128, blank=True, db_index=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    outcome = models.CharField(max_length=24, choices=InboundOutcome.choices, default=InboundOutcome.RECEIVED)
    detail = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Failed tries of the job that stores a deferred event (a message)"
    )

    class Meta(TenantOwnedModel.Meta):
        ordering = ["-received_at"]
        indexes = [
            # The events a job still has to store (channels_inbound.twilio.intake): few, found fast.
            models.Index(
                fields=["tenant", "received_at"], condition=models.Q(outcome="received"), name="inboundevent_waiting"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.kind} at {self.received_at:%Y-%m-%d %H:%M:%S}: {self.outcome}"


class UnroutedInboundEvent(models.Model):
    """A request that matched no endpoint, so belongs to no tenant. Only superusers see these."""

    provider = models.CharField(max_length=16, choices=Provider.choices)
    kind = models.CharField(max_length=32)
    path = models.CharField(max_length=255)
    headers = models.JSONField(default=dict)
    body = models.JSONField(default=dict)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at"]


class EmailDetails(TenantOwnedModel):
    """What an inbound email carries that a Message has no place for: the headers that thread it, its
    subject, and the mailbox it arrived at (replies go out from that mailbox).

    `message_id_header` is the email's own Message-ID, blank when it had none (the Message's
    provider_message_id then holds a stand-in derived from the content, which no mail client knows,
    so it must never be answered with In-Reply-To).
    """

    message = models.OneToOneField("conversations.Message", on_delete=models.CASCADE, related_name="email")
    endpoint = models.ForeignKey(ChannelEndpoint, on_delete=models.SET_NULL, null=True, related_name="+")
    from_address = models.CharField(max_length=254)
    subject = models.CharField(max_length=998, blank=True)
    message_id_header = models.CharField(max_length=255, blank=True)
    in_reply_to = models.TextField(blank=True)
    references = models.TextField(blank=True, help_text="Message-IDs of the thread, oldest first, space-separated")

    class Meta(TenantOwnedModel.Meta):
        verbose_name_plural = "email details"

    def __str__(self) -> str:
        return self.message_id_header or f"email from {self.from_address}"


class MediaFetchStatus(models.TextChoices):
    PENDING = "pending", "Waiting to be fetched"
    STORED = "stored", "Stored as an attachment"
    FAILED = "failed", "Could not be fetched"


class InboundMedia(TenantOwnedModel):
    """A file a provider announced with an inbound message (Twilio's MediaUrlN), fetched by a job.

    The row exists from the moment the message is stored, so a file that could not be fetched is
    never silently lost: it stays here as failed, with the reason, for the agent and the operator.
    """

    message = models.ForeignKey("conversations.Message", on_delete=models.CASCADE, related_name="inbound_media")
    endpoint = models.ForeignKey(ChannelEndpoint, on_delete=models.SET_NULL, null=True, related_name="+")
    url = models.URLField(max_length=1000)
    declared_content_type = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=MediaFetchStatus.choices, default=MediaFetchStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    attachment = models.ForeignKey("conversations.Attachment", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwnedModel.Meta):
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.declared_content_type} for message {self.message_id}: {self.status}"


class CallStatus(models.TextChoices):
    """Twilio's call statuses. The last five are final: the call is over."""

    QUEUED = "queued", "Queued"
    INITIATED = "initiated", "Initiated"
    RINGING = "ringing", "Ringing"
    IN_PROGRESS = "in-progress", "In progress"
    COMPLETED = "completed", "Completed"
    BUSY = "busy", "Busy"
    NO_ANSWER = "no-answer", "No answer"
    CANCELED = "canceled", "Canceled"
    FAILED = "failed", "Failed"


class VoiceCall(TenantOwnedModel):
    """One inbound phone call, waiting in Twilio's queue for its task, then bridged to an agent.

    A task carries at most one call. `bridged_to` is set once (compare-and-set in
    channels_inbound.twilio.voice.voice_call_bridge); a caller hanging up before it is set cancels
    the task, after it the agent's wrap-up decides.
    """

    endpoint = models.ForeignKey(ChannelEndpoint, on_delete=models.SET_NULL, null=True, related_name="+")
    conversation = models.ForeignKey("conversations.Conversation", on_delete=models.CASCADE, related_name="voice_calls")
    task = models.OneToOneField("tasks.Task", on_delete=models.SET_NULL, null=True, blank=True, related_name="voice_call")
    call_sid = models.CharField(max_length=34)
    from_number = models.CharField(max_length=64)
    to_number = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=CallStatus.choices, default=CallStatus.RINGING)
    bridged_to = models.ForeignKey(
        "contactcenter.Membership", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    bridged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant", "call_sid"], name="one_voice_call_per_sid")]
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"call {self.call_sid} from {self.from_number}: {self.status}"
