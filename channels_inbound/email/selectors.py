"""Reads for the email channel: which mailbox an email is for, which conversation it answers."""

from django.db.models.functions import Lower

from channels_inbound.models import ChannelEndpoint, EmailDetails, Provider
from contactcenter.tenancy import dangerously_all_tenants
from conversations.models import Contact, Conversation, ConversationStatus, Direction, Message

NOT_TAKING_MESSAGES = (ConversationStatus.CLOSED, ConversationStatus.ARCHIVED)


def email_endpoints_for(recipients: list[str]) -> list[ChannelEndpoint]:
    """The active email endpoints whose mailbox (compared case-insensitively) is one of `recipients`,
    in the recipients' order, in whichever tenants own them.

    Crosses tenants on purpose: the mailbox is how a webhook learns its tenant. Safe because the
    caller then proves the request with the chosen endpoint's own secret before anything is stored.
    """
    with dangerously_all_tenants():
        endpoints = list(
            ChannelEndpoint.objects.annotate(mailbox=Lower("address"))
            .filter(provider=Provider.EMAIL, mailbox__in=recipients, is_active=True)
            .order_by("pk")
        )
    return sorted(endpoints, key=lambda endpoint: recipients.index(endpoint.mailbox))


def email_conversation_replied_to(*, contact: Contact, message_ids: list[str]) -> Conversation | None:
    """The conversation of `contact` holding the message an email answers (`message_ids`, the most
    direct first), when it still takes messages; a merged conversation leads to the one it joined.

    Only the sender's own conversations count: a Message-ID is no secret (anyone copied on a mail
    has it), so matching it in another contact's conversation would let a stranger write into it.
    """
    if not message_ids:
        return None
    by_id = {
        message.provider_message_id: message.conversation
        for message in Message.objects.filter(
            provider_message_id__in=message_ids, conversation__contact=contact, conversation__channel="email"
        ).select_related("conversation__merged_into")
    }
    for message_id in message_ids:
        conversation = by_id.get(message_id)
        while conversation is not None and conversation.merged_into_id:
            conversation = conversation.merged_into
        if conversation is not None and conversation.status not in NOT_TAKING_MESSAGES:
            return conversation
    return None


def email_reply_parent(conversation: Conversation) -> EmailDetails | None:
    """The details of the customer's latest email in `conversation`: a reply answers it, goes to its
    sender, and leaves from the mailbox it arrived at."""
    return (
        EmailDetails.objects.filter(message__conversation=conversation, message__direction=Direction.INBOUND)
        .select_related("endpoint")
        .order_by("-message__created_at", "-message__pk")
        .first()
    )


def email_endpoint_of_tenant() -> ChannelEndpoint | None:
    """The current tenant's first active email endpoint, for conversations no email started."""
    return ChannelEndpoint.objects.filter(provider=Provider.EMAIL, is_active=True).order_by("pk").first()
