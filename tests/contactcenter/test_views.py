"""Sign-in, pages, the tenant switcher and health endpoints."""

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from contactcenter.middleware import SESSION_TENANT_KEY
from contactcenter.models import Membership, Role
from contactcenter.tenancy import tenant_context
from tests.conftest import PASSWORD, signed_in_client


def test_sign_in_with_the_login_form_lands_on_the_desktop(acme_agent):
    client = Client()
    page = client.get(reverse("login"))
    assert page.status_code == 200
    html = page.content.decode()
    assert '<label for="id_username">Username</label>' in html and 'autocomplete="current-password"' in html

    response = client.post(reverse("login"), {"username": "acme-agent1", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("home")
    assert "Acme Support" in response.content.decode()


def test_a_wrong_password_is_refused_with_a_message(acme_agent):
    response = Client().post(reverse("login"), {"username": "acme-agent1", "password": "nope"})
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    assert "_auth_user_id" not in response.client.session


def test_anonymous_users_are_sent_to_sign_in(db):
    response = Client().get(reverse("team"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_sign_out_ends_the_session(acme_agent):
    client = signed_in_client(acme_agent)
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("home")).status_code == 302


def test_team_page_lists_only_the_current_tenants_people(acme_agent, acme_agent2, globex_agent):
    html = signed_in_client(acme_agent).get(reverse("team")).content.decode()
    assert "acme-agent1" in html and "acme-agent2" in html
    assert "globex" not in html


def test_team_member_page_checks_ownership(acme_agent, acme_agent2, globex_agent):
    client = signed_in_client(acme_agent)
    assert client.get(reverse("team-member", args=[acme_agent2.public_id])).status_code == 200
    outsider_view = client.get(reverse("team-member", args=[globex_agent.public_id]))
    assert outsider_view.status_code == 404
    assert "globex" not in outsider_view.content.decode()


def test_tenant_switcher_moves_between_the_users_own_tenants(acme_agent, globex):
    with tenant_context(globex):
        Membership.objects.create(tenant=globex, user=acme_agent.user, role=Role.SUPERVISOR)
    client = signed_in_client(acme_agent)
    assert "Acme Support" in client.get(reverse("home")).content.decode()

    response = client.post(reverse("tenant-switch"), {"tenant": "globex"}, follow=True)
    assert "Now working in Globex Care" in response.content.decode()
    assert client.session[SESSION_TENANT_KEY] == globex.pk
    assert "Globex Care" in client.get(reverse("home")).content.decode()


def test_tenant_switcher_refuses_a_tenant_the_user_is_not_in(acme_agent, globex):
    client = signed_in_client(acme_agent)
    response = client.post(reverse("tenant-switch"), {"tenant": "globex"}, follow=True)
    assert "not a member of that organisation" in response.content.decode()
    assert SESSION_TENANT_KEY not in client.session
    # A forged session value is ignored too: membership decides, not the session.
    session = client.session
    session[SESSION_TENANT_KEY] = globex.pk
    session.save()
    assert "Acme Support" in client.get(reverse("home")).content.decode()


def test_a_user_without_membership_is_told_so(db):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="loner", password=PASSWORD)
    client = Client()
    client.force_login(user)
    response = client.get(reverse("home"))
    assert response.status_code == 403
    assert "not a member of any tenant" in response.content.decode()


def test_healthz_answers_while_the_process_lives(db):
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_is_ok_when_postgres_and_redis_answer(db):
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"postgres": "ok", "redis": "ok"}


@pytest.mark.django_db
def test_readyz_is_503_naming_redis_when_redis_is_unreachable():
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):  # nothing listens on port 1
        response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["postgres"] == "ok"
    assert "ConnectionError" in body["checks"]["redis"]
