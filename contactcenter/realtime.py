"""The one way anything reaches a browser live.

Group names are built here and nowhere else, and every one starts with the tenant: callers give a
tenant id and an audience, never a raw group name, so no caller can address another tenant's
browsers by accident. Pushes are sent after the surrounding transaction commits (and dropped if it
rolls back), so a browser never shows a change the database does not have. Only services call the
`push_*` functions; consumers call the `*_group` functions to join.
"""

import asyncio
import functools
import json
import logging
import os
import re
import secrets
import threading

import redis
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers, get_channel_layer
from django.conf import settings
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


def push_to_member(
    tenant_id: int,
    membership_id: int,
    *,
    event: str,
    html: str = "",
    data: dict | None = None,
) -> None:
    """An event for one member's browsers, numbered in their event log (see member_events_after)."""
    message = {"type": EVENT_TYPE, "event": event, "html": html, "data": data or {}}
    group = agent_group(tenant_id, membership_id)

    def send_numbered():
        try:
            message["seq"] = _member_log_append(group, message)
        except redis.RedisError:
            logger.exception(
                "could not number the event for %s; the browser resyncs on reconnect",
                group,
            )
        _send(group, message)

    transaction.on_commit(send_numbered)


def push_to_members(tenant_id: int, data_by_member: dict[int, dict], *, event: str) -> None:
    """One event for each of several members (its own `data` each), numbered in their event logs as
    push_to_member numbers it, at the cost of about one push: the numbers are taken in one Redis
    pipeline and the sends go out together. A routing run tells every agent it offered work this way
    (a push each, on commit, was a round trip to Redis per agent)."""
    if not data_by_member:
        return
    messages = {
        agent_group(tenant_id, member_id): {"type": EVENT_TYPE, "event": event, "html": "", "data": data or {}}
        for member_id, data in data_by_member.items()
    }

    def send_numbered():
        try:
            for message, seq in zip(messages.values(), _member_log_append_many(messages), strict=True):
                message["seq"] = seq
        except redis.RedisError:
            logger.exception("could not number the events for %s; the browsers resync on reconnect", list(messages))
        _send_many(messages)

    transaction.on_commit(send_numbered)


def push_to_supervisors(tenant_id: int, *, event: str, html: str = "", data: dict | None = None) -> None:
    _push_on_commit(supervisors_group(tenant_id), event=event, html=html, data=data)


def push_to_tenant(tenant_id: int, *, event: str, html: str = "", data: dict | None = None) -> None:
    _push_on_commit(tenant_group(tenant_id), event=event, html=html, data=data)


def push_to_webchat_visitor(tenant_id: int, visitor_public_id: str, *, event: str, data: dict) -> None:
    """A JSON event (`{"type": event, **data}` on the visitor's socket) to one webchat visitor."""
    _push_on_commit(
        webchat_visitor_group(tenant_id, visitor_public_id),
        event=event,
        html="",
        data=data,
    )


def _push_on_commit(group: str, *, event: str, html: str, data: dict | None) -> None:
    message = {"type": EVENT_TYPE, "event": event, "html": html, "data": data or {}}
    transaction.on_commit(lambda: _send(group, message))


def _send(group: str, message: dict) -> None:
    # A push is a notification, not the record: the database already holds the change, and a
    # reconnecting browser catches up from it. So a Redis hiccup is logged, never raised into
    # the code that committed.
    try:
        layer, loop = _push_layer_and_loop()
        asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop).result(timeout=PUSH_TIMEOUT_SECONDS)
    except Exception:
        logger.exception("realtime push to %s failed", group)


def _send_many(messages: dict[str, dict]) -> None:
    """_send for several groups at once: one hop to the push loop, the group sends concurrent."""
    try:
        layer, loop = _push_layer_and_loop()

        async def send_all():
            return await asyncio.gather(
                *(layer.group_send(group, message) for group, message in messages.items()), return_exceptions=True
            )

        outcomes = asyncio.run_coroutine_threadsafe(send_all(), loop).result(timeout=PUSH_TIMEOUT_SECONDS)
    except Exception:
        logger.exception("realtime push to %s failed", list(messages))
        return
    for group, outcome in zip(messages, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            logger.error("realtime push to %s failed", group, exc_info=outcome)


PUSH_TIMEOUT_SECONDS = 5
_pushers: dict[int, tuple[asyncio.AbstractEventLoop, object, object]] = {}
_pushers_lock = threading.Lock()


def _push_layer_and_loop():
    """This process's channel layer and event loop for pushes made from sync code (the loop runs on a
    thread of its own).

    async_to_sync ran every push in a new event loop, and channels-redis keeps its Redis connections
    per loop, so each push opened and closed a connection: ~5 ms a push, most of a routing run's
    time (bench/README.md, routing). One long-lived loop reuses them (~0.3 ms). The layer is an
    instance of our own, made from the same settings as the shared one (and made again when that one
    is replaced, as tests do), so nobody closes its connections from another loop. Keyed by process
    id: a forked Celery worker starts its own instead of inheriting a loop whose thread did not fork.
    """
    shared = get_channel_layer()
    with _pushers_lock:
        loop, layer, made_for = _pushers.get(os.getpid(), (None, None, None))
        if loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="realtime-push", daemon=True).start()
        if made_for is not shared:
            if hasattr(layer, "close_pools"):  # the replaced one's connections live on this loop
                asyncio.run_coroutine_threadsafe(layer.close_pools(), loop)
            layer, made_for = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER), shared
        _pushers[os.getpid()] = (loop, layer, made_for)
        return layer, loop


