"""The webchat widget's websocket and uploads: origin-checked, visitor-scoped, idempotent, tenant-isolated,
over the real channels-redis layer."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.db import transaction
from django.test import Client

from channels_inbound.models import Channel, ChannelEndpoint, InboundEvent, InboundOutcome, Provider
from channels_inbound.webchat.consumers import TokenBucket
from channels_inbound.webchat.protocol import MAX_BODY_CHARS, MAX_FRAME_CHARS
from channels_inbound.webchat.selectors import queue_position
from channels_inbound.webchat.services import webchat_queue_line_push
from channels_inbound.webchat.tokens import visitor_token_issue
from contactcenter import realtime
from contactcenter.asgi import application
from contactcenter.tenancy import dangerously_all_tenants, tenant_context
from conversations.models import (
    Attachment,
    AttachmentRestriction,
    ContactIdentity,
    Conversation,
    DeliveryStatus,
    Message,
)
from conversations.services import message_deliver, message_send_reply
from tasks.models import Queue, Task, TaskKind, TaskPriority, TaskStatus
from tasks.services import routing_run, task_claim, task_create, task_transition
from tests.conversations.conftest import GroupListener
from tests.tasks.routing_helpers import make_agent, waiting_task

pytestmark = pytest.mark.django_db(transaction=True)

ACME_SITE, GLOBEX_SITE = "https://shop.acme.example", "https://www.globex.example"
ACME_KEY, GLOBEX_KEY = "wk_acme_test_widget", "wk_globex_test_widget"
UPLOAD = "/webhooks/webchat/upload"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(40)


def make_widget(tenant, key, origins, **fields) -> ChannelEndpoint:
    with tenant_context(tenant):
        return ChannelEndpoint.objects.create(
            tenant=tenant, provider=Provider.WEBCHAT, channel=Channel.WEBCHAT, address=key, allowed_origins=origins,
            **fields,
        )  # fmt: skip


@pytest.fixture
def acme_widget(acme) -> ChannelEndpoint:
    return make_widget(acme, ACME_KEY, f"{ACME_SITE}\nhttp://localhost:3000")


@pytest.fixture
def globex_widget(globex) -> ChannelEndpoint:
    return make_widget(globex, GLOBEX_KEY, GLOBEX_SITE)


async def open_socket(key=ACME_KEY, origin=ACME_SITE):
    headers = [(b"origin", origin.encode())] if origin else []
    socket = WebsocketCommunicator(application, f"/ws/webchat/?key={key}", headers=headers)
    connected, _ = await socket.connect(timeout=5)
    return socket, connected


async def visitor(key=ACME_KEY, origin=ACME_SITE, token=None):
    """A greeted visitor's socket and the welcome frame."""
    socket, connected = await open_socket(key, origin)
    assert connected
    await socket.send_json_to({"type": "hello", "visitor": token})
    welcome = await socket.receive_json_from(timeout=5)
    assert welcome["type"] == "welcome"
    return socket, welcome


async def say(socket, body, client_id="client-message-0001") -> dict:
    await socket.send_json_to({"type": "message", "id": client_id, "body": body})
    return await socket.receive_json_from(timeout=5)


def messages_of(tenant) -> list[Message]:
    with tenant_context(tenant):
        return list(Message.objects.select_related("conversation__contact").order_by("created_at", "pk"))


def agent_replies(conversation, agent, body) -> Message:
    """What the agent desktop will do: reply, then the delivery job (run here, without Celery)."""
    with tenant_context(agent.tenant_id):
        message = message_send_reply(conversation=conversation, author=agent, body=body)
        message_deliver(message=Message.objects.select_related("conversation").get(pk=message.pk))
        return Message.objects.get(pk=message.pk)


# --- the handshake ----------------------------------------------------------------------------


@pytest.mark.usefixtures("close_sync_thread_connections")
async def test_an_unknown_or_inactive_widget_key_is_refused(acme_widget, acme):
    socket, connected = await open_socket(key="wk_no_such_widget")
    assert not connected
    await socket.disconnect()

    await sync_to_async(make_widget)(acme, "wk_switched_off", ACME_SITE, is_active=False)
    socket, connected = await open_socket(key="wk_switched_off")
    assert not connected
    await socket.disconnect()


