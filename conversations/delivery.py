"""Who sends an outbound message on each channel.

The channels issue registers one sender per channel (Twilio for sms/whatsapp/messenger, the email
backend for email, the websocket for webchat). A sender takes the Message, hands it to the
provider and returns the provider's message id (or None). It raises:
- `TemporaryFailure` when trying again later may work (network, 5xx, rate limit): the job retries
  with backoff and, after the last attempt, the message is marked failed with this reason;
- `PermanentFailure` when it never will (invalid number, blocked): the message is failed at once.

With no sender registered for a channel the message is marked failed with a reason saying so,
never silently dropped (conversations.services.message_deliver).

A sender may come with a `find_sent` lookup: `find_sent(message, since)` returns the provider ids of
messages the provider holds that match this one (same recipient, sender and body) sent at or after
`since`, oldest first. Recovery (conversations.services.outbound_messages_recover) asks it about a
send whose worker died mid-call, to tell "sent, the answer was lost" from "never sent" instead of
sending twice. It raises (any exception) when the provider cannot answer now.
"""

from collections.abc import Callable
from datetime import datetime

Sender = Callable[["conversations.models.Message"], str | None]  # noqa: F821
SentFinder = Callable[["conversations.models.Message", datetime], list[str]]  # noqa: F821

SENDERS: dict[str, Sender] = {}
# Keyed by the sender, not the channel: the lookup belongs to whoever sent, so putting a sender back
# (tests swap senders and restore them) brings its lookup back with it.
SENT_FINDERS: dict[Sender, SentFinder] = {}


class DeliveryFailure(Exception):
    def __init__(self, reason: str, code: str = ""):
        super().__init__(reason)
        self.code = code


class TemporaryFailure(DeliveryFailure):
    pass


class PermanentFailure(DeliveryFailure):
    pass


def register_sender(channel: str, sender: Sender, find_sent: SentFinder | None = None) -> None:
    SENDERS[channel] = sender
    if find_sent is not None:
        SENT_FINDERS[sender] = find_sent


def unregister_sender(channel: str) -> None:
    SENDERS.pop(channel, None)


def sender_for(channel: str) -> Sender | None:
    return SENDERS.get(channel)


def sent_finder_for(channel: str) -> SentFinder | None:
    """The lookup of the channel's current sender, if it has one."""
    sender = SENDERS.get(channel)
    return SENT_FINDERS.get(sender) if sender is not None else None
