"""The websocket of webchat visitors: `ws/webchat/?key=<widget key>`.

Scoped by the widget key and the visitor token, never by a session: visitors are anonymous and the
page that opens the socket is on the customer's website. So the handshake is refused (before it
completes) for an unknown or inactive key and for an Origin the endpoint does not allow; this, not
ALLOWED_HOSTS, is what keeps other websites from talking as a tenant's visitors. The first frame
says who the visitor is (hello); the token travels in it rather than in the URL, which servers and
proxies log. The visitor then joins only their own group (realtime.webchat_visitor_group).

Frames are size-limited and rate-limited per connection; anything malformed is answered with an
error frame and the connection stays open. The protocol is in channels_inbound.webchat.protocol.
"""

import json
import logging
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from channels_inbound.webchat.intake import (
    handshake_as_request,
    webchat_message_receive,
    webchat_visitor_identify,
    webchat_welcome,
)
from channels_inbound.webchat.origins import origin_is_allowed
from channels_inbound.webchat.protocol import BadFrame, error_frame, frame_parse
from channels_inbound.webchat.selectors import webchat_endpoint_for
from contactcenter import realtime

logger = logging.getLogger(__name__)

CLOSE_REFUSED = 4403


class TokenBucket:
    """`capacity` frames at once, refilled at `per_second`: a person typing never notices, a
    script flooding the socket is told to slow down."""

    def __init__(self, capacity: float, per_second: float, clock=time.monotonic):
        self.capacity, self.per_second, self.clock = capacity, per_second, clock
        self.tokens, self.updated = capacity, clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class VisitorConsumer(AsyncWebsocketConsumer):
    bucket_capacity, bucket_per_second = 10, 1.0

    async def connect(self):
        self.group = None
        self.visitor_id = None
        self.bucket = TokenBucket(self.bucket_capacity, self.bucket_per_second)
        key = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("key", [""])[0]
        origin = dict(self.scope.get("headers", [])).get(b"origin", b"").decode("latin-1")
        self.endpoint = await database_sync_to_async(webchat_endpoint_for)(key)
        if self.endpoint is None or not origin_is_allowed(self.endpoint.allowed_origins, origin):
            await self.close(code=CLOSE_REFUSED)
            return
        await self.accept()

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        if not self.bucket.take():
            await self._send(error_frame("rate_limited", "You are sending too fast. Wait a moment and try again."))
            return
        try:
            frame = frame_parse(text_data)
        except BadFrame as bad:
            await self._send(error_frame(bad.code, bad.detail))
            return
        if frame["type"] == "hello":
            await self._greet(frame.get("visitor"))
        elif self.visitor_id is None:
            await self._send(error_frame("hello_first", "Say hello (with your visitor token) before sending messages."))
        else:
            await self._receive_message(frame)

    async def _greet(self, token):
        if self.visitor_id is not None:
            await self._send(error_frame("bad_frame", "You already said hello."))
            return
        self.visitor_id, token = webchat_visitor_identify(endpoint=self.endpoint, token=token)
        # Join before reading the history: a reply sent in between then arrives twice (the widget
        # shows a message id once) rather than never.
        self.group = realtime.webchat_visitor_group(self.endpoint.tenant_id, self.visitor_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        welcome = await database_sync_to_async(webchat_welcome)(endpoint=self.endpoint, visitor_id=self.visitor_id, token=token)
        await self._send(welcome)

    async def _receive_message(self, frame: dict):
        try:
            answers = await database_sync_to_async(webchat_message_receive)(
                endpoint=self.endpoint, visitor_id=self.visitor_id, frame=frame, arrived=handshake_as_request(self.scope)
            )
        except Exception:
            # Recorded on the inbound event; the widget keeps the message and resends it later.
            logger.exception("webchat message from visitor %s failed", self.visitor_id)
            client_id = frame.get("id") if isinstance(frame.get("id"), str) else None
            answers = [error_frame("server_error", "Your message could not be sent. Please try again.", client_id)]
        for answer in answers:
            await self._send(answer)

    async def realtime_event(self, message):
        """A push from contactcenter.realtime (an agent's reply, the place in line)."""
        await self._send({"type": message["event"], **message.get("data", {})})

    async def _send(self, frame: dict):
        await self.send(text_data=json.dumps(frame))
