"""The agent desktop's websocket: the member socket, answering pushes with HTML fragments.

A push names what changed; this consumer renders the fragments of its own member's screen (in a
worker thread, inside the member's tenant) and sends them with the push's sequence number, which
desktop.js remembers. After a reconnect the browser sends `{"resume": "<last number>", "open":
[conversation ids]}` and gets what it missed (desktop.fragments.for_resume).
"""

import json
import re
from datetime import timedelta

from channels.db import database_sync_to_async
from django.utils import timezone
from django.utils.html import escape

from contactcenter import realtime
from contactcenter.consumers import MemberConsumer
from contactcenter.tenancy import tenant_context
from desktop import fragments

MAX_OPEN_REPORTED = 50
WALLBOARD_EVENTS = frozenset(
    {"task.created", "task.status", "task.assigned", "task.sla", "task.escalated", "agent.status", "agent.queues"}
    | {"tasks.status", "conversations.status"}  # a supervisor's bulk action, one push for many rows
)
WALLBOARD_POKE = (
    '<div id="wallboard-poke" hidden hx-swap-oob="true" hx-get="/supervisor/board/" hx-target="#wallboard" '
    'hx-swap="outerHTML" hx-trigger="load delay:300ms"></div>'
)
PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
PRESENCE_SECONDS = 15


class DesktopConsumer(MemberConsumer):
    open_conversations: frozenset[str] = frozenset()

    async def realtime_event(self, message):
        seq = message.get("seq", "")
        if not seq and message["event"] in WALLBOARD_EVENTS:
            # The floor changed: an open wallboard re-fetches its panel (once, however many pushes
            # arrive within the delay: each poke replaces the last before it fires).
            await self.send(text_data=WALLBOARD_POKE)
            return
        if message.get("html") or not seq:
            # Not a numbered push to this member (tenant- or supervisor-wide JSON): as before.
            await super().realtime_event(message)
            return
        html = await database_sync_to_async(self._render_event)(message["event"], message.get("data", {}))
        await self.send(text_data=fragments.sequence_marker(seq) + html)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            request = json.loads(text_data or "")
        except ValueError:
            return
        if not isinstance(request, dict):
            return
        if isinstance(request.get("resume"), str):
            await self._resume(request)
        if isinstance(request.get("viewing"), str) and PUBLIC_ID.fullmatch(request["viewing"]):
            await realtime.presence_announce(
                self.channel_layer, self.membership.tenant_id, member_id=self.membership.pk,
                name=self.scope["user"].get_full_name() or self.scope["user"].get_username(), conversation=request["viewing"], typing=request.get("typing") is True,
            )  # fmt: skip

    async def _resume(self, request: dict):
        opened = [pid for pid in request.get("open", []) if isinstance(pid, str) and PUBLIC_ID.fullmatch(pid)]
        self.open_conversations = frozenset(opened[:MAX_OPEN_REPORTED])
        html = await database_sync_to_async(self._render_resume)(
            request["resume"][:64], sorted(self.open_conversations)
        )
        if html:
            await self.send(text_data=html)

    async def desktop_presence(self, message):
        """Someone of the tenant shows a conversation: tell this agent if they have it open too."""
        conversation = message["conversation"]
        if message["member"] == self.membership.pk or conversation not in self.open_conversations:
            return
        doing = "is typing…" if message["typing"] else "is viewing"
        until = (timezone.now() + timedelta(seconds=PRESENCE_SECONDS)).isoformat()
        await self.send(
            text_data=f'<span id="conv-{conversation}-viewers" class="viewers" hx-swap-oob="true" '
            f'data-presence-until="{until}">{escape(message["name"])} {doing}</span>'
        )

    def _render_event(self, event: str, data: dict) -> str:
        with tenant_context(self.membership.tenant_id):
            return fragments.for_event(self.membership, event, data, self.open_conversations)

    def _render_resume(self, position: str, opened: list[str]) -> str:
        with tenant_context(self.membership.tenant_id):
            return fragments.for_resume(self.membership, position, opened)
