"""The desktop's websocket over the real channels-redis layer: pushes arrive as this agent's fragments,
numbered; a reconnecting browser gets exactly what it missed; no fragment crosses tenants."""

import json
import re

import pytest
from asgiref.sync import sync_to_async

from contactcenter import realtime
from contactcenter.tenancy import tenant_context
from conversations.models import Conversation
from conversations.services import conversation_assign, message_append_inbound
from tasks.services import routing_run
from tests.contactcenter.test_realtime import connect
from tests.tasks.routing_helpers import only_offer, waiting_task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_sync_thread_connections")]

SEQ = re.compile(r'data-desktop-seq="([^"]+)"')


async def receive_until(socket, needle: str, timeout: float = 5) -> str:
    while True:
        frame = await socket.receive_from(timeout=timeout)
        if needle in frame:
            return frame


def offer_work(acme, support):
    with tenant_context(acme):
        task = waiting_task(support)
        routing_run(tenant_id=acme.pk)
        return only_offer(task)


def held_conversation(acme, support, agent) -> Conversation:
    with tenant_context(acme):
        task = waiting_task(support)
        conversation = Conversation.objects.get(pk=task.conversation_id)
        conversation_assign(conversation=conversation, agent=agent, actor=agent)
        return conversation


def customer_writes(acme, conversation, body: str, sid: str):
    with tenant_context(acme):
        message_append_inbound(conversation=conversation, body=body, provider_message_id=sid)


async def test_an_offer_arrives_as_numbered_fragments_and_never_on_another_tenants_socket(
    acme, support, agent, globex_agent
):
    acme_socket, connected, _ = await connect(agent.user)
    assert connected
    globex_socket, connected, _ = await connect(globex_agent.user)
    assert connected
    try:
        offer = await sync_to_async(offer_work)(acme, support)
        frame = await receive_until(acme_socket, f'id="offer-{offer.public_id}"')
        assert SEQ.search(frame) and 'id="task-list"' in frame and 'hx-swap-oob="true"' in frame
        assert await globex_socket.receive_nothing(timeout=1)
    finally:
        await acme_socket.disconnect()
        await globex_socket.disconnect()


async def test_a_reconnecting_browser_gets_the_messages_it_missed_and_only_those(acme, support, agent):
    conversation = await sync_to_async(held_conversation)(acme, support, agent)
    socket, _, _ = await connect(agent.user)
    await sync_to_async(customer_writes)(acme, conversation, "seen live", "sid-live")
    frame = await receive_until(socket, "seen live")
    position = SEQ.search(frame).group(1)
    await socket.disconnect()

    await sync_to_async(customer_writes)(acme, conversation, "sent while away", "sid-away")
    socket, _, _ = await connect(agent.user)
    try:
        await socket.send_to(text_data=json.dumps({"resume": position, "open": [conversation.public_id]}))
        caught_up = await receive_until(socket, "sent while away")
        assert f'id="conv-{conversation.public_id}-history"' in caught_up  # redrawn in place, draft untouched
        assert f'id="conv-{conversation.public_id}-composer"' not in caught_up
        newest = SEQ.search(caught_up).group(1)
        assert newest.split(":")[0] == position.split(":")[0] and int(newest.split(":")[1]) > int(
            position.split(":")[1]
        )
        await socket.send_to(text_data=json.dumps({"resume": newest, "open": [conversation.public_id]}))
        assert await socket.receive_nothing(timeout=1)  # nothing missed: nothing sent
    finally:
        await socket.disconnect()


async def test_a_number_from_a_lost_event_log_redraws_the_whole_screen(acme, support, agent):
    conversation = await sync_to_async(held_conversation)(acme, support, agent)
    socket, _, _ = await connect(agent.user)
    try:
        # As after a Redis restart: the browser's number names an epoch the log no longer has.
        await socket.send_to(text_data=json.dumps({"resume": "deadbeef:41", "open": [conversation.public_id]}))
        redraw = await receive_until(socket, 'id="task-list"')
        assert 'id="agent-bar"' in redraw and f'id="conv-{conversation.public_id}-history"' in redraw
        assert SEQ.search(redraw)
    finally:
        await socket.disconnect()


async def test_the_event_log_refuses_a_gap_it_no_longer_holds(acme, agent, monkeypatch):
    monkeypatch.setattr(realtime, "MEMBER_EVENT_LOG_SIZE", 3)

    def push_many():
        for n in range(6):
            realtime._member_log_append(realtime.agent_group(acme.pk, agent.pk), {"event": "x", "data": {"n": n}})

    await sync_to_async(push_many)()
    latest = await sync_to_async(realtime.member_event_position)(acme.pk, agent.pk)
    epoch, n = latest.split(":")
    events = await sync_to_async(realtime.member_events_after)(acme.pk, agent.pk, f"{epoch}:{int(n) - 2}")
    assert [event["data"]["n"] for event in events] == [4, 5]
    assert await sync_to_async(realtime.member_events_after)(acme.pk, agent.pk, f"{epoch}:{int(n) - 5}") is None


async def test_a_teammate_with_the_same_conversation_open_sees_who_is_typing(acme, support, agent, teammate):
    conversation = await sync_to_async(held_conversation)(acme, support, agent)
    mine, _, _ = await connect(agent.user)
    theirs, _, _ = await connect(teammate.user)
    try:
        for socket in (mine, theirs):
            await socket.send_to(text_data=json.dumps({"resume": "", "open": [conversation.public_id]}))
        await theirs.send_to(text_data=json.dumps({"viewing": conversation.public_id, "typing": True}))
        hint = await receive_until(mine, f'id="conv-{conversation.public_id}-viewers"')
        assert "Agent2 is typing…" in hint
        told_them = []
        while not await theirs.receive_nothing(timeout=0.5):
            told_them.append(await theirs.receive_from())
        assert not [frame for frame in told_them if "-viewers" in frame]  # not told about themselves
    finally:
        await mine.disconnect()
        await theirs.disconnect()


async def test_a_supervisors_open_wallboard_is_told_to_refresh_when_the_floor_changes(
    acme, support, agent, acme_supervisor
):
    from tasks.models import AgentStatus
    from tasks.services import agent_set_status

    socket, connected, _ = await connect(acme_supervisor.user)
    assert connected

    def agent_leaves():
        with tenant_context(acme):
            from tasks.models import BreakReason

            reason = BreakReason.objects.create(tenant=acme, name="Lunch")
            agent_set_status(membership=agent, status=AgentStatus.UNAVAILABLE, break_reason=reason)

    try:
        await sync_to_async(agent_leaves)()
        poke = await receive_until(socket, 'id="wallboard-poke"')
        assert 'hx-get="/supervisor/board/"' in poke and 'hx-target="#wallboard"' in poke
    finally:
        await socket.disconnect()
