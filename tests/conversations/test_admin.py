"""Every model of the domain has a tenant-scoped admin; the activity log is read-only there."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from contactcenter.admin_site import TenantScopedAdmin
from tests.conftest import signed_in_client


@pytest.mark.parametrize("app_label", ["conversations", "tasks"])
def test_every_model_is_registered_with_the_scoped_admin(app_label):
    for model in apps.get_app_config(app_label).get_models():
        if model._meta.auto_created:
            continue
        assert isinstance(admin.site._registry.get(model), TenantScopedAdmin), model


def test_supervisor_sees_only_their_tenants_activity_and_cannot_change_it(world, globex_supervisor):
    client = signed_in_client(world.supervisor)
    changelist = client.get(reverse("admin:conversations_activity_changelist"))
    assert changelist.status_code == 200
    assert "assignment" in changelist.content.decode().lower()
    assert client.get(reverse("admin:conversations_activity_add")).status_code == 403
    from conversations.models import Activity

    row = Activity.objects.filter(conversation=world.live).first()
    change_url = reverse("admin:conversations_activity_change", args=[row.pk])
    assert client.post(change_url, {"reason": "rewritten"}).status_code == 403
    delete_url = reverse("admin:conversations_activity_delete", args=[row.pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert Activity.objects.get(pk=row.pk).reason == row.reason
    assert signed_in_client(globex_supervisor).get(change_url).status_code == 404


def test_supervisor_can_manage_dispositions_and_templates(world):
    client = signed_in_client(world.supervisor)
    for name in ("tasks_disposition", "tasks_queue", "tasks_automationrule", "conversations_replytemplate"):
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200, name
        assert client.get(reverse(f"admin:{name}_add")).status_code == 200, name


def test_a_contact_is_edited_in_the_admin_with_its_identities_shown(world):
    contact = world.live.contact
    client = signed_in_client(world.supervisor)
    url = reverse("admin:conversations_contact_change", args=[contact.pk])
    page = client.get(url).content.decode()
    assert "+15551230001" in page
    response = client.post(
        url,
        {"name": "Zoë Renamed", "is_vip": "on", "notes": "Prefers SMS", "identities-TOTAL_FORMS": "0",
         "identities-INITIAL_FORMS": "1", "identities-MIN_NUM_FORMS": "0", "identities-MAX_NUM_FORMS": "1000"},
    )  # fmt: skip
    assert response.status_code == 302
    contact.refresh_from_db()
    assert (contact.name, contact.is_vip, contact.identities.count()) == ("Zoë Renamed", True, 1)
