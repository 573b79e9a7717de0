"""A website visitor and an agent exchange messages through the webchat widget, in Chromium, against the
real ASGI server. The agent's side goes through the services (the agent desktop is not built yet); its
reply crosses processes over the Redis channel layer to the server that holds the visitor's socket."""

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection

from channels_inbound.models import Channel, ChannelEndpoint, Provider
from contactcenter.tenancy import tenant_context
from conversations.models import Conversation, Message
from channels_inbound.webchat.services import webchat_queue_position_push
from conversations.services import contact_find_or_create, conversation_start, message_deliver, message_send_reply
from tasks.models import Queue
from tasks.services import task_create

pytestmark = pytest.mark.browser

KEY = "wk_browser_test_widget"


@pytest.fixture
def widget(asgi_server, acme) -> ChannelEndpoint:
    with tenant_context(acme):
        return ChannelEndpoint.objects.create(
            tenant=acme, provider=Provider.WEBCHAT, channel=Channel.WEBCHAT, address=KEY,
            allowed_origins=asgi_server.url,
        )  # fmt: skip


def in_another_thread(tenant, work) -> None:
    """Run `work(the visitor's conversation)` in the tenant, in another thread: Playwright's sync API runs an event loop
    in this one, where async_to_sync (the channel layer's push) refuses to run and pushes would be dropped."""

    def run():
        try:
            with tenant_context(tenant):
                work(Conversation.objects.filter(channel="webchat", messages__isnull=False).distinct().get())
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(run).result()


def agent_replies(agent, body: str) -> None:
    def reply_and_deliver(conversation):
        reply = message_send_reply(conversation=conversation, author=agent, body=body)
        message_deliver(message=Message.objects.select_related("conversation").get(pk=reply.pk))

    in_another_thread(agent.tenant_id, reply_and_deliver)


def routing_queues(tenant) -> None:
    """What routing will do (not built yet): queue the conversation behind another and tell the visitor."""

    def queue_behind_another(conversation):
        queue = Queue.objects.create(tenant_id=conversation.tenant_id, name="Website")
        contact, _ = contact_find_or_create(kind="webchat", value="x" * 22)
        earlier = conversation_start(contact=contact, channel="webchat")
        task_create(kind="conversation", title="Earlier", conversation=earlier, queue=queue)
        task_create(kind="conversation", title="Webchat", conversation=conversation, queue=queue)
        webchat_queue_position_push(conversation)

    in_another_thread(tenant, queue_behind_another)


def test_visitor_and_agent_chat_and_the_history_survives_a_reload(asgi_server, page, widget, acme, acme_agent, tmp_path):
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket))
    page.goto(f"{asgi_server.url}/webchat/demo/?key={KEY}")
    launcher = page.get_by_role("button", name="Chat with us")
    launcher.focus()
    page.keyboard.press("Enter")  # the launcher works from the keyboard
    dialog = page.get_by_role("dialog", name="Chat with us")
    assert dialog.is_visible()
    assert launcher.get_attribute("aria-expanded") == "true"

    message_box = dialog.get_by_label("Your message")
    assert message_box.evaluate("box => box.getRootNode().activeElement === box")  # focus moved into the chat
    message_box.fill("Hello, my parcel is late")
    message_box.press("Shift+Enter")  # a new line, not a send
    message_box.press_sequentially("Order 1042")
    message_box.press("Enter")
    log = dialog.get_by_role("log", name="Messages")
    visitor_bubble = log.locator("li.visitor", has_text="Order 1042")
    visitor_bubble.locator("time").wait_for()  # acknowledged by the server
    assert visitor_bubble.locator(".body").inner_text() == "Hello, my parcel is late\nOrder 1042"
    assert message_box.input_value() == ""

    with tenant_context(acme):
        [stored] = Message.objects.all()
    assert stored.body == "Hello, my parcel is late\nOrder 1042"

    routing_queues(acme)
    dialog.get_by_role("status").filter(has_text="You are number 2 in line.").wait_for()

    agent_replies(acme_agent, "Sorry about that! Let me check order 1042.")
    reply = log.locator("li.agent", has_text="Let me check order 1042")
    reply.wait_for()
    # Live, on the socket that was open: not caught up from the history by a reconnection.
    assert len(sockets) == 1 and not sockets[0].is_closed()
    assert reply.locator(".who").inner_text() == "Agent1"
    page.screenshot(path=str(tmp_path / "webchat-live.png"))

    page.reload()
    log = page.get_by_role("log", name="Messages")  # still open after the reload, with the history
    log.locator("li.agent", has_text="Let me check order 1042").wait_for()
    assert [text.strip() for text in log.locator("li .body").all_inner_texts()] == [
        "Hello, my parcel is late\nOrder 1042",
        "Sorry about that! Let me check order 1042.",
    ]

    # After the reload the socket is the same visitor's: the next reply arrives live too.
    opened = len(sockets)
    agent_replies(acme_agent, "It ships today.")
    log.locator("li.agent", has_text="It ships today.").wait_for()
    assert len(sockets) == opened and not sockets[-1].is_closed()
    with tenant_context(acme):
        assert Message.objects.values("conversation").distinct().count() == 1  # one conversation throughout

    page.get_by_label("Your message").focus()
    page.keyboard.press("Escape")
    assert not page.get_by_role("dialog").is_visible()
    assert page.evaluate("document.activeElement.id") == "switchboard-webchat"  # focus back on the launcher


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(40)


