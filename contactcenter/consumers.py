"""The websocket entry point for signed-in members (agents, supervisors, admins).

The tenant comes from the authenticated user in the scope and the tenant they chose in their
session, never from the URL. Anonymous connections and users without a membership are refused
before the handshake completes.
"""

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from contactcenter import realtime
from contactcenter.middleware import SESSION_TENANT_KEY
from contactcenter.selectors import choose_membership, memberships_of_user

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_A_MEMBER = 4403


class MemberConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.joined_groups: list[str] = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        session = self.scope.get("session") or {}
        memberships = await database_sync_to_async(memberships_of_user)(user)
        membership = choose_membership(memberships, session.get(SESSION_TENANT_KEY))
        if membership is None:
            await self.close(code=CLOSE_NOT_A_MEMBER)
            return
        self.membership = membership
        groups = [
            realtime.tenant_group(membership.tenant_id),
            realtime.agent_group(membership.tenant_id, membership.pk),
        ]
        if membership.can_supervise:
            groups.append(realtime.supervisors_group(membership.tenant_id))
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.joined_groups = groups
        await self.accept()

    async def disconnect(self, code):
        for group in self.joined_groups:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def realtime_event(self, message):
        """A push from contactcenter.realtime: HTML fragments go out as they are, for htmx to swap."""
        if message.get("html"):
            await self.send(text_data=message["html"])
        else:
            await self.send(text_data=json.dumps({"event": message["event"], "data": message.get("data", {})}))
