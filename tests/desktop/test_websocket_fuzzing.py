"""Hostile frames on every websocket route, over the real channels-redis layer: the consumer never
raises, stores nothing for a frame it refuses, and the socket keeps working for the next valid frame.

The routes' contracts differ. The member socket (desktop) talks to our own page only, so a frame it
cannot use is dropped without an answer (desktop.js would swap any answer in as HTML); what is checked
is that it stays open and still answers a resume and delivers pushes. The webchat socket talks to
other websites' widgets, so every frame gets an answer: an error frame with a code and a reason for
anything it refuses. A route missing here fails the first test.
"""

import itertools
import json
from urllib.parse import quote

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels_inbound.webchat.consumers import CLOSE_REFUSED
from contactcenter import realtime
from contactcenter.asgi import application
from contactcenter.routing import websocket_urlpatterns
from contactcenter.tenancy import tenant_context
from conversations.models import Conversation
from tasks.models import Queue
from tests.channels_inbound.test_webchat import ACME_KEY, ACME_SITE, make_widget, open_socket
from tests.contactcenter.test_form_fuzzing import row_counts
from tests.contactcenter.test_realtime import connect
from tests.tasks.routing_helpers import make_agent, waiting_task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_sync_thread_connections")]

FUZZED_ROUTES = {"ws-member", "ws-webchat"}
MARKERS = itertools.count(1)
FUZZ = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Frames that are not JSON objects at all, or JSON no protocol of ours expects.
NOT_AN_OBJECT = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40),
    st.sampled_from(["", "null", "[]", "1e999", "-1", '"resume"', "{", '{"resume": ', "[" * 100_000 + "]" * 100_000,
                     "[" * 7_999 + "]" * 7_999, '{"a": ' * 5_000 + "1" + "}" * 5_000, "\x00", "💥" * 1000, "x" * 70_000]),
)  # fmt: skip
NUMBERS = st.one_of(st.integers(), st.floats(allow_nan=False), st.sampled_from([10**30, -(10**30), -1, 0]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=30))
ANY_JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)  # fmt: skip


def test_every_websocket_route_is_fuzzed():
    assert {route.name for route in websocket_urlpatterns} == FUZZED_ROUTES


def send(socket, frame: str | bytes):
    """One frame as the server hands it over; empty frames too (send_to refuses those)."""
    return socket.send_input({"type": "websocket.receive", "bytes" if isinstance(frame, bytes) else "text": frame})


# --- the member socket ---------------------------------------------------------------------------


@pytest.fixture
def desk(acme, globex, support, agent):
    """acme-agent1 holding a conversation, the epoch of their event log, and globex's conversation."""
    with tenant_context(acme):
        task = waiting_task(support)
        held = Conversation.objects.get(pk=task.conversation_id)
        epoch = realtime.member_event_start(acme.pk, agent.pk).split(":")[0]
    with tenant_context(globex):
        globex_queue = Queue.objects.create(tenant=globex, name="Globex", channels=["sms"])
        make_agent(globex, "globex-agent1", [globex_queue])
        globex_conversation = Conversation.objects.get(pk=waiting_task(globex_queue).conversation_id)
    return held, epoch, globex_conversation.public_id


def member_frames(epoch: str, globex_id: str) -> st.SearchStrategy:
    """Desktop frames: the right keys with the wrong values (resume numbers huge, negative, not
    digits, in our epoch and others; ids of nothing or of globex's conversation), and junk."""
    ids = st.sampled_from([globex_id, "x" * 12, "../x", "", "a" * 65, "💥"])
    resume = st.one_of(
        SCALARS,
        st.sampled_from([f"{epoch}:{n}" for n in ("-1", "99999999999999999999999", "²", "١٢", "1.5", " 1", "", "0x1")]),
        st.sampled_from(["deadbeef:-5", ":", "::::", "x" * 1000, "\x00:\x00"]),
    )
    request = st.fixed_dictionaries(
        {},
        optional={
            "resume": resume, "open": st.one_of(SCALARS, st.lists(st.one_of(ids, SCALARS), max_size=4), ids),
            "viewing": st.one_of(ids, SCALARS), "typing": SCALARS, "subscribe": st.sampled_from(["tenant-2", "*"]),
        },
    ).map(json.dumps)  # fmt: skip
    return st.one_of(NOT_AN_OBJECT, request, ANY_JSON.map(json.dumps))


async def receive_until(socket, needle: str) -> str:
    while True:
        frame = await socket.receive_from(timeout=5)
        if needle in frame:
            return frame