@contextmanager
def customer_website(asgi_server, key: str):
    """Another website (its own origin) whose page embeds the widget from our server, served by a tiny
    HTTP server of its own: a real page on loopback, so Chromium lets it reach our loopback server."""
    page_html = (
        f'<!doctype html><html lang="en"><title>Shop</title><h1>Shop</h1>'
        f'<script src="{asgi_server.url}/static/webchat/widget.js" data-key="{key}" defer></script>'
    ).encode()

    class ShopPage(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(page_html)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), ShopPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_widget_embedded_on_another_website_chats_and_uploads_across_origins(asgi_server, page, acme, tmp_path):
    with customer_website(asgi_server, KEY) as shop:
        with tenant_context(acme):
            ChannelEndpoint.objects.create(
                tenant=acme, provider=Provider.WEBCHAT, channel=Channel.WEBCHAT, address=KEY, allowed_origins=shop,
            )  # fmt: skip
        page.goto(shop)
        page.get_by_role("button", name="Chat with us").click()
        dialog = page.get_by_role("dialog", name="Chat with us")
        dialog.get_by_label("Your message").fill("Hi from the shop")
        dialog.get_by_role("button", name="Send").click()
        log = dialog.get_by_role("log", name="Messages")
        log.locator("li.visitor", has_text="Hi from the shop").locator("time").wait_for()

        (tmp_path / "receipt.png").write_bytes(PNG)
        (tmp_path / "invoice.png").write_bytes(b"<html><script>alert(1)</script></html>")
        dialog.get_by_label("Attach image or PDF").set_input_files(tmp_path / "receipt.png")
        log.locator("li.visitor", has_text="File: receipt.png").locator("time").wait_for()  # stored; answer readable (CORS)
        dialog.get_by_label("Attach image or PDF").set_input_files(tmp_path / "invoice.png")
        refused = log.locator("li.visitor.failed", has_text="File: invoice.png")
        refused.wait_for()
        assert "Not sent: Only images (PNG, JPEG, GIF, WebP) and PDF documents can be sent." in refused.inner_text()
        page.screenshot(path=str(tmp_path / "webchat-embedded.png"))

    with tenant_context(acme):
        assert [(m.body, [a.filename for a in m.attachments.all()]) for m in Message.objects.order_by("pk")] == [
            ("Hi from the shop", []),
            ("", ["receipt.png"]),
        ]


def test_the_widget_on_a_website_the_endpoint_does_not_allow_never_connects(asgi_server, page, widget, acme):
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket))
    with customer_website(asgi_server, KEY) as copycat:  # the widget allows our own origin only
        page.goto(copycat)
        page.get_by_role("button", name="Chat with us").click()
        page.wait_for_timeout(1500)
        status = page.get_by_role("dialog").get_by_role("status").first
        assert "onnecting" in status.inner_text()  # "Connecting…" / "Connection lost. Reconnecting…"
        assert page.get_by_label("Attach image or PDF").is_disabled()
    assert sockets and all(socket.is_closed() for socket in sockets)
