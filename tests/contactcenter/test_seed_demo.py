"""`manage.py seed_demo`: the demo tenants, people and endpoints, idempotently."""

from io import StringIO

from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.db import connection

from channels_inbound.models import ChannelEndpoint
from contactcenter.models import Membership, Tenant
from contactcenter.tenancy import dangerously_all_tenants


def row_counts() -> dict[str, int]:
    counts = {}
    # Every tenant's rows: row-level security shows raw SQL none of them outside a tenant.
    with dangerously_all_tenants(), connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT count(*) FROM "{table}"')
            counts[table] = cursor.fetchone()[0]
    return counts


def test_seed_demo_creates_the_demo_tenants_people_and_numbers(db):
    call_command("seed_demo", stdout=StringIO())
    assert sorted(Tenant.objects.values_list("slug", flat=True)) == ["acme", "globex"]
    for slug in ("acme", "globex"):
        for suffix in ("admin", "supervisor", "agent1", "agent2", "agent3"):
            assert authenticate(username=f"{slug}-{suffix}", password="switchboard-demo") is not None
    with dangerously_all_tenants():
        roles = dict(Membership.objects.filter(tenant__slug="acme").values_list("user__username", "role"))
        endpoints = {e.address: e for e in ChannelEndpoint.objects.select_related("tenant")}
    assert roles == {
        "acme-admin": "admin",
        "acme-supervisor": "supervisor",
        "acme-agent1": "agent",
        "acme-agent2": "agent",
        "acme-agent3": "agent",
    }
    assert endpoints["+15005550001"].tenant.slug == "acme"
    assert endpoints["+15005550001"].account_sid == "AC" + "a" * 32
    assert endpoints["+15005550001"].auth_token() == "acme-demo-auth-token"
    assert endpoints["+15005550002"].tenant.slug == "globex"
    assert endpoints["+15005550002"].account_sid == "AC" + "b" * 32
    assert endpoints["+15005550002"].auth_token() == "globex-demo-auth-token"
    # The token is encrypted at rest, not stored as typed.
    assert "globex-demo-auth-token" not in endpoints["+15005550002"].auth_token_encrypted
    # The demo agents serve Support, so going Available on the desktop brings the demo traffic.
    from tasks.models import AgentState

    with dangerously_all_tenants():
        served = dict(AgentState.objects.values_list("membership__user__username", "served_queues__name"))
    assert served == {f"{slug}-agent{n}": "Support" for slug in ("acme", "globex") for n in (1, 2, 3)}


def test_seed_demo_twice_changes_nothing(db):
    call_command("seed_demo", stdout=StringIO())
    user = get_user_model().objects.get(username="acme-agent1")
    user.set_password("a-password-the-agent-chose")
    user.save()
    before = row_counts()

    output = StringIO()
    call_command("seed_demo", stdout=output)
    assert "nothing changed" in output.getvalue()
    assert row_counts() == before
    assert authenticate(username="acme-agent1", password="a-password-the-agent-chose") is not None
