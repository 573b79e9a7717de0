"""The webchat sender: an agent's reply goes to the visitor's websocket (registered on import, from
channels_inbound.apps). A visitor who is away finds the reply in the history when they come back,
so a push nobody receives is still a sent message."""

from channels_inbound.models import Channel
from channels_inbound.webchat.services import webchat_reply_push
from conversations.delivery import PermanentFailure, register_sender
from conversations.models import Message


def webchat_send(message: Message) -> str:
    if not webchat_reply_push(message):
        raise PermanentFailure("This contact has no webchat visitor to send to.")
    return f"webchat:{message.public_id}"


register_sender(Channel.WEBCHAT, webchat_send)
