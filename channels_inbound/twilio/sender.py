"""Outbound SMS, WhatsApp and Messenger messages through Twilio's REST API.

Registered with conversations.delivery, which calls it from the delivery job outside any
transaction. Twilio's answers are sorted into temporary failures (network, 5xx, 429: the job
retries with backoff) and permanent ones (invalid number, blocked, bad credentials: failed at once
with Twilio's code and message, shown to the agent). Files go as MediaUrl parameters, one per
attachment: signed links to our /attachments/public/ view that Twilio fetches within the hour.

`twilio_messages_find_sent` is its `find_sent` lookup (conversations.delivery): Twilio's Messages list.
"""

from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.urls import reverse
from twilio.base.exceptions import TwilioRestException

from channels_inbound.models import Channel
from channels_inbound.selectors import contact_address_on_channel, twilio_endpoint_for_conversation
from channels_inbound.twilio.rest import twilio_client
from conversations.delivery import PermanentFailure, TemporaryFailure, register_sender
from conversations.selectors import attachment_public_url

ADDRESS_PREFIX = {Channel.SMS: "", Channel.WHATSAPP: "whatsapp:", Channel.MESSENGER: "messenger:"}


def _recipient_and_sender(message):
    """(endpoint, To, From) of the conversation; PermanentFailure when it has no Twilio route."""
    conversation = message.conversation
    endpoint = twilio_endpoint_for_conversation(conversation)
    if endpoint is None:
        raise PermanentFailure(f"no active Twilio {conversation.channel} number is configured for this organisation")
    address = contact_address_on_channel(conversation.contact, conversation.channel)
    if address is None:
        raise PermanentFailure(f"the contact has no {conversation.channel} address to write to")
    return endpoint, ADDRESS_PREFIX[conversation.channel] + address, endpoint.address


def twilio_message_send(message) -> str:
    """Send `message` on its conversation's channel; return Twilio's message SID."""
    conversation = message.conversation
    endpoint = twilio_endpoint_for_conversation(conversation)
    if endpoint is None:
        raise PermanentFailure(f"no active Twilio {conversation.channel} number is configured for this organisation")
    attachments = list(message.attachments.all())
    if attachments and not settings.PUBLIC_BASE_URL:
        # Twilio fetches each file from a URL of ours; without a public address it cannot. Failing
        # with the reason (shown to the agent) is better than sending the text without its files.
        raise PermanentFailure("files cannot be sent: PUBLIC_BASE_URL is not set, so Twilio cannot fetch them")
    address = contact_address_on_channel(conversation.contact, conversation.channel)
    if address is None:
        raise PermanentFailure(f"the contact has no {conversation.channel} address to write to")
    parameters = {"to": ADDRESS_PREFIX[conversation.channel] + address, "from_": endpoint.address, "body": message.body}
    if attachments:  # signed links that expire (conversations.selectors.attachment_public_url)
        parameters["media_url"] = [attachment_public_url(attachment) for attachment in attachments]
    if settings.PUBLIC_BASE_URL:  # Twilio can only call back a URL it can reach
        parameters["status_callback"] = settings.PUBLIC_BASE_URL + reverse("twilio-status")
    try:
        sent = twilio_client(endpoint.account_sid, endpoint.auth_token()).messages.create(**parameters)
    except TwilioRestException as error:
        reason = f"Twilio {error.code or error.status}: {error.msg}"
        if error.status >= 500 or error.status == 429:
            raise TemporaryFailure(reason, code=str(error.code or error.status)) from error
        raise PermanentFailure(reason, code=str(error.code or error.status)) from error
    except requests.RequestException as error:
        raise TemporaryFailure(f"Twilio could not be reached: {type(error).__name__}") from error
    return sent.sid


# Our clock and Twilio's differ a little; a match a bit older than the claim is still this send.
CLOCK_SKEW = timedelta(minutes=2)
FIND_SENT_LIMIT = 200


def twilio_messages_find_sent(message, since: datetime) -> list[str]:
    """SIDs of messages Twilio holds from our number to the contact with this body, sent at or after
    `since` (less CLOCK_SKEW), oldest first: GET .../Messages.json?To=&From=&DateSent>=.

    Twilio's DateSent filter takes a day (YYYY-MM-DD), so the day is asked for and the time checked
    here. A message Twilio accepted but has not sent yet has no date_sent and may not be listed; by
    the time a claim is in doubt (a minute) Twilio has normally sent it. Raises TemporaryFailure when
    Twilio cannot be asked now; the caller leaves the message in doubt and asks again later.
    """
    endpoint, to, from_ = _recipient_and_sender(message)
    after = since - CLOCK_SKEW
    try:
        listed = twilio_client(endpoint.account_sid, endpoint.auth_token()).messages.list(
            to=to, from_=from_, date_sent_after=after.date().isoformat(), limit=FIND_SENT_LIMIT
        )
    except TwilioRestException as error:
        raise TemporaryFailure(
            f"Twilio {error.code or error.status}: {error.msg}", code=str(error.code or "")
        ) from error
    except requests.RequestException as error:
        raise TemporaryFailure(f"Twilio could not be reached: {type(error).__name__}") from error
    matches = [
        item for item in listed
        if item.body == message.body and item.direction != "inbound" and (item.date_sent is None or item.date_sent >= after)
    ]  # fmt: skip
    matches.sort(key=lambda item: item.date_sent or item.date_created or after)
    return [item.sid for item in matches]


for channel in ADDRESS_PREFIX:
    register_sender(channel, twilio_message_send, find_sent=twilio_messages_find_sent)
