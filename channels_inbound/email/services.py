"""What an inbound email stores, through the conversation services (in the webhook's transaction)."""

from channels_inbound.email.parsing import ParsedEmail
from channels_inbound.email.selectors import email_conversation_replied_to
from channels_inbound.models import Channel, ChannelEndpoint, EmailDetails
from channels_inbound.services import inbound_conversation_route
from conversations.models import Conversation, IdentityKind, Via
from conversations.selectors import message_by_provider_id
from conversations.services import (
    attachment_add,
    contact_find_or_create,
    conversation_find_or_start,
    message_append_inbound,
)


def email_inbound_store(endpoint: ChannelEndpoint, email: ParsedEmail) -> bool:
    """A customer's email to one of the tenant's mailboxes. Returns whether it stored something new.

    Runs inside the endpoint's tenant and the caller's transaction. The contact is found by the
    From address (named from its display name). The conversation is the one the email answers
    (In-Reply-To / References, see email_conversation_replied_to), else the contact's live email
    conversation, else a new one named by the subject. The message is appended idempotently on the
    Message-ID (or its stand-in), so a relay's retry stores nothing; its headers and subject go to
    EmailDetails, its attachments through attachment_add. Attachments over the size limit are not
    kept, and the message body says so, so nothing disappears silently.
    """
    if message_by_provider_id(email.idempotency_id) is not None:
        # A retry: answer early so it cannot start a conversation either. Concurrent retries both
        # get past here; the unique constraint in message_append_inbound then keeps one message.
        return False
    contact, _ = contact_find_or_create(kind=IdentityKind.EMAIL, value=email.from_address, name=email.from_name)
    conversation = email_conversation_replied_to(contact=contact, message_ids=email.replied_to_ids)
    if conversation is None:
        conversation, started = conversation_find_or_start(contact=contact, channel=Channel.EMAIL, via=Via.WEBHOOK)
        if started and email.subject:
            # conversation_find_or_start takes no subject; the row is new and ours in this transaction.
            Conversation.objects.filter(pk=conversation.pk).update(subject=email.subject[:200])
            conversation.subject = email.subject[:200]
    body = email.body
    if email.refused_attachments:
        notice = "\n".join(f"[Attachment not kept: {reason}]" for reason in email.refused_attachments)
        body = f"{body}\n\n{notice}".strip()
    message, created = message_append_inbound(
        conversation=conversation, body=body, provider_message_id=email.idempotency_id
    )
    if not created:
        return False
    EmailDetails.objects.create(
        tenant_id=endpoint.tenant_id, message=message, endpoint=endpoint, from_address=email.from_address,
        subject=email.subject[:998], message_id_header=email.message_id, in_reply_to=" ".join(email.in_reply_to),
        references=" ".join(email.references),
    )  # fmt: skip
    for attachment in email.attachments:
        attachment_add(
            message=message, filename=attachment.filename, content=attachment.content,
            content_type=attachment.content_type,
        )  # fmt: skip
    inbound_conversation_route(endpoint=endpoint, conversation=conversation)
    return True
