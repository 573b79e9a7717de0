"""Channel endpoints: the addresses (numbers, pages, widget keys, mailboxes) customers reach a tenant on."""

import os

from django.db import models

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
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

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
