"""The widget's websocket protocol: JSON text frames, one object each.

Visitor → server:
    {"type": "hello", "visitor": "<token>" | null}        first frame: who the visitor is
    {"type": "message", "id": "<client id>", "body": "…"}  the widget generates `id`, so a message
                                                          resent after a flaky connection is stored once
Server → visitor:
    {"type": "welcome", "visitor": "<token>", "messages": [message…], "queue_position": n | null}
    {"type": "message", "message": message}              the visitor's own, stored (the acknowledgement),
                                                          or an agent's reply, live
    {"type": "queue", "position": n | null}               "You are number n in line"
    {"type": "error", "code": "…", "detail": "…", "id": "<client id>"}  detail is for the visitor to read

where message = {"id", "client_id", "from": "visitor" | "agent", "author", "body", "at", "attachments"}.
Uploads use the same message shape (channels_inbound.webchat.views.upload).
"""

import json
import re

from conversations.models import Direction, Message

MAX_FRAME_CHARS = 16_000
MAX_BODY_CHARS = 4_000
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
PROVIDER_ID_PREFIX = "webchat:"


class BadFrame(Exception):
    def __init__(self, code: str, detail: str, client_id: str | None = None):
        super().__init__(detail)
        self.code, self.detail, self.client_id = code, detail, client_id


def frame_parse(text_data: str | None) -> dict:
    """The frame as a dict with a known `type`, or BadFrame saying what is wrong with it."""
    if text_data is None:
        raise BadFrame("bad_frame", "Send JSON text frames.")
    if len(text_data) > MAX_FRAME_CHARS:
        raise BadFrame("too_large", f"That was too large to send (at most {MAX_FRAME_CHARS:,} characters).")
    try:
        frame = json.loads(text_data)
    except ValueError:
        raise BadFrame("bad_json", "That was not valid JSON.") from None
    if not isinstance(frame, dict) or frame.get("type") not in ("hello", "message"):
        raise BadFrame("bad_frame", "A frame is a JSON object whose type is hello or message.")
    return frame


def message_fields(frame: dict) -> tuple[str, str]:
    """(client id, body) of a message frame, or BadFrame."""
    client_id, body = frame.get("id"), frame.get("body")
    if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
        raise BadFrame("bad_frame", "A message needs an id of 8 to 64 letters, digits, - or _.")
    if not isinstance(body, str) or not body.strip():
        raise BadFrame("empty", "Write something before sending.", client_id)
    if len(body) > MAX_BODY_CHARS:
        raise BadFrame("too_large", f"Messages can be at most {MAX_BODY_CHARS:,} characters long.", client_id)
    return client_id, body


def provider_message_id_of(visitor_id: str, client_id: str) -> str:
    """The message's provider id: the visitor's own id namespace, so one visitor's client ids
    cannot collide with (or pre-empt) another's."""
    return f"{PROVIDER_ID_PREFIX}{visitor_id}:{client_id}"


def message_frame(message: Message) -> dict:
    """What the visitor sees of a message. Reads message.author.user and message.attachments."""
    inbound = message.direction == Direction.INBOUND
    provider_id = message.provider_message_id or ""
    return {
        "id": message.public_id,
        "client_id": provider_id.rsplit(":", 1)[-1] if inbound and provider_id.startswith(PROVIDER_ID_PREFIX) else None,
        "from": "visitor" if inbound else "agent",
        "author": "" if inbound else ((message.author and message.author.user.first_name) or "Agent"),
        "body": message.body,
        "at": message.created_at.isoformat(),
        "attachments": [
            {"name": attachment.filename, "type": attachment.content_type, "size": attachment.size}
            for attachment in message.attachments.all()
        ],
    }


def error_frame(code: str, detail: str, client_id: str | None = None) -> dict:
    return {"type": "error", "code": code, "detail": detail, "id": client_id}
