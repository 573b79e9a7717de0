"""The tenant isolation matrix: every URL, webhook and socket route, and how another tenant is kept out.

Generated from the URL conf: a named URL that takes an argument must have an entry in MATRIX (how to
make an acme object it can name, and the methods to try), one that takes none an entry in NO_OBJECT
(why nothing of another tenant can be named through it) or, for the providers' webhooks, in
WEBHOOKS (what authenticates the caller). A new URL without an entry fails here, so whoever adds it
has to say how it keeps tenants apart. The admin (`admin/`) is covered by
tests/contactcenter/test_admin_supervisor.py, static and media files are not views of ours.

For every MATRIX entry a globex supervisor asks for acme's object, by GET and POST, as htmx and
plainly: the answer must be 404 or 403 (405 for a method the view does not take), carry none of the
acme object's identifying text, and leave every acme row as it was. `isolation_problems()` is that
check; the self-check at the end breaks one scoping call and shows the same function reports it.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.core import signing
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, path, reverse
from django.utils.html import escape
from twilio.request_validator import RequestValidator

from contactcenter.routing import websocket_urlpatterns
from contactcenter.tenancy import (
    TenantOwnedModel,
    dangerously_all_tenants,
    tenant_context,
)
from contactcenter.urls import urlpatterns as ROOT_PATTERNS
from conversations.models import Conversation, Message
from conversations.services import attachment_add, message_append_inbound
from tasks.exports import REPORT_TABLES
from tasks.models import BreakReason, Offer
from tasks.services import routing_run
from tests.channels_inbound.conftest import ACME_NUMBER, ACME_SID, GLOBEX_TOKEN, make_endpoint
from tests.channels_inbound.test_email import ACME_MAILBOX, GLOBEX_SECRET, basic_auth, inbound_email, make_mailbox
from tests.channels_inbound.test_email import ACME_SECRET as ACME_MAILBOX_SECRET
from tests.conftest import signed_in_client
from tests.conversations.conftest import make_contact, make_queue
from tests.tasks.routing_helpers import make_agent, waiting_task

CONTACT_NAME = "Wilhelmina Acmesecret"
INBOUND_BODY = "acme-secret: my card ends 4711"
OUTBOUND_BODY = "acme-secret: your refund is on its way"
QUEUE_NAME = "Acmesecret Escalations"
FILENAME = "acmesecret-invoice.pdf"
BREAK_NAME = "Acmesecret lunch"
PDF_TEXT = "acmesecret file contents"
PDF = b"%PDF-1.7\n" + PDF_TEXT.encode()

DENIED = frozenset({403, 404, 405})
# The globex supervisor's own page (its own report); what matters is that no acme text is in it.
OWN_PAGE = frozenset({200, 400, 405})


@dataclass(frozen=True)
class Probe:
    """How to name an acme object through one URL: `kwargs(acme)` gives the URL's arguments (and
    `data(acme)` the query/form fields) for the objects of `acme_world`; `methods` to try."""

    kwargs: Callable[[SimpleNamespace], dict]
    methods: tuple[str, ...] = ("get", "post")
    data: Callable[[SimpleNamespace], dict] = field(default=lambda acme: {})
    allowed: frozenset = DENIED


def _id(attribute: str) -> Callable[[SimpleNamespace], dict]:
    return lambda acme: {"public_id": getattr(acme, attribute).public_id}


def _forged_attachment_token(acme) -> dict:
    """A token for acme's file signed with our key but not for public links (what an outsider who
    saw another signed value could try); a genuine link is a capability and is meant to work."""
    return {"token": signing.dumps([acme.tenant.pk, acme.attachment.public_id])}


MATRIX: dict[str, Probe] = {
    "team-member": Probe(_id("agent")),
    "attachment-public": Probe(_forged_attachment_token),
    "attachment-download": Probe(_id("attachment")),
    "desktop:offer-accept": Probe(_id("offer")),
    "desktop:offer-decline": Probe(_id("offer")),
    "desktop:task-claim": Probe(_id("task")),
    "desktop:task-start": Probe(_id("task")),
    "desktop:task-complete": Probe(_id("task")),
    "desktop:task-wrap-up": Probe(_id("task")),
    "desktop:conversation": Probe(_id("conversation")),
    "desktop:history-earlier": Probe(_id("conversation")),
    "desktop:reply": Probe(_id("conversation"), data=lambda acme: {"body": "globex was here"}),
    "desktop:conversation-end": Probe(_id("conversation")),
    "desktop:note": Probe(_id("conversation"), data=lambda acme: {"body": "globex note"}),
    "desktop:template": Probe(_id("conversation")),
    "desktop:message-retry": Probe(_id("outbound")),
    "desktop:contact": Probe(_id("contact")),
    "desktop:context-priority": Probe(_id("conversation"), data=lambda acme: {"priority": "urgent"}),
    "desktop:context-tags": Probe(_id("conversation"), data=lambda acme: {"tags": "globex"}),
    "desktop:note-preview": Probe(_id("conversation"), data=lambda acme: {"body": "**x**"}),
    "desktop:context-follow-up": Probe(_id("conversation")),
    "desktop:context-assign": Probe(_id("conversation")),
    "desktop:context-transfer": Probe(_id("conversation")),
    "desktop:context-merge": Probe(_id("conversation")),
    "desktop:context-split": Probe(_id("conversation")),
    "desktop:context-schedule": Probe(_id("conversation")),
    "desktop:context-outbound": Probe(_id("conversation")),
    # The argument names a report table, not an object: globex gets its own report, without acme's rows.
    "reports-export": Probe(lambda acme: {"table": next(iter(REPORT_TABLES))}, allowed=OWN_PAGE),
}

# Argument-less URLs that still accept an object's public id in the query or the form: probed too.
BY_FIELD: dict[str, Probe] = {
    "home": Probe(lambda acme: {}, data=lambda acme: {"open": acme.conversation.public_id}),
    "desktop:status": Probe(
        lambda acme: {}, data=lambda acme: {"status": "unavailable", "break_reason": acme.break_reason.public_id}
    ),
    "desktop:queues": Probe(lambda acme: {}, data=lambda acme: {"queue": acme.queue.public_id}, allowed=OWN_PAGE),
    "reports": Probe(lambda acme: {}, data=lambda acme: {"queue": acme.queue.public_id}, allowed=OWN_PAGE),
}

NO_OBJECT: dict[str, str] = {
    "healthz": "answers 'ok' about the process; reads no tenant data",
    "readyz": "pings PostgreSQL and Redis; reads no tenant data",
    "login": "the sign-in form; the tenant follows from the membership, never from the request",
    "logout": "ends the caller's own session",
    "tenant-switch": "the slug posted is looked up among the caller's own memberships "
    "(tests/contactcenter/test_views.py); probed below with acme's slug",
    "team": "lists members_of_current_tenant(): the tenant comes from the session's membership",
    "webchat-demo": "the ?key= is a widget key, public by design (it is embedded in the customer's site)",
    "desktop:unassigned": "lists unassigned_tasks() of the current tenant; takes no id",
    "wallboard": "the current tenant's floor; takes no id",
    "wallboard-board": "the current tenant's floor fragment; takes no id",
    "my-metrics": "the signed-in agent's own figures; takes no id",
    **{name: "probed with an acme id in the query/form (BY_FIELD)" for name in BY_FIELD},
}

# The providers' endpoints (channels_inbound.urls): no session, the caller is authenticated per
# endpoint, and the endpoint (hence the tenant) is chosen by the address, never by the caller.
WEBHOOKS: dict[str, str] = {
    "twilio-messaging": "X-Twilio-Signature with the auth token of the endpoint named by To + AccountSid",
    "twilio-status": "X-Twilio-Signature with the auth token of the endpoint named by From + AccountSid",
    "twilio-voice": "X-Twilio-Signature with the auth token of the endpoint named by To + AccountSid",
    "twilio-voice-status": "X-Twilio-Signature with the auth token of the endpoint named by the call's number",
    "twilio-fax": "X-Twilio-Signature with the auth token of the endpoint named by To + AccountSid",
    "email-inbound": "HTTP Basic password = the secret of the mailbox named by the recipient",
    "webchat-upload": "the widget key + an allowed Origin + the signed visitor token "
    "(tests/channels_inbound/test_webchat.py::test_uploads_check_the_key_the_origin_and_the_visitor_token)",
}
TWILIO_WEBHOOKS = [name for name in WEBHOOKS if name.startswith("twilio-")]

WEBSOCKETS: dict[str, str] = {
    "ws-member": "AllowedHostsOriginValidator + session auth; the consumer joins only its own tenant's groups "
    "(tests/desktop/test_live.py::test_an_offer_arrives_as_numbered_fragments_and_never_on_another_tenants_socket, "
    "tests/contactcenter/test_realtime.py::test_member_receives_pushes_to_their_own_group_only)",
    "ws-webchat": "the widget key picks the tenant, the Origin must be one it allows, the visitor token is signed "
    "(tests/channels_inbound/test_webchat.py::test_only_the_endpoints_allowed_origins_may_open_the_socket, "
    "::test_a_visitor_message_is_stored_once_in_the_widgets_tenant)",
}

SKIPPED_PREFIXES = ("admin/", "static/", "media/")


def named_urls() -> dict[str, list[str]]:
    """Every named URL of the URL conf (admin, static and media left out): name → its arguments."""
    found: dict[str, list[str]] = {}

    def walk(patterns, prefix: str, namespace: str | None) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if route.startswith(SKIPPED_PREFIXES):
                continue
            if isinstance(pattern, URLResolver):
                inner = ":".join(filter(None, [namespace, pattern.namespace])) or None
                walk(pattern.url_patterns, route, inner)
            elif isinstance(pattern, URLPattern) and pattern.name:
                name = f"{namespace}:{pattern.name}" if namespace else pattern.name
                found[name] = list(pattern.pattern.converters)

    walk(get_resolver().url_patterns, "", None)
    return found


def webhook_names() -> set[str]:
    import channels_inbound.urls

    return {pattern.name for pattern in channels_inbound.urls.urlpatterns}


def acme_rows(*, leave_out: tuple = ()) -> dict[str, list[dict]]:
    """Every row of acme in every tenant-owned table, every column: equal means nothing of acme changed."""
    models = [
        model for model in apps.get_models() if issubclass(model, TenantOwnedModel) and model.__name__ not in leave_out
    ]
    with dangerously_all_tenants():
        return {
            model.__name__: list(model.objects.filter(tenant__slug="acme").order_by("pk").values()) for model in models
        }


def body_of(response) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode("utf-8", errors="replace")


def isolation_problems(client: Client, url: str, probe: Probe, data: dict, secrets: list[str]) -> list[str]:
    """Everything wrong with what `client` (another tenant's user) gets at `url` naming acme's object:
    a status outside `probe.allowed`, acme's text in a body, or a changed acme row. Empty: isolated."""
    problems = []
    before = acme_rows()
    for method in probe.methods:
        for htmx in (False, True):
            headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
            response = getattr(client, method)(url, data, **headers)
            how = f"{method.upper()} {url}{' (htmx)' if htmx else ''}"
            if response.status_code not in probe.allowed:
                problems.append(f"{how}: status {response.status_code}, not one of {sorted(probe.allowed)}")
            body = body_of(response)
            problems += [f"{how}: acme's {secret!r} is in the body" for secret in secrets if secret in body]
    after = acme_rows()
    problems += [f"{url}: acme's {table} rows changed" for table in before if before[table] != after[table]]
    return problems


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def acme_world(acme) -> SimpleNamespace:
    """One acme object of every kind a URL can name, each with text that must never reach globex."""
    with tenant_context(acme):
        queue = make_queue(QUEUE_NAME, channels=["sms", "webchat"])
        agent = make_agent(acme, "acme-agent1", [queue])
        contact = make_contact(phone="+15557770001", name=CONTACT_NAME)
        task = waiting_task(queue, contact=contact)
        conversation = Conversation.objects.get(pk=task.conversation_id)
        inbound, _ = message_append_inbound(conversation=conversation, body=INBOUND_BODY, provider_message_id="SM-acme")
        outbound = Message.objects.create(
            tenant=acme, conversation=conversation, direction="outbound", delivery_status="failed", body=OUTBOUND_BODY
        )
        attachment = attachment_add(message=inbound, filename=FILENAME, content=PDF, content_type="application/pdf")
        routing_run(tenant_id=acme.pk)
        offer = Offer.objects.filter(task=task).first()
        assert offer is not None, "the available acme agent was offered the waiting task"
        return SimpleNamespace(
            tenant=acme, queue=queue, agent=agent, contact=contact, task=task, conversation=conversation,
            inbound=inbound, outbound=outbound, attachment=attachment, offer=offer,
            break_reason=BreakReason.objects.create(tenant=acme, name=BREAK_NAME),
        )  # fmt: skip


def secrets_of(acme: SimpleNamespace, kwargs: dict, data: dict) -> list[str]:
    """acme's identifying text, and the ids the request named (a 404 page never repeats them)."""
    texts = [CONTACT_NAME, INBOUND_BODY, OUTBOUND_BODY, QUEUE_NAME, FILENAME, BREAK_NAME, PDF_TEXT]
    texts += [acme.agent.user.username, acme.contact.public_id]
    return texts + [value for value in [*kwargs.values(), *data.values()] if len(str(value)) >= 12]


def outsider(globex_supervisor) -> Client:
    client = signed_in_client(globex_supervisor)
    client.raise_request_exception = False  # a 500 is reported as a status, like any other answer
    return client


# --- every URL has an entry ----------------------------------------------------------------------


def test_every_url_with_an_argument_is_in_the_isolation_matrix():
    with_arguments = {name for name, arguments in named_urls().items() if arguments}
    missing = sorted(with_arguments - set(MATRIX))
    assert not missing, f"add it to the isolation matrix (MATRIX): {missing}"
    assert not set(MATRIX) - with_arguments, "MATRIX names URLs that no longer take an argument (or exist)"


def test_every_url_without_an_argument_says_why_it_names_nothing_of_another_tenant():
    without = {name for name, arguments in named_urls().items() if not arguments}
    missing = sorted(without - set(NO_OBJECT) - set(WEBHOOKS))
    assert not missing, f"add it to the isolation matrix (NO_OBJECT or WEBHOOKS): {missing}"
    assert not (set(NO_OBJECT) | set(WEBHOOKS)) - without, "entries for URLs that no longer exist"
    assert set(WEBHOOKS) == webhook_names(), "every webhook of channels_inbound.urls says how it is guarded"
    assert all(reason.strip() for reason in [*NO_OBJECT.values(), *WEBHOOKS.values()])


def test_every_websocket_route_is_listed_with_its_guard():
    assert [route.name for route in websocket_urlpatterns] == list(WEBSOCKETS)


# --- another tenant's user, pointed at acme's objects ----------------------------------------------


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_another_tenants_supervisor_cannot_reach_acmes_object(name, acme_world, globex_supervisor):
    probe = MATRIX[name]
    kwargs, data = probe.kwargs(acme_world), probe.data(acme_world)
    url = reverse(name, kwargs=kwargs)
    assert isolation_problems(outsider(globex_supervisor), url, probe, data, secrets_of(acme_world, kwargs, data)) == []


@pytest.mark.parametrize("name", sorted(BY_FIELD))
def test_an_acme_id_in_the_query_or_form_finds_nothing(name, acme_world, globex_supervisor):
    probe = BY_FIELD[name]
    data = probe.data(acme_world)
    url = reverse(name)
    assert isolation_problems(outsider(globex_supervisor), url, probe, data, secrets_of(acme_world, {}, data)) == []


def test_switching_to_a_tenant_one_is_not_a_member_of_is_refused(acme_world, globex_supervisor):
    client = outsider(globex_supervisor)
    client.post(reverse("tenant-switch"), {"tenant": "acme"})
    response = client.get(reverse("desktop:conversation", kwargs={"public_id": acme_world.conversation.public_id}))
    assert response.status_code == 404
    assert CONTACT_NAME not in body_of(response)


@pytest.mark.parametrize(
    ("name", "member", "seen"),
    [
        ("desktop:conversation", "agent", CONTACT_NAME),
        ("desktop:contact", "agent", CONTACT_NAME),
        ("attachment-download", "agent", PDF_TEXT),
        ("team-member", "supervisor", "acme-agent1"),
        ("reports-export", "supervisor", "acme-agent1"),
    ],
)
def test_control_acmes_own_members_do_see_what_the_check_looks_for(name, member, seen, acme_world, acme_supervisor):
    """The same check, pointed at acme's own people, finds the text: the matrix looks for text that
    these pages really show, so its silence for globex means something."""
    membership = acme_world.agent if member == "agent" else acme_supervisor
    probe = MATRIX[name]
    kwargs = probe.kwargs(acme_world)
    problems = isolation_problems(
        signed_in_client(membership), reverse(name, kwargs=kwargs), probe, {}, secrets_of(acme_world, kwargs, {})
    )
    assert any(repr(seen) in problem for problem in problems), problems


# --- webhooks: globex's credentials cannot write into acme -----------------------------------------


@pytest.mark.parametrize("name", TWILIO_WEBHOOKS)
def test_a_twilio_request_for_acmes_number_signed_with_globex_token_is_refused(name, acme_world, globex, db):
    make_endpoint(acme_world.tenant, address=ACME_NUMBER, account_sid=ACME_SID, token="acme-demo-auth-token")
    fields = {"AccountSid": ACME_SID, "To": ACME_NUMBER, "From": ACME_NUMBER, "Body": "globex wrote this",
              "MessageSid": "SM" + "c" * 32, "CallSid": "CA" + "c" * 32, "FaxSid": "FX" + "c" * 32,
              "MessageStatus": "delivered", "CallStatus": "completed", "NumMedia": "0"}  # fmt: skip
    path = reverse(name)
    signature = RequestValidator(GLOBEX_TOKEN).compute_signature("http://testserver" + path, fields)
    # The refusal itself is logged on acme's endpoint (InboundEvent): that row is the audit trail.
    before = acme_rows(leave_out=("InboundEvent",))
    response = Client().post(path, fields, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 403
    assert acme_rows(leave_out=("InboundEvent",)) == before


def test_an_email_for_acmes_mailbox_with_globex_secret_is_refused(acme_world, globex, db):
    make_mailbox(acme_world.tenant, ACME_MAILBOX, ACME_MAILBOX_SECRET)
    make_mailbox(globex, "support@globex.example", GLOBEX_SECRET)
    before = acme_rows(leave_out=("InboundEvent",))
    response = Client().post(
        reverse("email-inbound"), inbound_email(to=ACME_MAILBOX), HTTP_AUTHORIZATION=basic_auth(GLOBEX_SECRET)
    )
    assert response.status_code == 403
    assert acme_rows(leave_out=("InboundEvent",)) == before


# --- the self-check: a removed scoping call is caught by the same check ----------------------------


def leaky_conversation_page(request, public_id: str):
    """A view as a careless edit would write it: the lookup made across tenants instead of in the
    tenant (get_in_tenant_or_404). Mounted only for the self-check below."""
    with dangerously_all_tenants():
        conversation = Conversation.objects.select_related("contact").get(public_id=public_id)
    return HttpResponse(f"<h1>{escape(conversation.contact)}</h1><p>{conversation.public_id}</p>")


# The self-check's URL map: the product's, plus the leaky page.
urlpatterns = [path("leaky/<str:public_id>/", leaky_conversation_page, name="leaky-conversation"), *ROOT_PATTERNS]


@pytest.mark.urls(__name__)
def test_self_check_the_matrix_reports_a_view_that_stops_scoping(acme_world, globex_supervisor):
    """The matrix's own check, pointed at a page that looks a conversation up across tenants, must
    report it as a leak (status 200 and acme's contact in the body)."""
    probe = MATRIX["desktop:conversation"]
    kwargs = probe.kwargs(acme_world)
    url = reverse("leaky-conversation", kwargs=kwargs)
    problems = isolation_problems(outsider(globex_supervisor), url, probe, {}, secrets_of(acme_world, kwargs, {}))
    assert any("status 200" in problem for problem in problems), problems
    assert any(repr(CONTACT_NAME) in problem for problem in problems), problems
