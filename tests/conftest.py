"""Fixtures shared by every test: two tenants and their people.

Every fixture set has two tenants, acme and globex, so any test can point a user of one at the
other's data. Users: `acme_agent` (the owner of what a test creates), `acme_agent2` (a teammate),
`acme_supervisor`, `acme_admin`, and `globex_agent` / `globex_supervisor` (outsiders).
"""

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client, override_settings

from contactcenter.models import Membership, Role, Tenant
from contactcenter.tenancy import tenant_context

PASSWORD = "correct-horse-battery-staple"


def make_member(tenant: Tenant, username: str, role: Role = Role.AGENT) -> Membership:
    user = get_user_model().objects.create_user(
        username=username, password=PASSWORD, first_name=username.split("-")[-1].title()
    )
    with tenant_context(tenant):
        return Membership.objects.create(tenant=tenant, user=user, role=role)


def signed_in_client(membership: Membership) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


@pytest.fixture
def acme(db) -> Tenant:
    return Tenant.objects.create(name="Acme Support", slug="acme", time_zone="America/New_York")


@pytest.fixture
def globex(db) -> Tenant:
    return Tenant.objects.create(name="Globex Care", slug="globex", time_zone="Europe/London")


@pytest.fixture
def acme_agent(acme) -> Membership:
    return make_member(acme, "acme-agent1")


@pytest.fixture
def acme_agent2(acme) -> Membership:
    return make_member(acme, "acme-agent2")


@pytest.fixture
def acme_supervisor(acme) -> Membership:
    return make_member(acme, "acme-supervisor", Role.SUPERVISOR)


@pytest.fixture
def acme_admin(acme) -> Membership:
    return make_member(acme, "acme-admin", Role.ADMIN)


@pytest.fixture
def globex_agent(globex) -> Membership:
    return make_member(globex, "globex-agent1")


@pytest.fixture
def globex_supervisor(globex) -> Membership:
    return make_member(globex, "globex-supervisor", Role.SUPERVISOR)


@pytest.fixture
def in_acme(acme):
    """Run the test body inside acme's tenant context (as a request or job of acme would)."""
    with tenant_context(acme):
        yield acme


@pytest.fixture
def in_globex(globex):
    with tenant_context(globex):
        yield globex


@pytest.fixture
async def close_sync_thread_connections():
    """For async tests: close the connections that consumers opened in asgiref's sync thread.

    Left open, they keep the test database busy and pytest-django cannot drop it at the end.
    """
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Files a test stores go to its own folder, never into the run command's state folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def no_endpoints_kept_from_earlier_tests():
    """Webhooks keep the endpoints they read for a few seconds (channels_inbound.selectors); a test's
    rows are gone after it, so the next test must not find them there."""
    from channels_inbound.selectors import _endpoints_read

    _endpoints_read.clear()
    yield
    _endpoints_read.clear()


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """A new channel-layer instance per test. channels-redis binds some of its state (the receive
    lock, connection pools) to the event loop that first used it; tests run in many loops."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def worker_and_beat(transactional_db, tmp_path):
    """A real Celery worker and beat on the test database, stopped whatever the test does."""
    from tests.servers import CeleryWorkerAndBeat

    processes = CeleryWorkerAndBeat(tmp_path)
    try:
        processes.start()
        yield processes
    finally:
        processes.stop()


@pytest.fixture(autouse=True, scope="session")
def no_sign_in_failures_counted_from_earlier_runs():
    """Failed sign-ins are counted in Redis for 15 minutes (contactcenter/signin.py); runs that share a
    Redis and key prefix must not inherit the ones that earlier runs' wrong-password tests left."""
    from contactcenter.signin import signin_failures_clear

    for username in ("acme-agent1", "acme-agent2", "acme-supervisor", "acme-admin", "globex-agent1", "globex-supervisor"):
        signin_failures_clear(username=username, address="127.0.0.1")


@pytest.fixture
def broker():
    """The real Celery broker list on Redis (this test run's own queue), emptied first and after: what
    the code under test enqueued, as a worker would receive it."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(settings.CELERY_TASK_DEFAULT_QUEUE)
    yield client
    client.delete(settings.CELERY_TASK_DEFAULT_QUEUE)
    client.close()


@pytest.fixture
def fake_twilio():
    """A local HTTP server speaking Twilio's REST API for acme's and globex's accounts, which the
    product's Twilio client is pointed at (TWILIO_API_BASE_URL)."""
    from tests.channels_inbound.conftest import ACME_SID, ACME_TOKEN, GLOBEX_SID, GLOBEX_TOKEN
    from tests.fakes.twilio_api import FakeTwilioApi

    api = FakeTwilioApi({ACME_SID: ACME_TOKEN, GLOBEX_SID: GLOBEX_TOKEN}).start()
    with override_settings(TWILIO_API_BASE_URL=api.base_url):
        yield api
    api.stop()