@pytest.mark.usefixtures("close_sync_thread_connections")
async def test_only_the_endpoints_allowed_origins_may_open_the_socket(acme_widget, globex_widget):
    for origin in (GLOBEX_SITE, "http://127.0.0.1:8000", "https://shop.acme.example.evil.example", None):
        socket, connected = await open_socket(origin=origin)
        assert not connected, origin
        await socket.disconnect()
    for origin in (ACME_SITE, "http://localhost:3000", "HTTPS://SHOP.ACME.EXAMPLE"):
        socket, connected = await open_socket(origin=origin)
        assert connected, origin
        await socket.disconnect()


# --- visitor messages -------------------------------------------------------------------------


@pytest.mark.usefixtures("close_sync_thread_connections")
async def test_a_visitor_message_is_stored_once_in_the_widgets_tenant(acme_widget, globex_widget, acme, globex):
    socket, welcome = await visitor()
    assert welcome["messages"] == [] and welcome["queue_position"] is None and welcome["visitor"]
    try:
        first = await say(socket, "Hi, is my order shipped? 📦", client_id="resend-me-0001")
        again = await say(socket, "Hi, is my order shipped? 📦", client_id="resend-me-0001")  # after a flaky connection
    finally:
        await socket.disconnect()

    assert first["type"] == again["type"] == "message"
    assert first["message"]["id"] == again["message"]["id"]
    assert first["message"] | {"at": None} == {
        "id": first["message"]["id"], "client_id": "resend-me-0001", "from": "visitor", "author": "",
        "body": "Hi, is my order shipped? 📦", "at": None, "attachments": [],
    }  # fmt: skip
    [message] = await sync_to_async(messages_of)(acme)
    assert message.body == "Hi, is my order shipped? 📦"
    assert message.conversation.channel == "webchat"
    assert await sync_to_async(messages_of)(globex) == []

    def identities_and_events():
        with tenant_context(acme):
            identities = list(ContactIdentity.objects.values_list("kind", "contact_id"))
            outcomes = list(InboundEvent.objects.order_by("received_at", "pk").values_list("kind", "outcome", "body"))
        return identities, outcomes

    identities, outcomes = await sync_to_async(identities_and_events)()
    assert identities == [("webchat", message.conversation.contact_id)]
    assert [(kind, outcome) for kind, outcome, _ in outcomes] == [("message", "stored"), ("message", "duplicate")]
    assert outcomes[0][2]["body"] == "Hi, is my order shipped? 📦"
    assert welcome["visitor"] not in json.dumps(outcomes[0][2])  # the token is a credential: never logged


@pytest.mark.usefixtures("close_sync_thread_connections")
async def test_a_reload_with_the_visitor_token_shows_the_history(acme_widget):
    socket, welcome = await visitor()
    await say(socket, "First question", client_id="history-0001")
    await say(socket, "Second question", client_id="history-0002")
    await socket.disconnect()

    socket, again = await visitor(token=welcome["visitor"])
    await socket.disconnect()
    assert again["visitor"] == welcome["visitor"]
    assert [(m["from"], m["body"], m["client_id"]) for m in again["messages"]] == [
        ("visitor", "First question", "history-0001"),
        ("visitor", "Second question", "history-0002"),
    ]

    socket, stranger = await visitor()  # no token: a new visitor, who sees nothing
    await socket.disconnect()
    assert stranger["messages"] == [] and stranger["visitor"] != welcome["visitor"]


