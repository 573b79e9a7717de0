"""The one way anything reaches a browser live.

Group names are built here and nowhere else, and every one starts with the tenant: callers give a
tenant id and an audience, never a raw group name, so no caller can address another tenant's
browsers by accident. Pushes are sent after the surrounding transaction commits (and dropped if it
rolls back), so a browser never shows a change the database does not have. Only services call the
`push_*` functions; consumers call the `*_group` functions to join.
"""

import logging
import re

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

# The consumer method that receives pushes: "realtime.event" is dispatched to `realtime_event`.
EVENT_TYPE = "realtime.event"
# Group names allow letters, digits, "-", "_" and "." only (channels-redis), at most 100 characters.
VISITOR_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def tenant_group(tenant_id: int) -> str:
    """Everyone signed in to the tenant."""
    return f"tenant-{int(tenant_id)}"


def agent_group(tenant_id: int, membership_id: int) -> str:
    """One member's browsers (every tab they have open)."""
    return f"{tenant_group(tenant_id)}.member-{int(membership_id)}"


def supervisors_group(tenant_id: int) -> str:
    """The tenant's supervisors and admins (wallboard, live queue view)."""
    return f"{tenant_group(tenant_id)}.supervisors"


def webchat_visitor_group(tenant_id: int, visitor_public_id: str) -> str:
    """One anonymous webchat visitor's browser tabs (channels_inbound.webchat). Visitors join this
    group only, never the tenant's: they are customers, not members."""
    if not VISITOR_PUBLIC_ID.fullmatch(visitor_public_id):
        raise ValueError(f"{visitor_public_id!r} is not a visitor id")
    return f"{tenant_group(tenant_id)}.webchat-{visitor_public_id}"


def push_to_member(tenant_id: int, membership_id: int, *, event: str, html: str = "", data: dict | None = None) -> None:
    _push_on_commit(agent_group(tenant_id, membership_id), event=event, html=html, data=data)


def push_to_supervisors(tenant_id: int, *, event: str, html: str = "", data: dict | None = None) -> None:
    _push_on_commit(supervisors_group(tenant_id), event=event, html=html, data=data)


def push_to_tenant(tenant_id: int, *, event: str, html: str = "", data: dict | None = None) -> None:
    _push_on_commit(tenant_group(tenant_id), event=event, html=html, data=data)


def push_to_webchat_visitor(tenant_id: int, visitor_public_id: str, *, event: str, data: dict) -> None:
    """A JSON event (`{"type": event, **data}` on the visitor's socket) to one webchat visitor."""
    _push_on_commit(webchat_visitor_group(tenant_id, visitor_public_id), event=event, html="", data=data)


def _push_on_commit(group: str, *, event: str, html: str, data: dict | None) -> None:
    message = {"type": EVENT_TYPE, "event": event, "html": html, "data": data or {}}
    transaction.on_commit(lambda: _send(group, message))


def _send(group: str, message: dict) -> None:
    # A push is a notification, not the record: the database already holds the change, and a
    # reconnecting browser catches up from it. So a Redis hiccup is logged, never raised into
    # the code that committed.
    try:
        async_to_sync(get_channel_layer().group_send)(group, message)
    except Exception:
        logger.exception("realtime push to %s failed", group)