@FUZZ
@given(data=st.data())
async def test_no_frame_crashes_the_member_socket_or_stores_anything(desk, acme, agent, data):
    held, epoch, globex_id = desk
    frames = data.draw(st.lists(member_frames(epoch, globex_id), min_size=1, max_size=4), label="frames")
    before = await sync_to_async(row_counts)()
    socket, connected, _ = await connect(agent.user)
    assert connected
    try:
        for frame in frames:
            await send(socket, frame)
        # Then what the page sends, and a push: both must still be served (an exception raised in the
        # consumer is raised here by the communicator).
        await send(socket, json.dumps({"resume": "deadbeef:41", "open": [held.public_id]}))
        html = f'<div id="fuzz-marker-{next(MARKERS)}"></div>'
        group = realtime.agent_group(acme.pk, agent.pk)
        await get_channel_layer().group_send(group, {"type": "realtime.event", "event": "fuzz", "html": html})
        await receive_until(socket, html)
        await socket.receive_nothing(timeout=0.1)
    finally:
        await socket.disconnect()
    assert await sync_to_async(row_counts)() == before


async def test_a_valid_resume_after_garbage_still_redraws_the_screen(desk, agent):
    """The control for the fuzz above: its last valid frame really is answered (with a fresh socket)."""
    held, _, _ = desk
    socket, _, _ = await connect(agent.user)
    try:
        for frame in (b"\x00\x01", "", "{", "[" * 100_000 + "]" * 100_000, '{"resume": 5, "open": null}'):
            await send(socket, frame)
        await send(socket, json.dumps({"resume": "deadbeef:41", "open": [held.public_id]}))
        redraw = await receive_until(socket, 'id="task-list"')
        assert f'id="conv-{held.public_id}-history"' in redraw
    finally:
        await socket.disconnect()


# --- the webchat socket --------------------------------------------------------------------------


def visitor_frames() -> st.SearchStrategy:
    """Widget frames: hello and message with wrong ids, bodies and tokens, unknown types, and junk."""
    client_ids = st.one_of(SCALARS, st.sampled_from(["client-0001", "short", "x" * 65, "bad id!", "\x00" * 10]))
    bodies = st.one_of(SCALARS, st.sampled_from(["", "   ", "x" * 4_001, "\x00", "hello\x00there", "💥"]))
    frame = st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(["hello", "message", "subscribe", "HELLO", ""]), SCALARS)},
        optional={"id": client_ids, "body": bodies, "visitor": st.one_of(SCALARS, st.just("forged:token"))},
    ).map(json.dumps)
    return st.one_of(NOT_AN_OBJECT, frame, ANY_JSON.map(json.dumps))


async def next_answer(socket) -> dict:
    """The next frame that answers the visitor (place-in-line pushes may arrive in between)."""
    while True:
        answer = await socket.receive_json_from(timeout=5)
        if answer["type"] != "queue":
            return answer


@pytest.fixture
def widget(acme):
    return make_widget(acme, ACME_KEY, ACME_SITE)


@FUZZ
@given(frames=st.lists(visitor_frames(), min_size=1, max_size=4))
async def test_every_visitor_frame_is_answered_and_a_refused_one_stores_nothing(widget, frames):
    counter = next(MARKERS)
    before = await sync_to_async(row_counts)(("InboundEvent",))  # refused messages are logged on purpose
    socket, connected = await open_socket()
    assert connected
    try:
        greeted, stored = False, False
        for frame in frames:
            await send(socket, frame)
            answer = await next_answer(socket)
            assert answer["type"] in ("error", "welcome", "message"), answer
            if answer["type"] == "error":
                assert answer["code"] and answer["detail"], answer
            greeted |= answer["type"] == "welcome"
            stored |= answer["type"] == "message"
        if not stored:
            assert await sync_to_async(row_counts)(("InboundEvent",)) == before, frames
        if not greeted:
            await socket.send_json_to({"type": "hello", "visitor": None})
            assert (await next_answer(socket))["type"] == "welcome"
        await socket.send_json_to({"type": "message", "id": f"after-fuzz-{counter:04d}", "body": "Still here"})
        assert (await next_answer(socket))["message"]["body"] == "Still here"
    finally:
        await socket.disconnect()


@FUZZ
@given(
    key=st.one_of(st.text(max_size=30), st.just(ACME_KEY)), origin=st.one_of(st.text(max_size=30), st.just(ACME_SITE))
)
async def test_a_handshake_with_any_key_or_origin_is_accepted_or_refused_with_4403(widget, key, origin):
    socket = WebsocketCommunicator(
        application, "/ws/webchat/?key=" + quote(key), headers=[(b"origin", origin.encode())]
    )
    connected, code = await socket.connect(timeout=5)
    assert connected == (key == ACME_KEY and origin == ACME_SITE) and (connected or code == CLOSE_REFUSED), code
    await socket.disconnect()


async def test_a_resume_number_with_unicode_digits_is_a_gap_not_a_crash(desk, agent):
    """'²' is a digit to str.isdigit() but not to int(): the number names nothing, so the screen is redrawn."""
    held, epoch, _ = desk
    socket, _, _ = await connect(agent.user)
    try:
        await send(socket, json.dumps({"resume": f"{epoch}:²", "open": [held.public_id]}))
        redraw = await receive_until(socket, 'id="task-list"')
        assert f'id="conv-{held.public_id}-history"' in redraw
    finally:
        await socket.disconnect()
