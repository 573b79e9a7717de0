"""Reads: reply templates, identities, history, scheduled messages due."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from contactcenter.tenancy import tenant_context
from conversations.models import ReplyTemplate
from conversations.selectors import (
    contact_by_identity,
    conversation_history,
    reply_template_render,
    reply_templates_matching,
    scheduled_messages_due,
)
from conversations.services import message_schedule
from tests.conversations.conftest import make_contact


def make_template(tenant, shortcut="/hello", body="Hi {{contact.name}}, this is {{agent.name}}."):
    return ReplyTemplate.objects.create(tenant=tenant, name="Greeting", shortcut=shortcut, body=body)


def test_a_template_renders_contact_and_agent_names(in_acme, acme_agent):
    template = make_template(in_acme)
    contact = make_contact(name="Zoë <b>")
    assert reply_template_render(template=template, contact=contact, agent=acme_agent) == "Hi Zoë <b>, this is Agent1."
    nameless = make_contact("+15550000002", name="")
    assert reply_template_render(template=template, contact=nameless, agent=acme_agent) == "Hi there, this is Agent1."


def test_shortcuts_are_unique_per_tenant_and_well_formed(in_acme, globex):
    make_template(in_acme)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_template(in_acme)
    with tenant_context(globex):
        make_template(globex)  # the same shortcut in another tenant is fine
    with pytest.raises(ValidationError):
        ReplyTemplate(tenant=in_acme, name="x", shortcut="hello there", body="x").full_clean()


def test_templates_matching_what_the_agent_typed(in_acme, globex):
    make_template(in_acme, "/hello")
    make_template(in_acme, "/help")
    make_template(in_acme, "/refund")
    with tenant_context(globex):
        make_template(globex, "/hey")
    assert sorted(t.shortcut for t in reply_templates_matching("/he")) == ["/hello", "/help"]
    assert [t.shortcut for t in reply_templates_matching("ref")] == ["/refund"]


def test_contact_by_identity_matches_across_phone_and_whatsapp(in_acme):
    contact = make_contact("+15550100077")
    assert contact_by_identity(kind="whatsapp", value="whatsapp:+15550100077") == contact
    assert contact_by_identity(kind="phone", value="+15550100078") is None


def test_history_lists_conversation_and_task_rows_in_order(world):
    kinds = [row.kind for row in conversation_history(world.live)]
    assert kinds[0] == "created" and "assignment" in kinds
    assert any(row.task_id == world.task.pk for row in conversation_history(world.live))


def test_scheduled_messages_due_across_tenants(world):
    soon = message_schedule(
        conversation=world.live, author=world.agent, body="soon", send_at=timezone.now() + timedelta(seconds=1)
    )
    later = timezone.now() + timedelta(days=1)
    message_schedule(conversation=world.live, author=world.agent, body="later", send_at=later)
    assert scheduled_messages_due(now=timezone.now() + timedelta(minutes=1)) == [(world.tenant.pk, soon.pk)]
