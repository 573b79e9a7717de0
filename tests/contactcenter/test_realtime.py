"""The member websocket and the realtime choke point, over the real channels-redis layer."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import transaction
from django.test import Client

from contactcenter import realtime
from contactcenter.asgi import application
from contactcenter.consumers import CLOSE_NOT_A_MEMBER

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_sync_thread_connections")]

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def session_cookie_for(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def connect(user=None, origin=ORIGIN):
    headers = [origin] if origin else []
    if user is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie_for)(user)))
    communicator = WebsocketCommunicator(application, "/ws/member/", headers=headers)
    connected, close_code = await communicator.connect(timeout=5)
    return communicator, connected, close_code


def push_in_transaction(push, *args, **kwargs):
    with transaction.atomic():
        push(*args, **kwargs)


async def test_anonymous_connection_is_refused(acme_agent):
    communicator, connected, _ = await connect(user=None)
    assert not connected
    await communicator.disconnect()


async def test_connection_from_a_foreign_origin_is_refused(acme_agent):
    communicator, connected, _ = await connect(acme_agent.user, origin=(b"origin", b"https://evil.example"))
    assert not connected
    await communicator.disconnect()


async def test_user_without_membership_is_refused(db):
    from django.contrib.auth import get_user_model

    loner = await sync_to_async(get_user_model().objects.create_user)(username="loner", password="x" * 12)
    communicator, connected, close_code = await connect(loner)
    assert not connected
    assert close_code == CLOSE_NOT_A_MEMBER
    await communicator.disconnect()


async def test_member_receives_pushes_to_their_own_group_only(acme_agent, acme_agent2, globex_agent):
    acme_socket, connected, _ = await connect(acme_agent.user)
    assert connected
    globex_socket, connected, _ = await connect(globex_agent.user)
    assert connected
    try:
        # To acme_agent personally: only their socket gets it.
        await sync_to_async(push_in_transaction)(
            realtime.push_to_member, acme_agent.tenant_id, acme_agent.pk, event="offer", html="<div id='offer-1'>x</div>"
        )
        assert await acme_socket.receive_from(timeout=5) == "<div id='offer-1'>x</div>"

        # To the whole globex tenant: the acme socket must stay silent.
        await sync_to_async(push_in_transaction)(
            realtime.push_to_tenant, globex_agent.tenant_id, event="queue", data={"waiting": 3}
        )
        assert await globex_socket.receive_json_from(timeout=5) == {"event": "queue", "data": {"waiting": 3}}
        assert await acme_socket.receive_nothing(timeout=0.5)

        # A push to acme_agent2's group never reaches acme_agent.
        await sync_to_async(push_in_transaction)(
            realtime.push_to_member, acme_agent2.tenant_id, acme_agent2.pk, event="offer", data={}
        )
        assert await acme_socket.receive_nothing(timeout=0.5)
        assert await globex_socket.receive_nothing(timeout=0.2)
    finally:
        await acme_socket.disconnect()
        await globex_socket.disconnect()


async def test_a_group_name_of_one_tenant_never_collides_with_another():
    # Group names are derived from the tenant id: even an agent with the same membership id in
    # another tenant lives in a different group.
    assert realtime.agent_group(1, 7) != realtime.agent_group(2, 7)
    assert realtime.agent_group(1, 7).startswith(realtime.tenant_group(1) + ".")
    assert realtime.supervisors_group(2).startswith(realtime.tenant_group(2) + ".")
    assert not realtime.agent_group(11, 1).startswith(realtime.tenant_group(1) + ".")


async def test_push_is_sent_on_commit_and_dropped_on_rollback(acme_agent):
    socket, connected, _ = await connect(acme_agent.user)
    assert connected
    try:

        def push_then_roll_back():
            try:
                with transaction.atomic():
                    realtime.push_to_member(acme_agent.tenant_id, acme_agent.pk, event="offer", html="<p>never</p>")
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass

        await sync_to_async(push_then_roll_back)()
        assert await socket.receive_nothing(timeout=0.5)

        await sync_to_async(push_in_transaction)(
            realtime.push_to_member, acme_agent.tenant_id, acme_agent.pk, event="offer", html="<p>committed</p>"
        )
        assert await socket.receive_from(timeout=5) == "<p>committed</p>"
    finally:
        await socket.disconnect()


async def test_supervisors_group_reaches_supervisors_not_agents(acme_agent, acme_supervisor):
    agent_socket, _, _ = await connect(acme_agent.user)
    supervisor_socket, _, _ = await connect(acme_supervisor.user)
    try:
        await sync_to_async(push_in_transaction)(
            realtime.push_to_supervisors, acme_supervisor.tenant_id, event="wallboard", data={"waiting": 1}
        )
        assert (await supervisor_socket.receive_json_from(timeout=5))["event"] == "wallboard"
        assert await agent_socket.receive_nothing(timeout=0.5)
    finally:
        await agent_socket.disconnect()
        await supervisor_socket.disconnect()


async def test_the_layer_is_channels_redis():
    # The isolation tests above mean nothing on the in-memory layer, which has one process only.
    layer = get_channel_layer()
    assert type(layer).__module__.startswith("channels_redis")
    await asyncio.sleep(0)


async def test_an_idle_socket_still_receives_pushes(acme_agent):
    # An agent's tab sits quiet for minutes between events. Longer than channels-redis's 5-second
    # blocking read, so a Redis client timing out reads at the same moment would drop the socket.
    socket, connected, _ = await connect(acme_agent.user)
    assert connected
    try:
        await asyncio.sleep(7)
        await sync_to_async(push_in_transaction)(
            realtime.push_to_member, acme_agent.tenant_id, acme_agent.pk, event="offer", html="<p>after a quiet spell</p>"
        )
        assert await socket.receive_from(timeout=5) == "<p>after a quiet spell</p>"
    finally:
        await socket.disconnect()
