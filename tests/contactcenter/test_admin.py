"""The admin is scoped by tenant: supervisors and admins see only their tenant; agents get nothing."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from channels_inbound.models import ChannelEndpoint, Provider
from contactcenter.models import Membership
from contactcenter.tenancy import dangerously_all_tenants, tenant_context
from tests.conftest import signed_in_client


@pytest.fixture
def numbers(acme, globex):
    created = {}
    for tenant, address in ((acme, "+15005550001"), (globex, "+15005550002")):
        with tenant_context(tenant):
            endpoint = ChannelEndpoint(tenant=tenant, provider=Provider.TWILIO, channel="sms", address=address)
            endpoint.set_auth_token(f"{tenant.slug}-secret-auth-token")
            endpoint.save()
            created[tenant.slug] = endpoint
    return created


def change_url(obj):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def test_supervisor_changelists_show_only_their_tenant(acme_supervisor, globex_agent, numbers):
    client = signed_in_client(acme_supervisor)
    endpoints = client.get(reverse("admin:channels_inbound_channelendpoint_changelist")).content.decode()
    assert "+15005550001" in endpoints and "+15005550002" not in endpoints
    members = client.get(reverse("admin:contactcenter_membership_changelist")).content.decode()
    assert "acme-supervisor" in members and "globex-agent1" not in members
    tenants = client.get(reverse("admin:contactcenter_tenant_changelist")).content.decode()
    assert "Acme Support" in tenants and "Globex Care" not in tenants


def test_supervisor_asking_for_another_tenants_objects_gets_404(acme_supervisor, globex_agent, numbers, globex):
    client = signed_in_client(acme_supervisor)
    for url in (
        change_url(numbers["globex"]),
        change_url(globex_agent),
        change_url(globex),
        reverse("admin:channels_inbound_channelendpoint_delete", args=[numbers["globex"].pk]),
        reverse("admin:channels_inbound_channelendpoint_history", args=[numbers["globex"].pk]),
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "+15005550002" not in response.content.decode()
    assert client.get(change_url(numbers["acme"])).status_code == 200


def test_admin_of_a_tenant_sees_only_their_users(acme_admin, acme_agent, globex_agent):
    client = signed_in_client(acme_admin)
    users = client.get(reverse("admin:auth_user_changelist")).content.decode()
    assert "acme-agent1" in users and "globex-agent1" not in users
    assert client.get(change_url(globex_agent.user)).status_code == 404


def test_supervisor_cannot_manage_users_or_memberships(acme_supervisor, acme_agent):
    client = signed_in_client(acme_supervisor)
    assert client.get(reverse("admin:auth_user_changelist")).status_code == 403
    assert client.get(reverse("admin:contactcenter_membership_add")).status_code == 403


def test_a_new_endpoint_lands_in_the_supervisors_tenant(acme_supervisor, acme):
    client = signed_in_client(acme_supervisor)
    response = client.post(
        reverse("admin:channels_inbound_channelendpoint_add"),
        {"provider": "twilio", "channel": "whatsapp", "address": "whatsapp:+15005550009", "auth_token": "tok-123456789", "is_active": "on"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    with tenant_context(acme):
        created = ChannelEndpoint.objects.get(address="whatsapp:+15005550009")
    assert created.tenant_id == acme.pk
    assert created.auth_token() == "tok-123456789"
    assert "tok-123456789" not in created.auth_token_encrypted


def test_stored_auth_tokens_are_never_shown_back(acme_supervisor, numbers):
    html = signed_in_client(acme_supervisor).get(change_url(numbers["acme"])).content.decode()
    assert "acme-secret-auth-token" not in html
    assert "••••oken" in html


def test_agents_get_no_admin(acme_agent):
    assert signed_in_client(acme_agent).get(reverse("admin:index")).status_code == 403


def test_anonymous_users_are_sent_to_the_one_sign_in_page(db):
    response = Client().get(reverse("admin:index"))
    assert response.status_code == 302
    login = Client().get(response["Location"])
    assert login.status_code == 302 and login["Location"].startswith(reverse("login"))


def test_superusers_see_every_tenant(acme_agent, globex_agent, numbers):
    root = get_user_model().objects.create_superuser(username="root", password="root-password-123")
    client = Client()
    client.force_login(root)
    endpoints = client.get(reverse("admin:channels_inbound_channelendpoint_changelist")).content.decode()
    assert "+15005550001" in endpoints and "+15005550002" in endpoints
    assert client.get(change_url(numbers["globex"])).status_code == 200
    with dangerously_all_tenants():
        assert Membership.objects.count() == 2
