"""Hostile form data for every URL that takes a POST: never a 5xx, a refusal is a 4xx that says why
(or the page's own form with its errors, where that is the view's contract), and a refused request
stores nothing.

Generated from the URL conf like tests/contactcenter/test_isolation_matrix.py: every named URL is in
FORMS (fuzzed here), in WEBHOOKS (fuzzed in the channels' own tests) or in GET_ONLY, and a GET_ONLY
URL must answer a POST with 405. So a new POST URL without a FORMS entry fails here. The admin is
Django's own forms (left out, like the matrix leaves it out).

Each form is first posted as the desktop would send it (the control: it must be accepted, so the
fuzz starts from a request that gets past CSRF, sign-in and role), then with hypothesis' changes:
fields dropped, values replaced by junk (NUL bytes, unicode, huge strings, numbers, ids that do not
exist or are globex's), keys repeated. Every example runs in a savepoint rolled back afterwards, so
each starts from the same world and the run is repeatable.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from django.http import HttpResponseBadRequest
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from django.urls import path, reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels_inbound.models import Channel, ChannelEndpoint, Provider
from channels_inbound.webchat.tokens import visitor_token_issue
from contactcenter.models import Role
from contactcenter.signin import signin_failures_clear
from contactcenter.tenancy import dangerously_all_tenants, tenant_context
from contactcenter.urls import urlpatterns as ROOT_PATTERNS
from conversations.models import Conversation, InternalNote, Message
from conversations.services import conversation_end, message_append_inbound
from tasks.models import AgentState, BreakReason, Disposition, Offer, Team
from tasks.services import dispositions_ensure_defaults, routing_run, task_claim, task_create_follow_up, task_start
from tests.conftest import PASSWORD, make_member
from tests.contactcenter.test_isolation_matrix import named_urls, webhook_names
from tests.conversations.conftest import add_messages, make_contact, make_conversation, make_queue
from tests.tasks.routing_helpers import make_agent, waiting_task

WIDGET_KEY, WIDGET_SITE = "wk_acme_fuzz_widget", "https://shop.acme.example"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(40)

# What the answer to a fuzzed form may be: a page or fragment, a redirect, or a refusal that says why.
ACCEPTED = frozenset({200, 204, 302})
REFUSED = frozenset({400, 403, 404, 409, 413, 422, 429})
HTMX = {"HTTP_HX_REQUEST": "true"}


@dataclass(frozen=True)
class Form:
    """How to post one form: as whom ("agent" holds the conversation, "anonymous" is signed out), the
    URL's arguments and a body the page itself would send (`valid`), both from the world.
    `refused_with`: text that marks a 200 answer as the form redrawn with its error (the view's
    contract for that form), so it is checked like a 4xx. `audit`: tables a refusal writes to on
    purpose (the inbound event log)."""

    member: str = "agent"
    kwargs: Callable[[SimpleNamespace], dict] = field(default=lambda w: {})
    valid: Callable[[SimpleNamespace], dict] = field(default=lambda w: {})
    refused_with: str | None = None
    audit: tuple[str, ...] = ()
    headers: dict = field(default_factory=lambda: dict(HTMX))
    upload: bool = False


def _conv(w) -> dict:
    return {"public_id": w.held.public_id}


FORMS: dict[str, Form] = {
    "login": Form("anonymous", valid=lambda w: {"username": "acme-agent1", "password": PASSWORD},
                  refused_with='class="form-errors"', headers={}),
    "logout": Form(headers={}),
    "tenant-switch": Form(valid=lambda w: {"tenant": "acme"}, headers={}),
    # Pages that take any method and read no form: posted to all the same.
    "healthz": Form("anonymous", headers={}),
    "readyz": Form("anonymous", headers={}),
    "team": Form(headers={}),
    "team-member": Form(kwargs=lambda w: {"public_id": w.agent.public_id}, headers={}),
    "desktop:status": Form(valid=lambda w: {"status": "unavailable", "break_reason": w.break_reason.public_id}),
    "desktop:queues": Form(valid=lambda w: {"queue": [w.support.public_id, w.sales.public_id]}),
    "desktop:offer-accept": Form(kwargs=lambda w: {"public_id": w.offer.public_id}),
    "desktop:offer-decline": Form(kwargs=lambda w: {"public_id": w.offer.public_id}),
    "desktop:task-claim": Form("supervisor", kwargs=lambda w: {"public_id": w.waiting.public_id}),
    "desktop:task-start": Form(kwargs=lambda w: {"public_id": w.todo.public_id}),
    "desktop:task-complete": Form(kwargs=lambda w: {"public_id": w.started.public_id}),
    "desktop:task-wrap-up": Form(kwargs=lambda w: {"public_id": w.ended_task.public_id},
                                 valid=lambda w: {"disposition": w.disposition.public_id, "notes": "Sorted."}),
    "desktop:reply": Form(kwargs=_conv, valid=lambda w: {"body": "Your refund is on its way.", "send_anyway": "1"},
                          refused_with='class="form-errors"', upload=True),
    "desktop:conversation-end": Form(kwargs=_conv),
    "desktop:note": Form(kwargs=_conv, valid=lambda w: {"body": "Called back, @acme-agent2 to follow"}),
    "desktop:message-retry": Form(kwargs=lambda w: {"public_id": w.failed.public_id}),
    "desktop:context-priority": Form(kwargs=_conv, valid=lambda w: {"priority": "urgent", "reason": "VIP"}),
    "desktop:context-tags": Form(kwargs=_conv, valid=lambda w: {"tags": "refund, late delivery"}),
    "desktop:note-preview": Form(kwargs=_conv, valid=lambda w: {"body": "**Call** @acme-agent2"}),
    "desktop:context-follow-up": Form(kwargs=_conv, valid=lambda w: {
        "kind": "follow_up", "channel": "sms", "priority": "high", "assignee": f"agent:{w.agent2.public_id}",
        "due_at": "2031-05-04T10:30", "title": "Call back", "description": "About the refund"}),
    "desktop:context-assign": Form(kwargs=_conv, valid=lambda w: {"to": f"team:{w.team.public_id}", "note": "Yours"}),
    "desktop:context-transfer": Form(kwargs=_conv, valid=lambda w: {"to": f"queue:{w.sales.public_id}", "note": "x"}),
    "desktop:context-merge": Form(kwargs=_conv, valid=lambda w: {"duplicate": w.duplicate.public_id, "reason": "dup"}),
    "desktop:context-split": Form(kwargs=_conv, valid=lambda w: {"message": [m.public_id for m in w.split], "reason": "x"}),
    "desktop:context-schedule": Form(kwargs=_conv, valid=lambda w: {"send_at": "2031-05-04T10:30", "body": "Reminder"}),
    "desktop:context-outbound": Form(kwargs=_conv, valid=lambda w: {
        "channel": "sms", "queue": w.sales.public_id, "body": "Following up"}),
    # The widget's upload (csrf-exempt: the visitor token is the authentication); its refusals are logged.
    "webchat-upload": Form("anonymous", valid=lambda w: {
        "key": WIDGET_KEY, "visitor": w.visitor_token, "id": "upload-0001", "body": "my receipt"},
        audit=("InboundEvent",), headers={"HTTP_ORIGIN": WIDGET_SITE}, upload=True),
}  # fmt: skip

# The providers' webhooks: their bodies are fuzzed where their signatures are made.
WEBHOOKS: dict[str, str] = {
    "twilio-messaging": "tests/channels_inbound/test_twilio_webhooks.py (hypothesis)",
    "twilio-status": "tests/channels_inbound/test_webhook_fuzzing.py",
    "twilio-voice": "tests/channels_inbound/test_webhook_fuzzing.py",
    "twilio-voice-status": "tests/channels_inbound/test_webhook_fuzzing.py",
    "twilio-fax": "tests/channels_inbound/test_webhook_fuzzing.py",
    "email-inbound": "tests/channels_inbound/test_email.py::test_no_authenticated_body_can_cause_a_server_error",
}

GET_ONLY = {
    "home", "desktop:unassigned", "desktop:conversation", "desktop:history-earlier", "desktop:template",
    "desktop:contact", "wallboard", "wallboard-board", "reports", "reports-export", "my-metrics",
    "attachment-public", "attachment-download", "webchat-demo",
}  # fmt: skip

FUZZ = settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def no_lockouts_left_behind():
    """The sign-in fuzz counts failed sign-ins in Redis; later tests must not find acme-agent1 locked out."""
    yield
    for username in ("acme-agent1", "acme-agent2", "acme-supervisor"):
        signin_failures_clear(username=username, address="127.0.0.1")


@pytest.fixture
def world(acme, globex) -> SimpleNamespace:
    """acme-agent1 holding a conversation (with a duplicate to merge, messages to split and a failed
    reply to retry), an offer, a waiting task, a To Do item and an ended conversation to wrap up;
    a supervisor and a teammate; a webchat widget; and globex's objects, whose ids must find nothing."""
    with tenant_context(globex):
        globex_queue = make_queue("Globex support", channels=["sms"])
        globex_agent = make_agent(globex, "globex-agent1", [globex_queue])
        globex_task = waiting_task(globex_queue)
        globex_ids = [globex_queue.public_id, globex_agent.public_id, globex_task.public_id,
                      Conversation.objects.get(pk=globex_task.conversation_id).public_id,
                      BreakReason.objects.create(tenant=globex, name="Globex lunch").public_id,
                      Team.objects.create(tenant=globex, name="Globex team").public_id]  # fmt: skip
    with tenant_context(acme):
        support = make_queue("Support", channels=["sms", "webchat"])
        sales = make_queue("Sales", channels=["sms", "webchat"])
        agent = make_agent(acme, "acme-agent1", [support, sales])
        AgentState.objects.filter(membership=agent).update(capacity={"sms": 10, "webchat": 10})
        agent2 = make_agent(acme, "acme-agent2", [support])
        supervisor = make_member(acme, "acme-supervisor", Role.SUPERVISOR)
        contact = make_contact(phone="+15557770001", name="Dana Customer")
        offered = waiting_task(sales)
        routing_run(tenant_id=acme.pk)

        def claimed(contact=None) -> tuple[Conversation, object]:
            task = waiting_task(support, contact=contact)
            task_claim(task=task, agent=agent)
            return Conversation.objects.select_related("contact").get(pk=task.conversation_id), task

        held, _ = claimed(contact)
        split = add_messages(held, 2, prefix="split")
        duplicate = make_conversation(contact)
        message_append_inbound(conversation=duplicate, body="Me again", provider_message_id="dup-1")
        failed = Message.objects.create(
            tenant=acme, conversation=held, direction="outbound", delivery_status="failed", body="Did not go out"
        )
        ended, ended_task = claimed()
        conversation_end(conversation=ended, actor=agent, reason="test setup")
        dispositions_ensure_defaults(tenant=acme)
        todo = task_create_follow_up(conversation=held, actor=agent, title="Call back", assignee=agent)
        started = task_create_follow_up(conversation=held, actor=agent, title="Send the form", assignee=agent)
        task_start(task=started, actor=agent)
        waiting = waiting_task(support)
        widget = ChannelEndpoint.objects.create(
            tenant=acme, provider=Provider.WEBCHAT, channel=Channel.WEBCHAT, address=WIDGET_KEY,
            allowed_origins=WIDGET_SITE,
        )  # fmt: skip
        return SimpleNamespace(
            acme=acme, support=support, sales=sales, agent=agent, agent2=agent2, supervisor=supervisor, held=held,
            split=split, duplicate=duplicate, failed=failed, ended_task=ended_task, todo=todo, started=started, waiting=waiting,
            offer=Offer.objects.get(task=offered, agent=agent), disposition=Disposition.objects.first(),
            break_reason=BreakReason.objects.create(tenant=acme, name="Lunch"), team=Team.objects.create(
                tenant=acme, name="Billing"), visitor_token=visitor_token_issue(widget)[1],
            globex_ids=globex_ids,
        )  # fmt: skip


