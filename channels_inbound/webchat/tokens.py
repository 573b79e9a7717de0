"""Widget keys and anonymous visitor tokens.

A visitor token is the visitor id signed with SECRET_KEY, salted with the widget's endpoint. Nothing
is stored for it: the id becomes the contact's `webchat` identity when the visitor first writes. The
id alone is no credential (agents and admins see identities; they cannot forge the signature), and
a token issued by one tenant's widget is worthless on another's, whose salt differs.
"""

import re
import secrets

from django.core import signing

from channels_inbound.models import ChannelEndpoint

VISITOR_ID = re.compile(r"[A-Za-z0-9_-]{22}")


def new_widget_key() -> str:
    """The public key a website embeds (`data-key`): random, so one tenant's cannot be guessed from another's."""
    return "wk_" + secrets.token_urlsafe(18)


def _signer(endpoint: ChannelEndpoint) -> signing.Signer:
    return signing.Signer(salt=f"switchboard.webchat.visitor.{endpoint.public_id}")


def visitor_token_issue(endpoint: ChannelEndpoint) -> tuple[str, str]:
    """A new visitor: (visitor id, token for the browser to keep)."""
    visitor_id = secrets.token_urlsafe(16)  # 128 random bits, 22 characters
    return visitor_id, _signer(endpoint).sign(visitor_id)


def visitor_id_from_token(endpoint: ChannelEndpoint, token) -> str | None:
    """The visitor id the token proves, or None for a missing, forged or other widget's token."""
    if not isinstance(token, str) or len(token) > 200:
        return None
    try:
        visitor_id = _signer(endpoint).unsign(token)
    except signing.BadSignature:
        return None
    return visitor_id if VISITOR_ID.fullmatch(visitor_id) else None
