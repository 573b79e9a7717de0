"""Encryption at rest for provider credentials (auth tokens, webhook secrets).

The key is CREDENTIALS_KEY when set (a Fernet key, so SECRET_KEY can rotate without losing the
stored tokens), else one derived from SECRET_KEY.
"""

import base64
import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _fernet() -> Fernet:
    explicit = os.environ.get("CREDENTIALS_KEY")
    if explicit:
        try:
            return Fernet(explicit.encode())
        except ValueError:
            raise ImproperlyConfigured("CREDENTIALS_KEY is not a valid Fernet key (32 url-safe base64 bytes)") from None
    digest = hashlib.sha256(b"switchboard-credentials:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_secret(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode() if plain else ""


def decrypt_secret(stored: str) -> str:
    if not stored:
        return ""
    try:
        return _fernet().decrypt(stored.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "a stored credential cannot be decrypted: CREDENTIALS_KEY or SECRET_KEY changed since it was saved"
        ) from None


def masked(plain: str) -> str:
    """What a page may show of a secret: its last four characters."""
    return f"••••{plain[-4:]}" if len(plain) > 8 else "••••" if plain else ""