def client_for(world, member: str) -> Client:
    """A client as `member`, with a CSRF cookie whose token `post` sends, as base.html's hx-headers do."""
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    membership = {"agent": world.agent, "supervisor": world.supervisor}.get(member)
    if membership is not None:
        client.force_login(membership.user)
    client.cookies[django_settings.CSRF_COOKIE_NAME] = client.csrf_token = _get_new_csrf_string()
    return client


def post(client: Client, url: str, form: Form, body: dict, file: tuple[str, bytes] | None):
    data = dict(body)
    if file is not None:
        data["file"] = SimpleUploadedFile(file[0], file[1])
    return client.post(url, data, HTTP_X_CSRFTOKEN=client.csrf_token, **form.headers)


def row_counts(leave_out: tuple[str, ...] = ()) -> dict[str, int]:
    """Rows in every table of ours and Django's (both tenants: row security would hide them all
    outside a tenant context), in one query."""
    tables = sorted(
        {model._meta.db_table for model in apps.get_models() if model.__name__ not in leave_out}
        - {"django_session", "django_admin_log"}
    )
    with dangerously_all_tenants(), connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(f'(SELECT count(*) FROM "{table}")' for table in tables))
        return dict(zip(tables, cursor.fetchone(), strict=True))


def text_of(response) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode("utf-8", errors="replace")


