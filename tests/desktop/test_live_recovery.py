"""The desktop's socket after Redis lost everything (a restart empties groups and event logs): it joins
its groups again on the next resume, redraws once (not at every heartbeat), catches up a gap instead
of drawing past it, and closes with 1013 when the event log cannot be read (bench/drill_realtime.py
runs the same faults on real processes)."""

import json
import re
import socket as sockets

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import override_settings

from contactcenter import realtime
from contactcenter.tenancy import tenant_context
from conversations.models import Direction, Message
from tests.contactcenter.test_realtime import connect
from tests.desktop.test_live import SEQ, customer_writes, held_conversation, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_sync_thread_connections")]


def forget_member(acme, agent):
    """What a Redis restart does to this member: its groups and its event log are gone."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        layer_prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
        groups = [realtime.tenant_group(acme.pk), realtime.agent_group(acme.pk, agent.pk)]
        client.delete(*[f"{layer_prefix}:group:{group}" for group in groups])
        client.delete(*realtime._log_keys(realtime.agent_group(acme.pk, agent.pk)))
    finally:
        client.close()


async def resume(socket, position, conversation):
    await socket.send_to(text_data=json.dumps({"resume": position, "open": [conversation.public_id]}))


async def test_a_socket_that_outlived_a_redis_restart_gets_pushes_again_after_its_next_resume(acme, support, agent):
    conversation = await sync_to_async(held_conversation)(acme, support, agent)
    socket, _, _ = await connect(agent.user)
    try:
        await sync_to_async(customer_writes)(acme, conversation, "before the restart", "sid-before")
        position = SEQ.search(await receive_until(socket, "before the restart")).group(1)
        await sync_to_async(forget_member)(acme, agent)

        await sync_to_async(customer_writes)(acme, conversation, "during the gap", "sid-gap")
        assert await socket.receive_nothing(timeout=1)  # in no group any more: the push went nowhere

        await resume(socket, position, conversation)  # the 10 s heartbeat
        redraw = await receive_until(socket, "during the gap")  # the log lost its epoch: a redraw
        assert f'id="conv-{conversation.public_id}-history"' in redraw
        await sync_to_async(customer_writes)(acme, conversation, "after the resume", "sid-after")
        assert "after the resume" in await receive_until(socket, "after the resume")  # in its groups again
    finally:
        await socket.disconnect()


async def test_after_a_lost_event_log_the_screen_is_redrawn_once_not_at_every_heartbeat(acme, support, agent):
    conversation = await sync_to_async(held_conversation)(acme, support, agent)
    await sync_to_async(forget_member)(acme, agent)  # nothing logged since the restart
    socket, _, _ = await connect(agent.user)
    try:
        await resume(socket, "deadbeef:41", conversation)
        redraw = await receive_until(socket, 'id="task-list"')
        position = SEQ.search(redraw).group(1)  # a number in the new epoch, though nothing was pushed yet
        assert not position.startswith("deadbeef:")

        await resume(socket, position, conversation)  # the next heartbeat
        assert await socket.receive_nothing(timeout=1)
    finally:
        await socket.disconnect()


def log_a_lost_push(acme, agent, conversation, body):
    """A message whose push was numbered in the member's log but never reached the socket."""
    with tenant_context(acme):
        message = Message.objects.create(
            tenant=acme, conversation=conversation, direction=Direction.INBOUND, body=body, provider_message_id="lost"
        )
    realtime._member_log_append(
        realtime.agent_group(acme.pk, agent.pk),
        {"event": "message.new", "data": {"conversation": conversation.public_id, "message": message.public_id}},
    )


async def test_a_push_after_a_gap_catches_the_gap_up_instead_of_drawing_past_it(acme, support, agent):
    conversation = await sync_to_async(held_conversation)(acme, support, agent)
    socket, _, _ = await connect(agent.user)
    try:
        await sync_to_async(customer_writes)(acme, conversation, "seen", "sid-seen")
        position = SEQ.search(await receive_until(socket, "seen")).group(1)
        await resume(socket, position, conversation)
        assert await socket.receive_nothing(timeout=1)

        await sync_to_async(log_a_lost_push)(acme, agent, conversation, "lost on the way")
        await sync_to_async(customer_writes)(acme, conversation, "the next one", "sid-next")
        frame = await receive_until(socket, "the next one")
        assert "lost on the way" in frame  # the gap replayed with it (the history redrawn)
        epoch, n = position.split(":")
        assert SEQ.search(frame).group(1) == f"{epoch}:{int(n) + 2}"
    finally:
        await socket.disconnect()


def closed_port() -> int:
    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def unreachable_event_log():
    """The member event log's Redis stops answering (a closed port), the channel layer still does."""
    realtime._redis.cache_clear()
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0"):
        yield
    realtime._redis.cache_clear()


async def test_a_redis_error_while_resuming_closes_the_socket_to_be_tried_again(
    acme, support, agent, unreachable_event_log
):
    conversation = await sync_to_async(held_conversation)(acme, support, agent)
    socket, connected, _ = await connect(agent.user)
    assert connected
    try:
        await resume(socket, "deadbeef:1", conversation)
        closed = await socket.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 1013}
    finally:
        await socket.disconnect()


def store_without_a_push(acme, conversation, body):
    """A message committed by a process killed before its on-commit push: not in the event log."""
    with tenant_context(acme):
        return Message.objects.create(
            tenant=acme, conversation=conversation, direction=Direction.INBOUND, body=body, provider_message_id="crash"
        )


async def test_a_message_whose_push_was_never_numbered_is_drawn_at_the_next_resume(acme, support, agent):
    conversation = await sync_to_async(held_conversation)(acme, support, agent)
    socket, _, _ = await connect(agent.user)
    try:
        await sync_to_async(customer_writes)(acme, conversation, "seen", "sid-seen")
        frame = await receive_until(socket, "seen")
        position, newest = SEQ.search(frame).group(1), re.search(r'<article id="msg-([^"]+)"', frame).group(1)
        await sync_to_async(store_without_a_push)(acme, conversation, "stored, never pushed")

        request = {"resume": position, "open": [conversation.public_id], "shown": {conversation.public_id: newest}}
        await socket.send_to(text_data=json.dumps(request))
        redraw = await receive_until(socket, "stored, never pushed")
        assert f'id="conv-{conversation.public_id}-history"' in redraw
        request["shown"] = {conversation.public_id: re.findall(r'<article id="msg-([^"]+)"', redraw)[-1]}
        await socket.send_to(text_data=json.dumps(request))
        assert await socket.receive_nothing(timeout=1)  # the screen shows the newest: nothing to redraw
    finally:
        await socket.disconnect()
