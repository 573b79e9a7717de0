"""The agent desktop's websocket: the member socket, answering pushes with HTML fragments.

A push names what changed; this consumer renders the fragments of its own member's screen (in a
worker thread, inside the member's tenant) and sends them with the push's sequence number, which
desktop.js remembers. After a reconnect (and every 10 s) the browser sends `{"resume": "<last number>",
"open": [conversation ids], "shown": {conversation id: newest message id}}` and gets what it missed
(desktop.fragments.for_resume).

Recovery after Redis loses everything (a restart): a socket that lived through it is in no group any
more, so every resume joins its groups again; a push whose number does not follow the last one this
socket's browser has (pushes lost meanwhile, or a new epoch) is answered by catching up from that
number instead (the gap replayed, or the screen redrawn); a Redis error while resuming closes the
socket with 1013 (try again later), and the browser reconnects and resumes.
"""

import asyncio
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import redis
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
CLOSE_TRY_AGAIN_LATER = 1013
REDIS_ERRORS = (redis.RedisError, OSError, asyncio.TimeoutError)

logger = logging.getLogger(__name__)


# Two threads render the process's pushes. channels' database_sync_to_async is thread-sensitive:
# every consumer of the process would render one after another in one thread, so a burst of offers to
# a thousand agents queued behind each other while the thread mostly waited on the database. More
# threads than two fought the event loop for the GIL: after a Redis restart, 100 sockets redrawing at
# once took 16–22 s to be consistent again instead of 9 (the realtime drill).
RENDER_THREADS = 2
_render_executor = ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="desktop-render")


def render_in_pool(function):
    """`function` run in one of the render threads. The renders share nothing but the connection
    pool, and each enters its member's tenant itself."""
    return database_sync_to_async(function, thread_sensitive=False, executor=_render_executor)


def follows(position: str, seq: str) -> bool | None:
    """Whether push `seq` comes right after `position` (True), is one the browser has (None: an older
    push overtaken by a catch-up), or leaves a gap (False: another epoch, or numbers missing)."""
    epoch, _, n = position.partition(":")
    seq_epoch, _, seq_n = seq.partition(":")
    if epoch != seq_epoch or not (n + seq_n).isascii() or not n.isdigit() or not seq_n.isdigit():
        return False
    if int(seq_n) <= int(n):
        return None
    return int(seq_n) == int(n) + 1


class DesktopConsumer(MemberConsumer):
    open_conversations: frozenset[str] = frozenset()
    position: str = ""  # the number of the last push this socket's browser has, once it said (resume)

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
        if self.position:
            order = follows(self.position, seq)
            if order is None:
                return  # the browser has it: a catch-up drew it already
            if order is False:
                await self._catch_up(self.position)
                return
        html = await render_in_pool(self._render_event)(message["event"], message.get("data", {}))
        if self.position:  # before its first resume, the browser's own number rules (desktop.js)
            self.position = seq
        await self.send(text_data=fragments.sequence_marker(seq) + html)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            request = json.loads(text_data or "")
        except (ValueError, RecursionError):  # RecursionError: arrays or objects nested too deep
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
        wanted = request.get("open") if isinstance(request.get("open"), list) else []
        opened = [pid for pid in wanted if isinstance(pid, str) and PUBLIC_ID.fullmatch(pid)]
        self.open_conversations = frozenset(opened[:MAX_OPEN_REPORTED])
        try:
            for group in self.joined_groups:  # again: a Redis restart emptied the groups under this socket
                await self.channel_layer.group_add(group, self.channel_name)
        except REDIS_ERRORS:
            logger.warning("could not rejoin the groups of %s; closing, the browser reconnects", self.channel_name)
            await self.close(code=CLOSE_TRY_AGAIN_LATER)
            return
        shown = request.get("shown") if isinstance(request.get("shown"), dict) else {}
        newest_shown = {
            pid: shown[pid]
            for pid in self.open_conversations
            if isinstance(shown.get(pid), str) and len(shown[pid]) <= 64
        }
        # After its first resume, this socket knows what its browser has better than the browser's
        # request does: a heartbeat sent while a redraw was on its way carries the number from before
        # it, and answering that would redraw again (the socket delivers in order).
        await self._catch_up(self.position or request["resume"][:64], newest_shown)

    async def _catch_up(self, position: str, newest_shown: dict[str, str] | None = None):
        """Send what the browser missed since `position` (or redraw its screen), and remember the
        number it has then."""
        try:
            self.position, html = await render_in_pool(self._render_resume)(
                position, sorted(self.open_conversations), newest_shown
            )
        except REDIS_ERRORS:
            logger.warning("could not read the event log for %s; closing, the browser reconnects", self.channel_name)
            await self.close(code=CLOSE_TRY_AGAIN_LATER)
            return
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

    def _render_resume(self, position: str, opened: list[str], newest_shown: dict | None) -> tuple[str, str]:
        with tenant_context(self.membership.tenant_id):
            return fragments.for_resume(self.membership, position, opened, newest_shown)
