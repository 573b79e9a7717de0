"""Fixtures for tasks: the conversation factories and fixtures are shared with tests/conversations."""

import pytest

from tasks.models import AutomationRule, Task, TaskKind
from tasks.services import task_create
from tests.conversations.conftest import (  # noqa: F401 - fixtures re-exported for this directory
    dispositions,
    fast_password_hashing,
    listen,
    live,
    live_task,
    support,
    world,
)
from tests.tasks.floor_day import acme_agent3, floor_day  # noqa: F401 - the fixed day of tests/tasks/test_metrics.py


@pytest.fixture
def follow_up_rule(world) -> AutomationRule:
    """acme's rule: a conversation resolved with "Follow-up Required" → follow-up in 48 h, same agent."""
    return AutomationRule.objects.create(
        tenant=world.tenant,
        name="Follow up",
        disposition=world.dispositions["Follow-up Required"],
        follow_up_title="Call the customer back",
        due_in_hours=48,
        priority="high",
    )


@pytest.fixture
def todo(world) -> Task:
    """A follow-up on acme_agent's To Do list."""
    return task_create(kind=TaskKind.FOLLOW_UP, title="Call back", conversation=world.live, assignee=world.agent)
