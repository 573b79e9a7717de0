"""Sign-in throttling: a password cannot be guessed faster than a few tries per quarter hour.

Failed sign-ins are counted per user name and client address in the cache (Redis, shared by every
web process), in a window that starts at the first failure. At the limit, the sign-in form refuses
before it checks the password at all, so a locked-out guesser learns nothing, and says how long to
wait; the page answers 429. A successful sign-in clears the count. Counting per name and address
means an attacker cannot lock a real user out from elsewhere.
"""

import hashlib
import math
import time
from typing import ClassVar

from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError

SIGNIN_FAILURE_LIMIT = 5
SIGNIN_WINDOW_SECONDS = 15 * 60


def _keys(username: str, address: str) -> tuple[str, str]:
    digest = hashlib.sha256(f"{username.casefold()}\0{address}".encode()).hexdigest()
    return f"signin-failures:{digest}", f"signin-failures-since:{digest}"


def client_address(request) -> str:
    """The client's address. Behind the proxy, uvicorn (--proxy-headers) has already put the real one here."""
    return request.META.get("REMOTE_ADDR") or "unknown"


def signin_retry_after(*, username: str, address: str) -> int | None:
    """Seconds until `username` may try again from `address`, or None when it may try now."""
    count_key, since_key = _keys(username, address)
    values = cache.get_many([count_key, since_key])
    if values.get(count_key, 0) < SIGNIN_FAILURE_LIMIT:
        return None
    since = values.get(since_key, time.time())
    return max(1, math.ceil(since + SIGNIN_WINDOW_SECONDS - time.time()))


def signin_failure_record(*, username: str, address: str) -> int:
    """Count one failed sign-in; returns the count in the current window."""
    count_key, since_key = _keys(username, address)
    cache.add(since_key, time.time(), timeout=SIGNIN_WINDOW_SECONDS)
    cache.add(count_key, 0, timeout=SIGNIN_WINDOW_SECONDS)  # the window starts at the first failure
    try:
        return cache.incr(count_key)
    except ValueError:  # the window ended between the two calls
        cache.set(count_key, 1, timeout=SIGNIN_WINDOW_SECONDS)
        return 1


def signin_failures_clear(*, username: str, address: str) -> None:
    cache.delete_many(list(_keys(username, address)))


class SignInForm(AuthenticationForm):
    """Django's sign-in form, refusing without checking the password while the user is throttled."""

    error_messages: ClassVar[dict[str, str]] = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed sign-ins for this user from your address. Try again in %(minutes)s minutes.",
    }

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        address = client_address(self.request)
        wait = signin_retry_after(username=username, address=address)
        if wait is not None:
            self.retry_after = wait
            raise ValidationError(
                self.error_messages["throttled"], code="throttled", params={"minutes": math.ceil(wait / 60)}
            )
        try:
            cleaned = super().clean()
        except ValidationError as error:
            if error.code == "invalid_login":
                signin_failure_record(username=username, address=address)
            raise
        signin_failures_clear(username=username, address=address)
        return cleaned