@pytest.mark.usefixtures("close_sync_thread_connections")
async def test_an_agent_reply_reaches_the_visitors_socket_live(acme_widget, acme, acme_agent):
    socket, _ = await visitor()
    try:
        stored = await say(socket, "Can someone help?")
        conversation = (await sync_to_async(messages_of)(acme))[0].conversation
        reply = await sync_to_async(agent_replies)(conversation, acme_agent, "Hello! Alex here.")
        pushed = await socket.receive_json_from(timeout=5)
    finally:
        await socket.disconnect()

    assert reply.delivery_status == DeliveryStatus.SENT and reply.provider_message_id == f"webchat:{reply.public_id}"
    assert pushed["type"] == "message"
    assert pushed["message"] | {"at": None} == {
        "id": reply.public_id, "client_id": None, "from": "agent", "author": "Agent1", "body": "Hello! Alex here.",
        "at": None, "attachments": [],
    }  # fmt: skip
    assert pushed["message"]["id"] != stored["message"]["id"]

    socket, welcome = await visitor(token=None)  # a stranger's socket never sees it
    await socket.disconnect()
    assert welcome["messages"] == []


@pytest.mark.usefixtures("close_sync_thread_connections")
async def test_a_reply_queued_but_not_yet_delivered_is_not_in_the_history(acme_widget, acme, acme_agent):
    socket, welcome = await visitor()
    await say(socket, "Hello?")
    await socket.disconnect()

    def reply_without_delivery():
        conversation = messages_of(acme)[0].conversation
        with tenant_context(acme):
            message_send_reply(conversation=conversation, author=acme_agent, body="Typing…")

    await sync_to_async(reply_without_delivery)()
    socket, again = await visitor(token=welcome["visitor"])
    await socket.disconnect()
    assert [m["body"] for m in again["messages"]] == ["Hello?"]


@pytest.mark.usefixtures("close_sync_thread_connections")
async def test_acme_visitors_never_receive_globex_pushes_nor_reach_globex_conversations(
    acme_widget, globex_widget, acme, globex, globex_agent
):  # fmt: skip
    acme_socket, acme_welcome = await visitor()
    globex_socket, globex_welcome = await visitor(key=GLOBEX_KEY, origin=GLOBEX_SITE)
    try:
        await say(globex_socket, "Globex secret order 42")
        globex_conversation = (await sync_to_async(messages_of)(globex))[0].conversation
        await sync_to_async(agent_replies)(globex_conversation, globex_agent, "For globex eyes only")
        assert (await globex_socket.receive_json_from(timeout=5))["message"]["body"] == "For globex eyes only"
        assert await acme_socket.receive_nothing(timeout=0.5)
    finally:
        await acme_socket.disconnect()
        await globex_socket.disconnect()

    # Globex's visitor token presented to acme's widget proves nothing there: a new visitor, no history.
    socket, welcome = await visitor(token=globex_welcome["visitor"])
    try:
        assert welcome["messages"] == [] and welcome["visitor"] != globex_welcome["visitor"]
        await say(socket, "Trying to join globex's chat")
    finally:
        await socket.disconnect()
    acme_messages = await sync_to_async(messages_of)(acme)
    assert [m.body for m in acme_messages] == ["Trying to join globex's chat"]
    assert [m.body for m in await sync_to_async(messages_of)(globex)] == ["Globex secret order 42", "For globex eyes only"]
    assert acme_messages[0].conversation.contact_id != globex_conversation.contact_id
    # Even the same visitor id lives in a different group in each tenant.
    visitor_id = "a" * 22
    assert realtime.webchat_visitor_group(acme.pk, visitor_id) != realtime.webchat_visitor_group(globex.pk, visitor_id)
    assert acme_welcome["visitor"] != globex_welcome["visitor"]


# --- malformed and abusive frames ------------------------------------------------------------


async def answers_to(socket, frames: dict) -> dict:
    answers = {}
    for name, raw in frames.items():
        await socket.send_to(**({"bytes_data": raw} if isinstance(raw, bytes) else {"text_data": raw}))
        answers[name] = await socket.receive_json_from(timeout=5)
    return answers


