"""Which websites may embed a widget.

The widget runs on the customer's website, not ours, so ALLOWED_HOSTS says nothing about it: each
endpoint lists its own origins, and a websocket handshake or upload from any other origin is refused.
This is what stops another website from embedding a tenant's widget and talking as its visitors.
"""

import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

SEPARATORS = re.compile(r"[\s,]+")


def normalise_origin(origin: str) -> str:
    """`scheme://host[:port]` in lowercase, as browsers send it in the Origin header."""
    return origin.strip().rstrip("/").lower()


def allowed_origins_of(text: str) -> set[str]:
    """The origins an endpoint's `allowed_origins` text lists (newline or comma separated)."""
    return {normalise_origin(origin) for origin in SEPARATORS.split(text or "") if origin.strip()}


def validate_allowed_origins(text: str) -> None:
    """Every entry must be a bare origin: a page URL or a host without a scheme would never match."""
    for origin in allowed_origins_of(text):
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
            raise ValidationError(f"“{origin}” is not an origin; write it as https://www.example.com (no path).")


def origin_is_allowed(allowed_origins: str, origin: str | None) -> bool:
    """Whether a request's Origin header is one of the endpoint's. A missing Origin is refused:
    browsers always send one on websocket handshakes and cross-origin POSTs."""
    return bool(origin) and normalise_origin(origin) in allowed_origins_of(allowed_origins)
