"""Customer identities: how a phone number, email or channel id is stored so it is found again."""

import re

from conversations.errors import InvalidIdentity
from conversations.models import IdentityKind

# A WhatsApp number is the customer's phone number: one identity, so SMS and WhatsApp meet.
EQUIVALENT_IDENTITY_KINDS = {
    IdentityKind.PHONE: (IdentityKind.PHONE, IdentityKind.WHATSAPP),
    IdentityKind.WHATSAPP: (IdentityKind.PHONE, IdentityKind.WHATSAPP),
}
PHONE_PUNCTUATION = re.compile(r"[\s().-]")


def normalise_identity(kind: str, value: str) -> str:
    """The stored form of an identity: bare E.164-like numbers for phone and WhatsApp, lowercase emails."""
    value = value.strip()
    if kind in (IdentityKind.PHONE, IdentityKind.WHATSAPP):
        number = PHONE_PUNCTUATION.sub("", value.rsplit(":", 1)[-1])  # whatsapp:+1555…, tel:+1555…
        if not re.fullmatch(r"\+?\d{3,17}", number):
            raise InvalidIdentity(f"“{value}” is not a phone number.")
        return number
    if kind == IdentityKind.EMAIL:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", value) or len(value) > 254:
            raise InvalidIdentity(f"“{value}” is not an email address.")
        return value.lower()
    if kind == IdentityKind.MESSENGER:
        value = value.removeprefix("messenger:")
    if kind not in IdentityKind.values or not value or len(value) > 255:
        raise InvalidIdentity(f"“{value}” is not a valid {kind} identity.")
    return value


# Where an agent can write to a contact first: the kinds of identity a new outbound conversation on
# each channel is addressed to (a phone number reaches SMS and WhatsApp). Webchat visitors and
# callers are reached only when they come to us.
IDENTITY_KINDS_OF_OUTBOUND_CHANNEL = {
    "sms": (IdentityKind.PHONE, IdentityKind.WHATSAPP),
    "whatsapp": (IdentityKind.WHATSAPP, IdentityKind.PHONE),
    "messenger": (IdentityKind.MESSENGER,),
    "email": (IdentityKind.EMAIL,),
}