@pytest.mark.usefixtures("close_sync_thread_connections")
async def test_malformed_frames_get_error_frames_and_the_socket_stays_open(acme_widget, acme):
    socket, connected = await open_socket()
    assert connected
    try:
        answers = await answers_to(socket, {
            "message before hello": json.dumps({"type": "message", "id": "too-early-0001", "body": "hi"}),
            "forged token": json.dumps({"type": "hello", "visitor": "forged:token"}),
            "not json": "{'type': 'message'",
            "not an object": "[1, 2, 3]",
            "unknown type": json.dumps({"type": "subscribe", "group": "tenant-1"}),
            "binary": b"\x00\x01",
        })  # fmt: skip
        assert {name: (a["type"], a.get("code")) for name, a in answers.items()} == {
            "message before hello": ("error", "hello_first"),
            "forged token": ("welcome", None),  # a new visitor, who sees nothing
            "not json": ("error", "bad_json"),
            "not an object": ("error", "bad_frame"),
            "unknown type": ("error", "bad_frame"),
            "binary": ("error", "bad_frame"),
        }
        assert answers["forged token"]["messages"] == []
        assert (await say(socket, "Still here"))["message"]["body"] == "Still here"
    finally:
        await socket.disconnect()
    assert [m.body for m in await sync_to_async(messages_of)(acme)] == ["Still here"]


@pytest.mark.usefixtures("close_sync_thread_connections")
async def test_oversized_empty_or_unnamed_messages_get_error_frames_and_store_nothing(acme_widget, acme):
    socket, _ = await visitor()
    try:
        answers = await answers_to(socket, {
            "oversized frame": json.dumps({"type": "message", "id": "huge-frame-0001", "body": "x" * MAX_FRAME_CHARS}),
            "oversized body": json.dumps({"type": "message", "id": "long-body-0001", "body": "x" * (MAX_BODY_CHARS + 1)}),
            "empty body": json.dumps({"type": "message", "id": "empty-body-0001", "body": "   "}),
            "bad id": json.dumps({"type": "message", "id": "x", "body": "hello"}),
        })  # fmt: skip
        assert (await say(socket, "Short and sweet"))["type"] == "message"
    finally:
        await socket.disconnect()
    assert {name: a["code"] for name, a in answers.items()} == {
        "oversized frame": "too_large", "oversized body": "too_large", "empty body": "empty", "bad id": "bad_frame",
    }  # fmt: skip
    assert answers["oversized body"]["id"] == "long-body-0001"  # so the widget marks that message not sent
    assert "4,000 characters" in answers["oversized body"]["detail"]
    assert [m.body for m in await sync_to_async(messages_of)(acme)] == ["Short and sweet"]

    def outcomes():
        with tenant_context(acme):
            return list(InboundEvent.objects.order_by("received_at", "pk").values_list("outcome", flat=True))

    # Frames too large to parse are not logged (nothing to replay); parsed messages are, with the verdict.
    assert await sync_to_async(outcomes)() == ["malformed", "malformed", "malformed", "stored"]


@pytest.mark.usefixtures("close_sync_thread_connections")
async def test_a_flood_of_frames_is_rate_limited_per_connection(acme_widget):
    socket, _ = await visitor()
    try:
        for _ in range(20):
            await socket.send_to(text_data="flood")
        codes = [(await socket.receive_json_from(timeout=5))["code"] for _ in range(20)]
    finally:
        await socket.disconnect()
    assert codes[:5] == ["bad_json"] * 5  # the burst allowance (less the hello)
    assert codes.count("rate_limited") >= 5


def test_the_token_bucket_refills_over_time():
    now = [0.0]
    bucket = TokenBucket(capacity=3, per_second=1.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 1.5
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] += 60
    assert sum(bucket.take() for _ in range(10)) == 3  # never more than the capacity


# --- uploads ----------------------------------------------------------------------------------


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def upload(endpoint, content, *, name="photo.png", origin=ACME_SITE, token=None, client_id="upload-0001", key=None):
    from django.core.files.uploadedfile import SimpleUploadedFile

    token = token or visitor_token_issue(endpoint)[1]
    fields = {"key": key or endpoint.address, "visitor": token, "id": client_id,
              "file": SimpleUploadedFile(name, content, content_type="application/octet-stream")}  # fmt: skip
    return Client().post(UPLOAD, fields, **({"HTTP_ORIGIN": origin} if origin else {}))