# --- the member event log: what a reconnecting browser missed -------------------------------------
#
# Every push to a member gets the next number of that member's sequence, and the last
# MEMBER_EVENT_LOG_SIZE events are kept in Redis. A browser remembers the last number it saw and,
# after any disconnect, asks for what came after it. A number is "<epoch>:<n>": the epoch is drawn
# when the log is first written, so after Redis loses the log (a restart) the browser's old number
# names an epoch that no longer exists and it is told to redraw everything instead of trusting a
# fresh count that happens to be higher.

MEMBER_EVENT_LOG_SIZE = 200
MEMBER_EVENT_LOG_SECONDS = 24 * 3600

_LOG_APPEND = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then epoch = ARGV[1]; redis.call('SET', KEYS[1], epoch, 'EX', ARGV[4]) end
local n = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[3], n, ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[3]) + 1))
redis.call('EXPIRE', KEYS[1], ARGV[4]); redis.call('EXPIRE', KEYS[2], ARGV[4]); redis.call('EXPIRE', KEYS[3], ARGV[4])
return {epoch, n}
"""


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, decode_responses=True)


def _log_keys(group: str) -> list[str]:
    prefix = f"{settings.CACHES['default'].get('KEY_PREFIX', 'switchboard')}:events:{group}"
    return [f"{prefix}:epoch", f"{prefix}:seq", f"{prefix}:log"]


def _member_log_append(group: str, message: dict) -> str:
    body = json.dumps({"event": message["event"], "data": message["data"]})
    epoch, n = _redis().eval(
        _LOG_APPEND,
        3,
        *_log_keys(group),
        secrets.token_hex(4),
        body,
        MEMBER_EVENT_LOG_SIZE,
        MEMBER_EVENT_LOG_SECONDS,
    )
    return f"{epoch}:{n}"


def _member_log_append_many(messages: dict[str, dict]) -> list[str]:
    """_member_log_append for several groups' messages in one pipeline (one round trip)."""
    pipe = _redis().pipeline(transaction=False)
    for group, message in messages.items():
        body = json.dumps({"event": message["event"], "data": message["data"]})
        pipe.eval(
            _LOG_APPEND,
            3,
            *_log_keys(group),
            secrets.token_hex(4),
            body,
            MEMBER_EVENT_LOG_SIZE,
            MEMBER_EVENT_LOG_SECONDS,
        )
    return [f"{epoch}:{n}" for epoch, n in pipe.execute()]


def member_event_position(tenant_id: int, membership_id: int) -> str:
    """The number of the member's latest event ("" when none is logged), for a page to start from."""
    epoch_key, seq_key, _ = _log_keys(agent_group(tenant_id, membership_id))
    epoch, n = _redis().mget(epoch_key, seq_key)
    return f"{epoch}:{n}" if epoch and n else ""


_LOG_START = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then epoch = ARGV[1]; redis.call('SET', KEYS[1], epoch, 'EX', ARGV[2]) end
redis.call('SET', KEYS[2], 0, 'NX', 'EX', ARGV[2])
return {epoch, redis.call('GET', KEYS[2])}
"""


def member_event_start(tenant_id: int, membership_id: int) -> str:
    """The number to give a browser that is redrawn now: the latest one, or, when nothing is logged
    (Redis lost the log), "<new epoch>:0". Without a number the browser would keep its old one, which
    names a lost epoch, and every resume (each 10 s) would redraw its screen again."""
    epoch_key, seq_key, _ = _log_keys(agent_group(tenant_id, membership_id))
    epoch, n = _redis().eval(_LOG_START, 2, epoch_key, seq_key, secrets.token_hex(4), MEMBER_EVENT_LOG_SECONDS)
    return f"{epoch}:{n}"


def member_events_after(tenant_id: int, membership_id: int, position: str) -> list[dict] | None:
    """The member's events after `position` ({"event", "data", "seq"}, oldest first), or None when
    the gap cannot be served (another epoch, or older than the log keeps): redraw everything then."""
    epoch_key, seq_key, log_key = _log_keys(agent_group(tenant_id, membership_id))
    epoch, _, after = position.partition(":")
    if not (after.isascii() and after.isdigit()):  # "²" is a digit to isdigit(), not to int()
        return None
    client = _redis()
    current_epoch, current = client.mget(epoch_key, seq_key)
    if current_epoch is None:
        # Nothing logged since Redis started: nothing to replay, but only an empty log is safe to trust
        # when the browser never saw a number either.
        return [] if not epoch else None
    if epoch != current_epoch or int(after) > int(current or 0):
        return None
    rows = client.zrangebyscore(log_key, f"({after}", "+inf", withscores=True)
    if int(current) > int(after) and (not rows or int(rows[0][1]) != int(after) + 1):
        return None
    return [{**json.loads(body), "seq": f"{epoch}:{int(score)}"} for body, score in rows]


# --- presence: who else has a conversation open -------------------------------------------------------------
#
# Ephemeral and best-effort, unlike everything above: not tied to a transaction, not numbered, not
# replayed. A browser says every few seconds which conversation it shows and whether its agent is
# typing; the others showing that conversation display it until it goes stale.

PRESENCE_TYPE = "desktop.presence"


async def presence_announce(
    channel_layer, tenant_id: int, *, member_id: int, name: str, conversation: str, typing: bool
):
    await channel_layer.group_send(
        tenant_group(tenant_id),
        {"type": PRESENCE_TYPE, "member": member_id, "name": name, "conversation": conversation, "typing": typing},
    )