def junk(world) -> st.SearchStrategy[str]:
    """Values a form field is most likely to choke on, and ids that must find nothing."""
    ids = [*world.globex_ids, "x" * 12, "0", "-1", "../../etc/passwd"]
    return st.one_of(
        st.text(max_size=30),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=30).map(lambda text: text + "\x00"),
        st.sampled_from(ids),
        st.sampled_from(ids).flatmap(lambda pid: st.sampled_from([f"agent:{pid}", f"team:{pid}", f"queue:{pid}"])),
        st.sampled_from(["", " ", "\x00", "1e309", "99999999999999999999", "-99999", "null", "[]", "{}", "true",
                         "\u202e", "💥" * 50, "x" * 20_000, "0001-01-01T00:00", "9999-12-31T23:59", "2031-02-30T10:00",
                         "2031-05-04T10:30+14:00", "agent:", ":", "urgent", "available", "unavailable", "follow_up",
                         "internal", "sms", "email", "voice", "webchat", "acme", "globex", "1", "on"]),
    )  # fmt: skip


def changed_bodies(world, valid: dict) -> st.SearchStrategy[dict]:
    """The valid body with some fields dropped, some replaced (one value or several: a repeated key)
    and some added that the form does not know."""
    names = sorted(valid) or ["body"]
    values = junk(world)
    return st.tuples(
        st.dictionaries(
            st.sampled_from(names), st.one_of(values, st.lists(values, min_size=2, max_size=3)), max_size=3
        ),
        st.sets(st.sampled_from(names), max_size=2),
        st.dictionaries(
            st.sampled_from(["id", "tenant", "public_id", "status", "csrfmiddlewaretoken"]), values, max_size=1
        ),
    ).map(lambda parts: {**{k: v for k, v in valid.items() if k not in parts[1]}, **parts[0], **parts[2]})