def test_an_uploaded_image_is_sniffed_and_stored_on_a_new_message(acme_widget, acme, media):
    response = upload(acme_widget, PNG, name="../../screenshot.html")
    assert response.status_code == 200, response.content
    assert response["Access-Control-Allow-Origin"] == ACME_SITE
    assert "Origin" in response["Vary"]
    frame = response.json()["message"]
    assert frame["attachments"] == [{"name": "screenshot.png", "type": "image/png", "size": len(PNG)}]
    with tenant_context(acme):
        [attachment] = Attachment.objects.select_related("message__conversation")
        assert attachment.content_type == "image/png"  # from the bytes; the browser said octet-stream
        assert attachment.message.public_id == frame["id"]
        assert attachment.message.conversation.channel == "webchat"
        assert attachment.file.read() == PNG
        assert InboundEvent.objects.get().outcome == InboundOutcome.STORED


def test_the_same_upload_sent_twice_is_one_message_with_one_file(acme_widget, acme, media):
    _, token = visitor_token_issue(acme_widget)
    first = upload(acme_widget, PNG, token=token)
    again = upload(acme_widget, PNG, token=token)
    assert first.json()["message"]["id"] == again.json()["message"]["id"]
    with tenant_context(acme):
        assert Message.objects.count() == 1 and Attachment.objects.count() == 1


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"<!doctype html><script>alert(document.cookie)</script>", "Only images (PNG, JPEG, GIF, WebP) and PDF"),
        (b"MZ\x90\x00 a windows executable", "Only images (PNG, JPEG, GIF, WebP) and PDF"),
        (b"", "The submitted file is empty."),
    ],
)
def test_a_file_that_is_not_an_image_or_pdf_is_refused_whatever_its_name(acme_widget, acme, media, content, reason):
    response = upload(acme_widget, content, name="innocent.png")
    assert response.status_code == 400
    assert response.json()["error"].startswith(reason)
    assert response["Access-Control-Allow-Origin"] == ACME_SITE  # so the widget can show the reason
    with tenant_context(acme):
        assert not Message.objects.exists() and not Attachment.objects.exists()
        assert InboundEvent.objects.get().outcome == InboundOutcome.MALFORMED


def test_a_file_over_the_size_limit_is_refused(acme_widget, acme, media):
    response = upload(acme_widget, b"%PDF-1.7\n" + bytes(10 * 1024 * 1024))
    assert response.status_code == 400
    assert response.json()["error"] == "Files can be at most 10 MB."
    with tenant_context(acme):
        assert not Message.objects.exists()


def test_a_kind_of_file_the_admins_restrict_on_webchat_is_refused_with_their_reason(acme_widget, acme, media):
    with tenant_context(acme):
        AttachmentRestriction.objects.create(
            tenant=acme, content_type="application/pdf", channel="webchat", reason="please paste the text instead"
        )
        AttachmentRestriction.objects.create(tenant=acme, content_type="image/*", channel="sms", reason="SMS only")
    response = upload(acme_widget, b"%PDF-1.7\n" + bytes(64), name="order.pdf")
    assert response.status_code == 400
    assert response.json()["error"] == "“order.pdf” cannot be sent here: please paste the text instead"
    with tenant_context(acme):
        assert not Message.objects.exists() and not Attachment.objects.exists()
        assert InboundEvent.objects.get().outcome == InboundOutcome.MALFORMED

    assert upload(acme_widget, PNG, client_id="upload-0002").status_code == 200  # the image rule is SMS's only


def test_uploads_check_the_key_the_origin_and_the_visitor_token(acme_widget, globex_widget, acme, globex, media):
    _, globex_token = visitor_token_issue(globex_widget)
    refused = {
        "unknown key": upload(acme_widget, PNG, key="wk_nobody"),
        "foreign origin": upload(acme_widget, PNG, origin=GLOBEX_SITE),
        "no origin": upload(acme_widget, PNG, origin=None),
        "forged token": upload(acme_widget, PNG, token="someone:else"),
        "globex token on acme's widget": upload(acme_widget, PNG, token=globex_token),
    }
    assert {name: r.status_code for name, r in refused.items()} == {
        "unknown key": 404, "foreign origin": 403, "no origin": 403, "forged token": 403,
        "globex token on acme's widget": 403,
    }  # fmt: skip
    assert all("Access-Control-Allow-Origin" not in refused[name] for name in ("unknown key", "foreign origin"))
    with dangerously_all_tenants():
        assert not Message.objects.exists()


