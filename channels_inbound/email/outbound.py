"""Sending an agent's reply on the email channel, through Django's default mailer (SMTP in production).

The reply leaves from the mailbox the customer wrote to, under the tenant's name, with
`Re: <subject>`, a fresh Message-ID, and In-Reply-To / References pointing at the customer's latest
email, so mail clients keep the thread together and the customer's answer threads back into the
same conversation (its In-Reply-To is our Message-ID, which becomes the message's provider id).

Importing this module registers the sender (channels_inbound.apps).
"""

import smtplib
from email.utils import formataddr, make_msgid

from django.core.mail import EmailMessage, mailers

from channels_inbound.email.selectors import email_endpoint_of_tenant, email_reply_parent
from channels_inbound.models import Channel
from conversations.delivery import PermanentFailure, TemporaryFailure, register_sender
from conversations.models import ContactIdentity, IdentityKind, Message

MAX_REFERENCES = 20  # the newest ones; RFC 5322 lets long chains be trimmed, and some servers cap header length


def reply_subject(subject: str) -> str:
    subject = " ".join(subject.split())
    if not subject:
        return "Re: your message"
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"


def email_send(message: Message) -> str:
    """Send `message` to the contact; return its Message-ID (the provider id).

    SMTP's own verdicts decide the retry policy: a 5xx reply (recipient refused, message rejected,
    authentication refused) is permanent; a 4xx reply, a dropped or refused connection or a timeout
    is temporary, for the delivery job to retry.
    """
    conversation = message.conversation
    parent = email_reply_parent(conversation)
    endpoint = parent.endpoint if parent and parent.endpoint and parent.endpoint.is_active else None
    endpoint = endpoint or email_endpoint_of_tenant()
    if endpoint is None:
        raise PermanentFailure("No active email mailbox to send from: add an email endpoint in admin.")
    to = parent.from_address if parent else _contact_email(conversation.contact_id)
    if not to:
        raise PermanentFailure("The contact has no email address.")

    message_id = make_msgid(domain=endpoint.address.rsplit("@", 1)[-1])
    headers = {"Message-ID": message_id}
    if parent and parent.message_id_header:
        headers["In-Reply-To"] = parent.message_id_header
        chain = [*parent.references.split(), parent.message_id_header]
        headers["References"] = " ".join(list(dict.fromkeys(chain))[-MAX_REFERENCES:])
    email = EmailMessage(
        subject=reply_subject(conversation.subject),
        body=message.body,
        from_email=formataddr((endpoint.tenant.name, endpoint.address)),
        to=[to],
        headers=headers,
    )
    for attachment in message.attachments.all():
        with attachment.file.open("rb") as file:
            email.attach(attachment.filename, file.read(), attachment.content_type)
    try:
        mailers.default.send_messages([email])
    except smtplib.SMTPRecipientsRefused as error:
        code, reply = next(iter(error.recipients.values()))
        raise _failure(code, reply, f"{to} was refused") from error
    except smtplib.SMTPResponseException as error:  # sender refused, data rejected, authentication …
        raise _failure(error.smtp_code, error.smtp_error, "the mail server refused the message") from error
    except (smtplib.SMTPException, OSError) as error:  # disconnected, connection refused, timeout, DNS
        raise TemporaryFailure(f"Could not reach the mail server: {error or type(error).__name__}") from error
    return message_id


def _failure(code: int, reply: bytes | str, what: str) -> TemporaryFailure | PermanentFailure:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    kind = PermanentFailure if 500 <= code < 600 else TemporaryFailure
    return kind(f"{what}: {code} {text}".strip(), code=str(code))


def _contact_email(contact_id: int) -> str:
    identity = (
        ContactIdentity.objects.filter(contact_id=contact_id, kind=IdentityKind.EMAIL)
        .order_by("created_at", "pk")
        .first()
    )
    return identity.value if identity else ""


register_sender(Channel.EMAIL, email_send)
