"""Who sends an outbound message on each channel.

The channels issue registers one sender per channel (Twilio for sms/whatsapp/messenger, the email
backend for email, the websocket for webchat). A sender takes the Message, hands it to the
provider and returns the provider's message id (or None). It raises:
- `TemporaryFailure` when trying again later may work (network, 5xx, rate limit): the job retries
  with backoff and, after the last attempt, the message is marked failed with this reason;
- `PermanentFailure` when it never will (invalid number, blocked): the message is failed at once.

With no sender registered for a channel the message is marked failed with a reason saying so,
never silently dropped (conversations.services.message_deliver).
"""

from collections.abc import Callable

Sender = Callable[["conversations.models.Message"], str | None]  # noqa: F821

SENDERS: dict[str, Sender] = {}


class DeliveryFailure(Exception):
    def __init__(self, reason: str, code: str = ""):
        super().__init__(reason)
        self.code = code


class TemporaryFailure(DeliveryFailure):
    pass


class PermanentFailure(DeliveryFailure):
    pass


def register_sender(channel: str, sender: Sender) -> None:
    SENDERS[channel] = sender


def unregister_sender(channel: str) -> None:
    SENDERS.pop(channel, None)


def sender_for(channel: str) -> Sender | None:
    return SENDERS.get(channel)