# --- queue position ---------------------------------------------------------------------------


def test_queue_position_follows_routings_order_of_pending_tasks(acme_widget, acme, acme_agent):
    from conversations.services import contact_find_or_create, conversation_start

    with tenant_context(acme):
        queue = Queue.objects.create(tenant=acme, name="Website")
        other = Queue.objects.create(tenant=acme, name="Billing")

        def waiting(name, priority=TaskPriority.MEDIUM, in_queue=queue, vip=False):
            contact, _ = contact_find_or_create(kind="webchat", value=name * 22)
            if vip:
                contact.is_vip = True
                contact.save()
            conversation = conversation_start(contact=contact, channel="webchat")
            task_create(kind=TaskKind.CONVERSATION, title=name, conversation=conversation, queue=in_queue, priority=priority)
            return conversation

        first, second = waiting("a"), waiting("b")
        waiting("c", in_queue=other)  # another queue's line is not ours
        assert (queue_position(first), queue_position(second)) == (1, 2)
        waiting("d", priority=TaskPriority.HIGH)  # served first, whenever it arrived
        assert (queue_position(first), queue_position(second)) == (2, 3)
        waiting("e", vip=True)  # a VIP goes before others of the same priority
        assert (queue_position(first), queue_position(second)) == (3, 4)
        contact, _ = contact_find_or_create(kind="webchat", value="f" * 22)
        assert queue_position(conversation_start(contact=contact, channel="webchat")) is None  # not routed yet


@pytest.mark.usefixtures("close_sync_thread_connections")
async def test_the_welcome_tells_a_waiting_visitor_their_place_in_line(acme_widget, acme):
    socket, welcome = await visitor()
    await say(socket, "Anyone there?")
    await socket.disconnect()

    def route_it():
        with tenant_context(acme):
            conversation = Conversation.objects.get()
            queue = Queue.objects.create(tenant=acme, name="Website")
            task_create(kind=TaskKind.CONVERSATION, title="Webchat", conversation=conversation, queue=queue)

    await sync_to_async(route_it)()
    socket, again = await visitor(token=welcome["visitor"])
    try:
        assert again["queue_position"] == 1
        answer = await say(socket, "Still waiting", client_id="second-message-01")
        assert answer["type"] == "message"
        assert await socket.receive_json_from(timeout=5) == {"type": "queue", "position": 1}
    finally:
        await socket.disconnect()


async def next_places(*sockets) -> tuple:
    """The place in line pushed to each socket, checking each got exactly one push."""
    places = []
    for socket in sockets:
        frame = await socket.receive_json_from(timeout=5)
        assert frame["type"] == "queue", frame
        places.append(frame["position"])
    for socket in sockets:
        assert await socket.receive_nothing(timeout=0.3)
    return tuple(places)


@pytest.mark.usefixtures("close_sync_thread_connections")
async def test_waiting_visitors_are_told_their_new_place_whenever_the_line_moves(acme_widget, acme, acme_agent):
    first, _ = await visitor()
    second, _ = await visitor()
    try:
        await say(first, "I was here first", client_id="first-visitor-01")
        await say(second, "Me too", client_id="second-visitor-1")  # no queue yet: nobody waits in line

        def line_up():  # both tasks in one transaction: one push each, not one per task
            with tenant_context(acme), transaction.atomic():
                queue = Queue.objects.create(tenant=acme, name="Website")
                for conversation in Conversation.objects.order_by("pk"):
                    task_create(kind=TaskKind.CONVERSATION, title="Webchat", conversation=conversation, queue=queue)
                return queue

        queue = await sync_to_async(line_up)()
        assert await next_places(first, second) == (1, 2)

        def urgent_sms_arrives():
            with tenant_context(acme):
                return waiting_task(queue, channel="sms", priority="urgent")

        sms_task = await sync_to_async(urgent_sms_arrives)()
        assert await next_places(first, second) == (2, 3)  # routing serves it first, so it goes ahead

        def offered():  # an agent with room for webchat only: the first visitor's task is offered
            with tenant_context(acme):
                make_agent(acme, "acme-router", [queue], capacity={"sms": 0, "webchat": 1})
                return routing_run(tenant_id=acme.pk)

        assert len(await sync_to_async(offered)()) == 1
        assert await next_places(first, second) == (None, 2)  # no longer waiting; the other moves up

        def sms_canceled():
            with tenant_context(acme):
                task_transition(task=Task.objects.get(pk=sms_task.pk), to_status=TaskStatus.CANCELED, reason="Spam")

        await sync_to_async(sms_canceled)()
        assert await next_places(second) == (1,)
        assert await first.receive_nothing(timeout=0.3)  # not in line: nothing to tell

        def claimed():  # an agent takes the second visitor's chat from the line
            with tenant_context(acme):
                second_conversation = Conversation.objects.order_by("pk")[1]
                task_claim(task=Task.objects.get(conversation=second_conversation), agent=acme_agent)

        await sync_to_async(claimed)()
        assert await next_places(second) == (None,)
    finally:
        await first.disconnect()
        await second.disconnect()


