"""Inbound faxes through Twilio: the document becomes an attachment of a message on a fax task."""

from channels_inbound.models import Channel, ChannelEndpoint
from channels_inbound.services import inbound_conversation_route
from channels_inbound.twilio.services import inbound_media_announce
from channels_inbound.twilio.voice import ChannelNotServed
from conversations.models import IdentityKind, Via
from conversations.services import contact_find_or_create, conversation_find_or_start, message_append_inbound


def twilio_inbound_fax_store(endpoint: ChannelEndpoint, fields: dict) -> bool:
    """A received fax: the sender's contact, their fax conversation, a "Fax received (N pages)"
    message (idempotent on FaxSid), the PDF announced for fetching (inbound_media_announce: pending
    now, fetched by a job after commit, a failure kept visible) and the conversation queued for an
    agent (inbound_conversation_route, as for every channel's messages). Runs in the webhook's
    transaction, inside the endpoint's tenant.

    Other fax statuses (receiving, failed, …) carry no document: recorded in the event log only.
    Returns whether something new was stored.
    """
    if endpoint.channel != Channel.FAX:
        raise ChannelNotServed(f"{endpoint.address} is set up for {endpoint.get_channel_display()}, not for faxes.")
    if fields["FaxStatus"] != "received":
        return False
    contact, _ = contact_find_or_create(kind=IdentityKind.PHONE, value=fields["From"])
    conversation, _ = conversation_find_or_start(contact=contact, channel=Channel.FAX, via=Via.WEBHOOK)
    message, created = message_append_inbound(
        conversation=conversation, body=_fax_summary(fields.get("NumPages")), provider_message_id=fields["FaxSid"]
    )
    if created:
        inbound_media_announce(
            message=message, endpoint=endpoint, media=[{"url": fields["MediaUrl"], "content_type": "application/pdf"}]
        )
        inbound_conversation_route(endpoint=endpoint, conversation=conversation)
    return created


def _fax_summary(pages: int | None) -> str:
    if pages is None:
        return "Fax received"
    return f"Fax received ({pages} page{'' if pages == 1 else 's'})"