FILES = st.one_of(
    st.none(),
    st.tuples(st.sampled_from(["photo.png", "a\x00b.png", "💥.pdf", "x" * 300 + ".png"]),
              st.sampled_from([PNG, b"", b"\x00" * 10, b"%PDF-1.7\n", b"<script>alert(1)</script>"])),
)  # fmt: skip


# --- every POST URL is here ----------------------------------------------------------------------


def test_every_url_is_fuzzed_here_or_with_the_webhooks_or_takes_no_post():
    names = set(named_urls())
    missing = sorted(names - set(FORMS) - set(WEBHOOKS) - GET_ONLY - {"webchat-upload"})
    assert not missing, f"add it to FORMS (or GET_ONLY if it takes no POST): {missing}"
    assert not (set(FORMS) | set(WEBHOOKS) | GET_ONLY) - names, "entries for URLs that no longer exist"
    assert set(WEBHOOKS) | {"webchat-upload"} == webhook_names()
    assert not set(FORMS) & GET_ONLY


def test_the_urls_listed_as_get_only_refuse_a_post(acme_supervisor):
    """So GET_ONLY cannot hide a form: a POST, valid in every other way, gets 405."""
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.force_login(acme_supervisor.user)
    client.cookies[django_settings.CSRF_COOKIE_NAME] = token = _get_new_csrf_string()
    statuses = {}
    for name in sorted(GET_ONLY):
        kwargs = {argument: "calls" if argument == "table" else "x" * 12 for argument in named_urls()[name]}
        statuses[name] = client.post(reverse(name, kwargs=kwargs), {"a": "b"}, HTTP_X_CSRFTOKEN=token).status_code
    assert statuses == dict.fromkeys(sorted(GET_ONLY), 405)