@pytest.fixture
def third_visitor(acme):
    """Listens to one visitor's group (channels-redis serves one GroupListener per layer instance)."""
    listener = GroupListener(realtime.webchat_visitor_group(acme.pk, "c" * 22))
    yield listener
    listener.close()


def test_telling_a_whole_line_takes_two_queries(acme_widget, acme, django_assert_num_queries, third_visitor):
    from conversations.services import contact_find_or_create, conversation_start

    visitors = [letter * 22 for letter in "abcd"]
    third = third_visitor
    with tenant_context(acme):
        queue = Queue.objects.create(tenant=acme, name="Website")
        for visitor_id in visitors:
            contact, _ = contact_find_or_create(kind="webchat", value=visitor_id)
            conversation = conversation_start(contact=contact, channel="webchat")
            task_create(kind=TaskKind.CONVERSATION, title="Webchat", conversation=conversation, queue=queue)
        assert [m["data"] for m in third.receive_all()] == [{"position": 3}, {"position": 3}]  # arrivals 3 and 4
        with django_assert_num_queries(2):  # is a webchat visitor waiting? then the whole line at once
            assert webchat_queue_line_push(queue_id=queue.pk) == 4
    assert third.receive()["data"] == {"position": 3}


def test_a_line_without_webchat_visitors_costs_one_small_query(acme, django_assert_num_queries):
    from conversations.services import contact_find_or_create, conversation_start

    with tenant_context(acme):
        queue = Queue.objects.create(tenant=acme, name="Phones")
        contact, _ = contact_find_or_create(kind="phone", value="+15551234567")
        conversation = conversation_start(contact=contact, channel="sms")
        task_create(kind=TaskKind.CONVERSATION, title="SMS", conversation=conversation, queue=queue)
        with django_assert_num_queries(1):
            assert webchat_queue_line_push(queue_id=queue.pk) == 0


# --- the demo page and seed -------------------------------------------------------------------


def test_the_demo_page_embeds_the_widget_of_an_active_key(acme_widget):
    response = Client().get(f"/webchat/demo/?key={ACME_KEY}")
    assert response.status_code == 200
    assert f'src="/static/webchat/widget.js" data-key="{ACME_KEY}"' in response.content.decode()
    assert Client().get("/webchat/demo/?key=wk_nobody").status_code == 404
    assert Client().get("/webchat/demo/?key=%22%3E%3Cscript%3E").status_code == 404


def test_seed_demo_creates_a_widget_per_tenant_with_a_stable_key(db):
    from io import StringIO

    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())
    with dangerously_all_tenants():
        widgets = {e.address: e for e in ChannelEndpoint.objects.filter(provider="webchat").select_related("tenant")}
    assert {key: w.tenant.slug for key, w in widgets.items()} == {"acme-demo-widget": "acme", "globex-demo-widget": "globex"}
    assert widgets["acme-demo-widget"].allowed_origins.split() == ["http://127.0.0.1:8000", "http://localhost:8000"]
