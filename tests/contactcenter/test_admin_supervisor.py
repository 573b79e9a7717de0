"""Supervisors in the admin: tenant-scoped everywhere, bulk actions with a confirmation page that
go through the services, step-in actions logged with the supervisor as actor, roles respected.

Every tenant-owned admin is walked for both tenants' rows: a supervisor of acme must never see a
globex row on a changelist, a change page, an action's confirmation page or an export.
"""

import csv
import io
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from channels_inbound.models import ChannelEndpoint, InboundEvent, Provider
from contactcenter.models import Membership, Role, Tenant
from contactcenter.tenancy import TenantOwnedModel, dangerously_all_tenants, tenant_context
from conversations.models import (
    Activity,
    ActivityKind,
    Contact,
    Conversation,
    ConversationStatus,
    ReplyTemplate,
    SensitiveDataPattern,
    Via,
)
from conversations.services import attachment_add, conversation_assign, message_append_inbound, note_add
from tasks.models import (
    AgentSkill,
    AgentState,
    AgentStatus,
    AgentStatusPeriod,
    AutomationRule,
    BreakReason,
    Disposition,
    Offer,
    OfferStatus,
    Queue,
    Skill,
    Task,
    TaskKind,
    TaskStatus,
    Team,
)
from tasks.services import (
    agent_set_status,
    agent_state_for,
    break_reasons_ensure_defaults,
    dispositions_ensure_defaults,
)
from tests.conftest import make_member, signed_in_client
from tests.conversations.conftest import (  # noqa: F401 - fast_password_hashing is an autouse fixture
    fast_password_hashing,
    make_contact,
    make_conversation,
    make_queue,
    make_task,
)

C = ConversationStatus


