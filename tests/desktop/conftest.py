"""Agents at work on the desktop: acme's Support queue with two agents ready to take work."""

import pytest

from contactcenter.tenancy import tenant_context
from tasks.models import AgentStatus
from tests.conversations.conftest import fast_password_hashing, make_queue  # noqa: F401 - autouse fixture
from tests.tasks.routing_helpers import make_agent


@pytest.fixture
def support(acme):
    with tenant_context(acme):
        return make_queue("Support", channels=["sms", "webchat"])


@pytest.fixture
def agent(acme, support):
    """acme-agent1, available in Support."""
    with tenant_context(acme):
        return make_agent(acme, "acme-agent1", [support])


@pytest.fixture
def teammate(acme, support):
    """acme-agent2, serving Support but unavailable until a test says otherwise."""
    with tenant_context(acme):
        return make_agent(acme, "acme-agent2", [support], status=AgentStatus.OFFLINE)