# --- the fuzz ------------------------------------------------------------------------------------


def test_no_form_body_can_cause_a_server_error_or_leave_partial_state(world):
    """One world for every form (building it is most of the cost); each example rolls back."""
    for name in sorted(FORMS):
        fuzz_one_form(name, world)


def fuzz_one_form(name: str, world) -> None:
    form = FORMS[name]
    url = reverse(name, kwargs=form.kwargs(world))
    valid = form.valid(world)
    control_file = ("receipt.png", PNG) if name == "webchat-upload" else None
    # One signed-in client for the whole fuzz, except where the request itself changes who is signed in.
    shared = None if form.member == "anonymous" or name == "logout" else client_for(world, form.member)

    def attempt(body: dict, file) -> tuple[int, bool]:
        return post_and_check(name, form, shared or client_for(world, form.member), url, body, file)

    status, refused = attempt(valid, control_file)
    assert status in ACCEPTED and not refused, f"{name}: the control request must be accepted, got {status}"

    @FUZZ
    @given(body=changed_bodies(world, valid), file=FILES if form.upload else st.none())
    def post_one(body, file):
        attempt(body, file)

    post_one()


def post_and_check(name: str, form: Form, client: Client, url: str, body: dict, file) -> tuple[int, bool]:
    """Post in a savepoint rolled back afterwards and check the answer: no 5xx, and a refusal says
    why and changed no table. Returns (status, whether it was refused)."""
    with transaction.atomic():
        before = row_counts(form.audit)
        response = post(client, url, form, body, file)
        status, text = response.status_code, text_of(response)
        assert status in ACCEPTED | REFUSED, (name, status, body, text[:500])
        refused = status in REFUSED or bool(form.refused_with and form.refused_with in text)
        if refused:
            assert text.strip(), f"{name}: a {status} says what was wrong"
            after = row_counts(form.audit)
            changed = {table: (before[table], after[table]) for table in before if before[table] != after[table]}
            assert not changed, f"{name} refused ({status}) but rows changed: {changed}; body {body!r}"
        transaction.set_rollback(True)
    return status, refused


def test_a_nul_in_any_form_value_is_refused_with_400_and_the_reason(world):
    client = client_for(world, "agent")
    response = client.post(
        reverse("desktop:note", kwargs=_conv(world)),
        {"body": "call\x00back"},
        HTTP_X_CSRFTOKEN=client.csrf_token,
        **HTMX,
    )
    assert response.status_code == 400
    assert "cannot be stored (NUL)" in response.content.decode() and response["HX-Reswap"] == "none"


# --- the self-check: a view that writes, then refuses, is caught ----------------------------------


def half_done_note(request):
    """A view as a careless edit would write it: the note is stored, then the request is refused."""
    conversation = Conversation.objects.get(public_id=request.POST["conversation"])
    InternalNote.objects.create(tenant_id=conversation.tenant_id, conversation=conversation, body_markdown="half")
    return HttpResponseBadRequest("The note was too short.")


urlpatterns = [path("half-done/", half_done_note), *ROOT_PATTERNS]


@pytest.mark.urls(__name__)
def test_self_check_a_refusal_that_left_a_row_behind_is_reported(world):
    with pytest.raises(AssertionError, match="rows changed.*conversations_internalnote"):
        post_and_check("half-done", Form(), client_for(world, "agent"), "/half-done/",
                       {"conversation": world.held.public_id}, None)  # fmt: skip