def changelist_url(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def populate(tenant: Tenant, label: str, agent: Membership) -> dict:
    """One of everything the admin shows, for `tenant`, named after `label`."""
    with tenant_context(tenant):
        dispositions_ensure_defaults(tenant=tenant)
        break_reasons_ensure_defaults(tenant=tenant)
        queue = make_queue(f"{label} Support")
        team = Team.objects.create(tenant=tenant, name=f"{label} Team")
        team.members.add(agent)
        skill = Skill.objects.create(tenant=tenant, name=f"{label} Spanish")
        AgentSkill.objects.create(tenant=tenant, membership=agent, skill=skill, level=3)
        AutomationRule.objects.create(tenant=tenant, name=f"{label} rule")
        ReplyTemplate.objects.create(tenant=tenant, name=f"{label} hello", shortcut=f"/{label.lower()}", body="Hi")
        SensitiveDataPattern.objects.create(tenant=tenant, name=f"{label} account", pattern=r"ACC-\d+")
        endpoint = ChannelEndpoint(
            tenant=tenant, provider=Provider.TWILIO, channel="sms", address=f"+1500555{tenant.pk:04d}"
        )
        endpoint.set_auth_token(f"{label}-secret-token")
        endpoint.save()
        InboundEvent.objects.create(
            tenant=tenant, endpoint=endpoint, provider=Provider.TWILIO, kind="messaging", path="/x"
        )
        contact = make_contact(phone=f"+1555999{tenant.pk:04d}", name=f"{label} Customer")
        conversation = make_conversation(contact, subject=f"{label} order question")
        message, _ = message_append_inbound(
            conversation=conversation, body=f"{label} message text", provider_message_id=f"{label}-1"
        )
        attachment_add(message=message, filename=f"{label}.txt", content=b"hello", content_type="text/plain")
        note_add(conversation=conversation, author=agent, body=f"{label} note")
        task = make_task(conversation, queue)
        conversation_assign(conversation=conversation, agent=agent, actor=agent)
        waiting = make_task(make_conversation(contact, subject=f"{label} waiting"), queue, status=TaskStatus.RESERVED)
        Offer.objects.create(tenant=tenant, task=waiting, agent=agent, expires_at=timezone.now() + timedelta(minutes=5))
        agent_set_status(membership=agent, status=AgentStatus.AVAILABLE, actor=agent)
        conversation.refresh_from_db()
        return {"queue": queue, "conversation": conversation, "task": task, "waiting": waiting, "endpoint": endpoint}


@pytest.fixture
def floor(acme, globex, acme_agent, acme_agent2, acme_supervisor, acme_admin, globex_agent, globex_supervisor):
    return {"acme": populate(acme, "Acme", acme_agent), "globex": populate(globex, "Globex", globex_agent)}


def tenant_of(obj) -> int | None:
    if isinstance(obj, Tenant):
        return obj.pk
    if isinstance(obj, get_user_model()):
        with dangerously_all_tenants():
            return obj.memberships.values_list("tenant_id", flat=True).first()
    return obj.tenant_id


def rows_of(model, tenant) -> list:
    with dangerously_all_tenants():
        if model is Tenant:
            return [tenant]
        if model is get_user_model():
            return list(model.objects.filter(memberships__tenant=tenant))
        if issubclass(model, TenantOwnedModel):
            return list(model.objects.filter(tenant=tenant))
    return []


# --- nobody of acme sees globex rows -------------------------------------------------------------------


def test_a_supervisor_sees_no_other_tenants_row_on_any_changelist_or_change_page(floor, acme, globex, acme_supervisor):
    client = signed_in_client(acme_supervisor)
    checked_pages = set()
    for model in admin.site._registry:
        response = client.get(changelist_url(model))
        if response.status_code == 403:
            # Users are an admin's, groups and unrouted requests an operator's.
            assert model._meta.label in {"auth.User", "auth.Group", "channels_inbound.UnroutedInboundEvent"}, model
            continue
        assert response.status_code == 200, model
        shown = list(response.context["cl"].result_list)
        assert all(tenant_of(obj) == acme.pk for obj in shown), model
        html = response.content.decode()
        assert "Globex" not in html and "globex" not in html, model
        for row in rows_of(model, globex):
            assert client.get(change_url(row)).status_code == 404, (model, row.pk)
            checked_pages.add(model._meta.label)
        for row in rows_of(model, acme)[:1]:
            page = client.get(change_url(row))
            assert page.status_code == 200, model
            assert "Globex" not in page.content.decode(), model
    assert {
        "tasks.Queue", "tasks.Team", "tasks.Skill", "tasks.AgentSkill", "tasks.Disposition", "tasks.BreakReason",
        "tasks.AgentState", "tasks.AgentStatusPeriod", "tasks.AutomationRule", "tasks.Task", "tasks.Offer",
        "conversations.Conversation", "conversations.Message", "conversations.Activity", "conversations.Contact",
        "conversations.InternalNote", "conversations.ReplyTemplate", "conversations.SensitiveDataPattern",
        "conversations.Attachment", "channels_inbound.ChannelEndpoint", "channels_inbound.InboundEvent",
        "contactcenter.Membership", "contactcenter.Tenant",
    } <= checked_pages  # fmt: skip


def test_no_action_confirmation_or_export_shows_another_tenants_rows(floor, acme, globex, acme_supervisor):
    client = signed_in_client(acme_supervisor)
    confirmations = 0
    for model, model_admin in admin.site._registry.items():
        acme_rows, globex_rows = rows_of(model, acme), rows_of(model, globex)
        if not acme_rows or not globex_rows:
            continue
        request = client.get(changelist_url(model)).wsgi_request
        for name in model_admin.get_actions(request):
            if name == "delete_selected":
                continue
            both = [acme_rows[0].pk, globex_rows[0].pk]
            response = client.post(changelist_url(model), {"action": name, "_selected_action": both})
            if response.status_code == 200 and response.context and "selected" in response.context:
                assert response.context["selected"] == [acme_rows[0].pk], (model, name)
                assert "Globex" not in response.content.decode(), (model, name)
                confirmations += 1
    assert confirmations >= 10  # conversations (6), tasks (2), agents (2)

    exported = client.post(
        changelist_url(Conversation),
        {"action": "export_csv", "confirmed": "yes",
         "_selected_action": [floor["acme"]["conversation"].pk, floor["globex"]["conversation"].pk]},
    )  # fmt: skip
    assert exported["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(exported.content.decode())))
    assert [line[0].removeprefix("'") for line in lines[1:]] == [floor["acme"]["conversation"].public_id]
    assert "Globex" not in exported.content.decode()


def test_applying_an_action_to_another_tenants_row_changes_nothing(floor, acme_supervisor):
    globex_conversation = floor["globex"]["conversation"]
    response = signed_in_client(acme_supervisor).post(
        changelist_url(Conversation),
        {"action": "mark_resolved", "_selected_action": [globex_conversation.pk], "confirmed": "yes", "reason": ""},
    )
    assert response.status_code == 302
    with dangerously_all_tenants():
        assert Conversation.objects.get(pk=globex_conversation.pk).status == C.ASSIGNED


def test_filter_choices_and_dropdowns_list_only_the_tenants_rows(floor, acme_supervisor):
    client = signed_in_client(acme_supervisor)
    changelist = client.get(changelist_url(Conversation)).content.decode()
    assert "Acme Support" in changelist and "Agent1" in changelist  # queue and agent filters
    assert "Globex" not in changelist
    add_queue = client.get(reverse("admin:tasks_queue_add")).content.decode()
    assert "Acme Spanish" in add_queue and "Globex" not in add_queue


def test_a_superuser_on_one_tenants_object_chooses_among_that_tenants_rows_only(floor, globex):
    root = get_user_model().objects.create_superuser(username="root", password="root-password-123")
    client = Client()
    client.force_login(root)
    page = client.get(change_url(floor["globex"]["queue"])).content.decode()
    assert "Globex Spanish" in page and "Acme Spanish" not in page
    add_page = client.get(reverse("admin:tasks_queue_add") + f"?tenant={globex.pk}").content.decode()
    assert "Globex Spanish" in add_page and "Acme Spanish" not in add_page
    everything = client.get(changelist_url(Queue)).content.decode()
    assert "Globex Support" in everything and "Acme Support" in everything
    defaults = form_defaults(client.get(reverse("admin:tasks_queue_add") + f"?tenant={globex.pk}"))
    response = client.post(
        reverse("admin:tasks_queue_add") + f"?tenant={globex.pk}", {**defaults, **QUEUE_FORM, "tenant": globex.pk}
    )
    assert response.status_code == 302, response.context["errors"]
    with dangerously_all_tenants():
        assert Queue.objects.get(name="Returns").tenant_id == globex.pk
    assert 'name="tenant"' in client.get(reverse("admin:tasks_automationrule_add")).content.decode()


# --- roles -----------------------------------------------------------------------------------------------


def test_agents_get_no_admin_page_and_no_action(floor, acme_agent):
    client = signed_in_client(acme_agent)
    assert client.get(reverse("admin:index")).status_code == 403
    assert client.get(changelist_url(Conversation)).status_code == 403
    conversation = floor["acme"]["conversation"]
    response = client.post(
        changelist_url(Conversation),
        {"action": "mark_resolved", "_selected_action": [conversation.pk], "confirmed": "yes"},
    )
    assert response.status_code == 403
    with tenant_context(conversation.tenant_id):
        conversation.refresh_from_db()
    assert conversation.status == C.ASSIGNED


def test_supervisors_cannot_edit_tenant_settings_memberships_or_users(floor, acme, acme_supervisor, acme_agent):
    client = signed_in_client(acme_supervisor)
    response = client.post(change_url(acme), {"name": "Renamed", "time_zone": "UTC", "auto_close_after_hours": 1})
    assert response.status_code == 403
    acme.refresh_from_db()
    assert acme.name == "Acme Support"
    response = client.post(change_url(acme_agent), {"user": acme_agent.user_id, "role": Role.ADMIN, "is_active": "on"})
    assert response.status_code == 403
    with tenant_context(acme):
        acme_agent.refresh_from_db()
    assert acme_agent.role == Role.AGENT
    assert client.get(reverse("admin:auth_user_add")).status_code == 403


def test_admins_manage_their_tenants_users_and_roles(floor, acme, acme_admin, acme_agent, globex_agent):
    client = signed_in_client(acme_admin)
    response = client.post(
        change_url(acme_agent),
        {"user": acme_agent.user_id, "role": Role.SUPERVISOR, "is_active": "on", "phone_number": ""},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    with tenant_context(acme):
        acme_agent.refresh_from_db()
    assert acme_agent.role == Role.SUPERVISOR
    response = client.post(
        reverse("admin:auth_user_add"),
        {"username": "acme-newcomer", "password1": "a-long-enough-pass-42", "password2": "a-long-enough-pass-42",
         "usable_password": "true"},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:3000]
    with tenant_context(acme):
        newcomer = Membership.objects.get(user__username="acme-newcomer")
    assert newcomer.role == Role.AGENT
    assert client.get(change_url(globex_agent)).status_code == 404
    assert client.get(change_url(globex_agent.user)).status_code == 404


# --- configuration -------------------------------------------------------------------------------------


def test_a_duplicate_queue_name_is_refused_on_the_form(floor, acme_supervisor):
    client = signed_in_client(acme_supervisor)
    defaults = form_defaults(client.get(reverse("admin:tasks_queue_add")))
    response = client.post(reverse("admin:tasks_queue_add"), {**defaults, **QUEUE_FORM, "name": "Acme Support"})
    assert response.status_code == 200
    assert "already exists" in response.content.decode()


def form_defaults(response) -> dict:
    """The values an add page starts with (fields other issues add to a model included)."""
    form = response.context["adminform"].form
    values = {}
    for name, field in form.fields.items():
        value = form.get_initial_for_field(field, name)
        if value is not None and not isinstance(value, (list, dict)):
            values[name] = "on" if value is True else value
        if value is False:
            del values[name]
    return values


QUEUE_FORM = {
    "name": "Returns", "channels": ["sms", "email"], "strategy": "round_robin", "offer_timeout_seconds": 30,
    "max_offers_per_task": 1, "missed_offers_before_unavailable": 3, "wrap_up_mode": "manual", "wrap_up_seconds": 60,
    "sla_urgent_seconds": 3600, "sla_high_seconds": 14400, "sla_normal_seconds": 86400, "sla_low_seconds": 172800,
    "sla_warning_seconds": 900, "follow_ups_before_escalation": 3, "business_hours": '{"0": [["09:00", "17:00"]]}',
}  # fmt: skip


def test_a_queue_is_configured_in_groups_and_its_business_hours_checked(floor, acme, acme_supervisor):
    client = signed_in_client(acme_supervisor)
    page = client.get(reverse("admin:tasks_queue_add")).content.decode()
    for group in ("Routing", "Wrap-up", "Service level", "Escalation", "Business hours"):
        assert group in page
    bad = client.post(reverse("admin:tasks_queue_add"), {**QUEUE_FORM, "business_hours": '{"0": [["17:00", "09:00"]]}'})
    assert bad.status_code == 200 and "does not go forward" in bad.content.decode()
    defaults = form_defaults(client.get(reverse("admin:tasks_queue_add")))
    response = client.post(reverse("admin:tasks_queue_add"), {**defaults, **QUEUE_FORM})
    assert response.status_code == 302, response.context["errors"]
    with tenant_context(acme):
        queue = Queue.objects.get(name="Returns")
    assert (queue.tenant_id, queue.channels, queue.business_hours) == (
        acme.pk,
        ["sms", "email"],
        {"0": [["09:00", "17:00"]]},
    )


def test_a_skill_lists_its_agents_and_levels(floor, acme, acme_supervisor, acme_agent2):
    client = signed_in_client(acme_supervisor)
    with tenant_context(acme):
        skill = Skill.objects.get(name="Acme Spanish")
        existing = AgentSkill.objects.get(skill=skill)
    response = client.post(
        change_url(skill),
        {"name": "Acme Spanish", "agents-TOTAL_FORMS": "2", "agents-INITIAL_FORMS": "1", "agents-MIN_NUM_FORMS": "0",
         "agents-MAX_NUM_FORMS": "1000", "agents-0-id": existing.pk, "agents-0-skill": skill.pk,
         "agents-0-membership": existing.membership_id, "agents-0-level": "5", "agents-1-skill": skill.pk,
         "agents-1-membership": acme_agent2.pk, "agents-1-level": "2"},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:3000]
    with tenant_context(acme):
        levels = dict(AgentSkill.objects.filter(skill=skill).values_list("membership_id", "level"))
    assert levels == {existing.membership_id: 5, acme_agent2.pk: 2}


def test_agents_capacity_and_allowed_queues_are_set_through_the_services(floor, acme, acme_supervisor, acme_agent):
    with tenant_context(acme):
        state = AgentState.objects.get(membership=acme_agent)
        state.served_queues.add(floor["acme"]["queue"])
        other = make_queue("Acme Billing")
    response = signed_in_client(acme_supervisor).post(
        change_url(state),
        {"allowed_queues": [other.pk], "capacity_sms": "5", "capacity_voice": "", "capacity_email": "0"},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    with tenant_context(acme):
        state = AgentState.objects.get(membership=acme_agent)
        assert state.capacity == {"sms": 5, "email": 0}
        assert list(state.allowed_queues.all()) == [other]
        assert list(state.served_queues.all()) == []  # served queues outside the allowed ones are dropped


def test_channel_endpoint_tokens_are_write_only(floor, acme, acme_supervisor):
    client = signed_in_client(acme_supervisor)
    endpoint = floor["acme"]["endpoint"]
    page = client.get(change_url(endpoint)).content.decode()
    assert "Acme-secret-token" not in page and "set (••••oken)" in page
    form = {
        "provider": "twilio",
        "channel": "sms",
        "address": endpoint.address,
        "is_active": "on",
        "clear_auth_token": "on",
    }
    assert client.post(change_url(endpoint), form).status_code == 302
    assert "not set" in client.get(change_url(endpoint)).content.decode()


# --- bulk actions ----------------------------------------------------------------------------------------


def bulk(client, action: str, conversations, **form):
    return client.post(
        changelist_url(Conversation), {"action": action, "_selected_action": [c.pk for c in conversations], **form}
    )


def activity_rows(kind, conversations) -> list[Activity]:
    with dangerously_all_tenants():
        return list(
            Activity.objects.filter(kind=kind, conversation__in=conversations, task=None).select_related("actor")
        )


@pytest.fixture
def selection(floor, acme, acme_agent):
    """Three acme conversations: assigned to acme_agent (normal), open (high), closed (low)."""
    with tenant_context(acme):
        contact = Contact.objects.get(name="Acme Customer")
        closed = make_conversation(contact, status=C.CLOSED, priority="low", subject="Closed one")
        opened = make_conversation(contact, status=C.OPEN, priority="high", subject="Open one")
    return [floor["acme"]["conversation"], opened, closed]


CONFIRMATIONS = [
    ("assign", "Assign the selected conversations"),
    ("add_tags", "Add tags to the selected conversations"),
    ("mark_resolved", "Resolve the selected conversations"),
    ("archive", "Archive the selected conversations"),
    ("change_priority", "Change the priority of the selected conversations"),
    ("export_csv", "Export the selected conversations"),
]


@pytest.mark.parametrize(("action", "title"), CONFIRMATIONS)
def test_each_bulk_action_first_shows_what_the_selection_is_now(selection, acme_supervisor, action, title):
    before = {c.pk: (c.status, c.priority, c.assignee_id, c.tags) for c in selection}
    response = bulk(signed_in_client(acme_supervisor), action, selection)
    assert response.status_code == 200
    html = response.content.decode()
    assert title in html
    summary = dict(response.context["summary"])
    assert dict(summary["Status now"]) == {"Assigned": 1, "Open": 1, "Closed": 1}
    assert dict(summary["Agent now"]) == {"Agent1": 1, "Nobody": 2}
    assert dict(summary["Priority now"]) == {"Normal": 1, "High": 1, "Low": 1}
    assert sorted(response.context["selected"]) == sorted(c.pk for c in selection)
    if action != "export_csv":
        assert "cannot be undone" in html
    with dangerously_all_tenants():
        after = {
            c.pk: (c.status, c.priority, c.assignee_id, c.tags) for c in Conversation.objects.filter(pk__in=before)
        }
    assert after == before  # nothing changes before the confirmation


def test_bulk_assign_gives_live_conversations_to_the_agent_and_logs_each(selection, acme_supervisor, acme_agent2):
    response = bulk(
        signed_in_client(acme_supervisor), "assign", selection, confirmed="yes", agent=acme_agent2.pk, note="Cover"
    )
    assert response.status_code == 302
    with dangerously_all_tenants():
        assignees = dict(
            Conversation.objects.filter(pk__in=[c.pk for c in selection]).values_list("subject", "assignee")
        )
    assert assignees == {"Acme order question": acme_agent2.pk, "Open one": acme_agent2.pk, "Closed one": None}
    with dangerously_all_tenants():
        rows = list(
            Activity.objects.filter(kind=ActivityKind.ASSIGNMENT, conversation__in=selection, actor=acme_supervisor)
        )
    # one row each: the conversation with a task logs it on the task (linked to both), the other on itself
    assert sorted((row.conversation_id, row.task_id is not None) for row in rows) == sorted(
        [(selection[0].pk, True), (selection[1].pk, False)]
    )
    assert {(row.via, row.new_value, row.reason) for row in rows} == {(Via.SUPERVISOR, "Agent2", "Cover")}


def test_bulk_add_tags_keeps_each_conversations_own_tags(selection, acme, acme_supervisor):
    with tenant_context(acme):
        Conversation.objects.filter(pk=selection[1].pk).update(tags=["billing"])
    response = bulk(signed_in_client(acme_supervisor), "add_tags", selection, confirmed="yes", tags="Refund, VIP")
    assert response.status_code == 302
    with tenant_context(acme):
        tags = dict(Conversation.objects.filter(pk__in=[c.pk for c in selection]).values_list("subject", "tags"))
    assert tags == {
        "Acme order question": ["refund", "vip"],
        "Open one": ["billing", "refund", "vip"],
        "Closed one": ["refund", "vip"],
    }
    assert len(activity_rows(ActivityKind.TAGS, selection)) == 3


def test_bulk_resolve_resolves_live_ones_cancels_their_tasks_and_logs_each(selection, floor, acme, acme_supervisor):
    response = bulk(signed_in_client(acme_supervisor), "mark_resolved", selection, confirmed="yes", reason="Spam wave")
    assert response.status_code == 302
    with tenant_context(acme):
        statuses = dict(Conversation.objects.filter(pk__in=[c.pk for c in selection]).values_list("subject", "status"))
        task = Task.objects.get(pk=floor["acme"]["task"].pk)
    assert statuses == {"Acme order question": C.RESOLVED, "Open one": C.RESOLVED, "Closed one": C.CLOSED}
    assert task.status == TaskStatus.CANCELED
    rows = activity_rows(ActivityKind.STATUS, selection)
    resolved = [row for row in rows if row.new_value == C.RESOLVED]
    assert {(row.old_value, row.actor_id, row.via, row.reason) for row in resolved} == {
        (C.ASSIGNED, acme_supervisor.pk, Via.SUPERVISOR, "Spam wave"),
        (C.OPEN, acme_supervisor.pk, Via.SUPERVISOR, "Spam wave"),
    }  # fmt: skip
    with tenant_context(acme):
        task_row = Activity.objects.get(task=task, new_value=TaskStatus.CANCELED)
    assert (task_row.old_value, task_row.actor_id) == (TaskStatus.ASSIGNED, acme_supervisor.pk)


def test_select_all_applies_to_the_filtered_list_without_posting_every_id(selection, acme, acme_supervisor):
    with tenant_context(acme):
        another = make_conversation(selection[1].contact, status=C.OPEN, subject="Another open one")
    client = signed_in_client(acme_supervisor)
    url = changelist_url(Conversation) + "?status__exact=open"
    form = {"action": "mark_resolved", "select_across": "1", "_selected_action": [selection[1].pk]}
    page = client.post(url, {**form, "index": "0"})
    assert page.status_code == 200 and page.context["count"] == 2 and len(page.context["selected"]) == 1
    assert 'name="select_across" value="1"' in page.content.decode()
    response = client.post(url, {**form, "confirmed": "yes"})
    assert response.status_code == 302
    with tenant_context(acme):
        rows = Conversation.objects.filter(pk__in=[c.pk for c in [*selection, another]])
        statuses = dict(rows.values_list("subject", "status"))
    assert statuses == {
        "Acme order question": C.ASSIGNED, "Open one": C.RESOLVED, "Another open one": C.RESOLVED, "Closed one": C.CLOSED,
    }  # fmt: skip


def test_bulk_archive_archives_closed_ones_only(selection, acme, acme_supervisor):
    response = bulk(signed_in_client(acme_supervisor), "archive", selection, confirmed="yes")
    assert response.status_code == 302
    with tenant_context(acme):
        statuses = dict(Conversation.objects.filter(pk__in=[c.pk for c in selection]).values_list("subject", "status"))
    assert statuses == {"Acme order question": C.ASSIGNED, "Open one": C.OPEN, "Closed one": C.ARCHIVED}
    rows = activity_rows(ActivityKind.STATUS, selection)
    assert [(row.old_value, row.new_value, row.actor_id) for row in rows if row.new_value == C.ARCHIVED] == [
        (C.CLOSED, C.ARCHIVED, acme_supervisor.pk)
    ]


def test_bulk_change_priority_moves_the_conversations_and_their_tasks(selection, floor, acme, acme_supervisor):
    response = bulk(signed_in_client(acme_supervisor), "change_priority", selection, confirmed="yes", priority="urgent")
    assert response.status_code == 302
    with tenant_context(acme):
        priorities = set(
            Conversation.objects.filter(pk__in=[c.pk for c in selection]).values_list("priority", flat=True)
        )
        task = Task.objects.get(pk=floor["acme"]["task"].pk)
    assert priorities == {"urgent"}
    assert task.priority == "critical"
    with tenant_context(acme):
        rows = list(
            Activity.objects.filter(kind=ActivityKind.PRIORITY, actor=acme_supervisor, conversation__in=selection)
        )
    assert sorted(row.old_value for row in rows) == ["high", "low", "normal"]


def test_bulk_export_writes_one_line_per_conversation_without_formulas(selection, acme, acme_supervisor):
    with tenant_context(acme):
        Contact.objects.filter(pk=selection[0].contact_id).update(name="=HYPERLINK(1)")
    response = bulk(signed_in_client(acme_supervisor), "export_csv", selection, confirmed="yes")
    lines = list(csv.DictReader(io.StringIO(response.content.decode())))
    # An id may start with "-", which the formula guard marks as text too.
    assert sorted(line["id"].removeprefix("'") for line in lines) == sorted(c.public_id for c in selection)
    assert {line["contact"] for line in lines} == {"'=HYPERLINK(1)"}
    assert {line["status"] for line in lines} == {"Assigned", "Open", "Closed"}


def make_many(tenant, count: int, agent, queue, label: str) -> list[Conversation]:
    """`count` live conversations of one contact, as a busy floor has them: a third assigned to `agent`
    with an assigned task, a third waiting with a reserved task and a pending offer, a third new."""
    with tenant_context(tenant):
        contact = make_contact(phone=f"+1555{count:07d}", name=f"{label} bulk")
        now = timezone.now()
        Conversation.objects.bulk_create(
            Conversation(tenant=tenant, contact=contact, channel="sms", subject=f"{label} {i}",
                         status=(C.ASSIGNED, C.OPEN, C.NEW)[i % 3], assignee=agent if i % 3 == 0 else None)
            for i in range(count)
        )  # fmt: skip
        conversations = list(Conversation.objects.filter(subject__startswith=f"{label} ").order_by("pk"))
        tasks = Task.objects.bulk_create(
            Task(tenant=tenant, kind=TaskKind.CONVERSATION, title="Work", channel="sms", queue=queue, conversation=c,
                 status=TaskStatus.ASSIGNED if c.assignee_id else TaskStatus.RESERVED, assignee=c.assignee)
            for c in conversations if c.status != C.NEW
        )  # fmt: skip
        Offer.objects.bulk_create(
            Offer(tenant=tenant, task=task, agent=agent, expires_at=now + timedelta(minutes=5))
            for task in tasks if task.status == TaskStatus.RESERVED
        )  # fmt: skip
    return conversations


def test_bulk_resolve_of_500_writes_500_rows_in_as_many_queries_as_50(floor, acme, acme_agent2, acme_supervisor):
    client = signed_in_client(acme_supervisor)
    client.get(changelist_url(Conversation))  # the session and its caches are warm for both runs
    counts = {}
    for count in (50, 500):
        queue = floor["acme"]["queue"]
        conversations = make_many(acme, count, acme_agent2, queue, label=f"Bulk{count}")
        with tenant_context(acme):
            before = Activity.objects.count()
        with CaptureQueriesContext(connection) as queries:
            response = bulk(client, "mark_resolved", conversations, confirmed="yes", reason="Clean-up")
        assert response.status_code == 302
        counts[count] = len(queries)
        with tenant_context(acme):
            assert Conversation.objects.filter(pk__in=[c.pk for c in conversations], status=C.RESOLVED).count() == count
            conversation_rows = Activity.objects.filter(
                conversation__in=conversations, task=None, kind=ActivityKind.STATUS, new_value=C.RESOLVED
            )
            assert conversation_rows.count() == count
            assert set(conversation_rows.values_list("actor", flat=True)) == {acme_supervisor.pk}
            tasks = Task.objects.filter(conversation__in=conversations)
            assert set(tasks.values_list("status", flat=True)) == {TaskStatus.CANCELED}
            offers = Offer.objects.filter(task__in=tasks)
            assert set(offers.values_list("status", flat=True)) == {OfferStatus.CANCELED}
            written = Activity.objects.count() - before
            # a row per conversation, per task and per withdrawn offer (a third of them reserved)
            assert written == count + tasks.count() + offers.count()
    assert counts[50] == counts[500], counts
    assert counts[500] < 60, counts


def test_the_confirmation_page_costs_the_same_for_500_as_for_50(floor, acme, acme_agent2, acme_supervisor):
    client = signed_in_client(acme_supervisor)
    client.get(changelist_url(Conversation))
    counts = {}
    for count in (50, 500):
        conversations = make_many(acme, count, acme_agent2, floor["acme"]["queue"], label=f"Page{count}")
        with CaptureQueriesContext(connection) as queries:
            response = bulk(client, "mark_resolved", conversations)
        assert response.status_code == 200 and len(response.context["selected"]) == count
        counts[count] = len(queries)
    assert counts[50] == counts[500], counts


@pytest.mark.parametrize("model", [Conversation, Task, Activity, Offer, AgentStatusPeriod])
def test_busy_lists_cost_as_many_queries_as_short_ones(floor, acme, acme_agent2, acme_supervisor, model):
    client = signed_in_client(acme_supervisor)
    client.get(changelist_url(model))
    counts = []
    for count in (3, 60):
        make_many(acme, count, acme_agent2, floor["acme"]["queue"], label=f"List{count}")
        with tenant_context(acme):
            agent_set_status(membership=acme_agent2, status=(AgentStatus.AVAILABLE, AgentStatus.OFFLINE)[count % 2])
        with CaptureQueriesContext(connection) as queries:
            assert client.get(changelist_url(model)).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


# --- stepping in ------------------------------------------------------------------------------------------


def test_a_supervisor_force_completes_a_stuck_task_with_a_disposition(floor, acme, acme_supervisor):
    task = floor["acme"]["task"]
    with tenant_context(acme):
        disposition = Disposition.objects.get(name="Escalation")
    client = signed_in_client(acme_supervisor)
    page = client.post(
        change_url(task), {"CHANGE_FORM-action": "complete_as_supervisor", "_selected_action": [task.pk]}
    )
    assert page.status_code == 200 and "Complete the selected tasks" in page.content.decode()
    response = client.post(
        change_url(task),
        {"CHANGE_FORM-action": "complete_as_supervisor", "_selected_action": [task.pk], "confirmed": "yes",
         "disposition": disposition.pk, "reason": "Agent went home"},
    )  # fmt: skip
    assert response.status_code == 302
    with tenant_context(acme):
        task.refresh_from_db()
        completion = Activity.objects.get(task=task, kind=ActivityKind.COMPLETION)
        disposition_row = Activity.objects.get(task=task, kind=ActivityKind.DISPOSITION)
    assert (task.status, task.disposition_id) == (TaskStatus.COMPLETED, disposition.pk)
    assert completion.reason == "Completed by supervisor: Agent went home"
    assert (completion.actor_id, completion.via, disposition_row.actor_id) == (
        acme_supervisor.pk,
        Via.SUPERVISOR,
        acme_supervisor.pk,
    )


def test_a_supervisor_gives_a_task_to_another_agent(floor, acme, acme_supervisor, acme_agent2):
    task = floor["acme"]["task"]
    response = signed_in_client(acme_supervisor).post(
        changelist_url(Task),
        {
            "action": "reassign",
            "_selected_action": [task.pk],
            "confirmed": "yes",
            "agent": acme_agent2.pk,
            "note": "Shift end",
        },
    )
    assert response.status_code == 302
    with tenant_context(acme):
        task.refresh_from_db()
        conversation = Conversation.objects.get(pk=task.conversation_id)
        row = Activity.objects.filter(task=task, kind=ActivityKind.ASSIGNMENT).latest("pk")
    assert (task.assignee_id, conversation.assignee_id) == (acme_agent2.pk, acme_agent2.pk)
    assert (row.actor_id, row.via, row.reason) == (acme_supervisor.pk, Via.SUPERVISOR, "Shift end")


def test_a_supervisor_sets_an_agent_unavailable(floor, acme, acme_supervisor, acme_agent):
    with tenant_context(acme):
        state = AgentState.objects.get(membership=acme_agent)
        lunch = BreakReason.objects.get(name="Lunch")
    response = signed_in_client(acme_supervisor).post(
        changelist_url(AgentState),
        {"action": "set_unavailable", "_selected_action": [state.pk], "confirmed": "yes", "break_reason": lunch.pk},
    )
    assert response.status_code == 302
    with tenant_context(acme):
        state.refresh_from_db()
        period = AgentStatusPeriod.objects.get(membership=acme_agent, ended_at=None)
    assert (state.status, state.break_reason_id) == (AgentStatus.UNAVAILABLE, lunch.pk)
    assert (period.status, period.break_reason_id, period.set_by_id) == (
        AgentStatus.UNAVAILABLE,
        lunch.pk,
        acme_supervisor.pk,
    )


def test_an_agents_own_status_change_names_nobody_as_setter(acme, acme_agent):
    with tenant_context(acme):
        agent_state_for(acme_agent)
        agent_set_status(membership=acme_agent, status=AgentStatus.AVAILABLE, actor=acme_agent)
        assert AgentStatusPeriod.objects.get(membership=acme_agent, ended_at=None).set_by_id is None


def test_step_in_actions_need_a_supervisor(floor, acme, globex_supervisor, acme_agent):
    make_member(acme, "acme-agent9")  # an acme membership the outsider cannot reach either
    task = floor["acme"]["task"]
    response = signed_in_client(globex_supervisor).post(
        changelist_url(Task), {"action": "complete_as_supervisor", "_selected_action": [task.pk], "confirmed": "yes"}
    )
    assert response.status_code == 302  # their own (empty) selection: nothing happens
    with tenant_context(acme):
        task.refresh_from_db()
    assert task.status == TaskStatus.ASSIGNED
