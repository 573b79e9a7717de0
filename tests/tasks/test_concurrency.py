"""Two concurrent changes of one task on real PostgreSQL: exactly one winner, one activity row."""

import pytest

from contactcenter.errors import AlreadyTaken
from contactcenter.tenancy import tenant_context
from conversations.errors import ChangedMeanwhile
from conversations.models import Activity
from tasks.models import Task
from tasks.services import task_assign, task_transition
from tests.conversations.conftest import make_conversation, make_queue, make_task, race

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("first", "second"), [("canceled", "canceled"), ("reserved", "canceled"), ("assigned", "canceled")]
)
def test_two_concurrent_status_changes_have_exactly_one_winner(acme, acme_agent, first, second):
    with tenant_context(acme):
        task = make_task(make_conversation(), make_queue(), assignee=acme_agent)
        # Each thread acts on the pending task it saw before the race.
        views = [Task.objects.get(pk=task.pk), Task.objects.get(pk=task.pk)]

    def change(view, to_status):
        def act():
            with tenant_context(acme.pk):
                return task_transition(task=view, to_status=to_status, actor=acme_agent)

        return act

    results = race(change(views[0], first), change(views[1], second))
    winners = [r for r in results if isinstance(r, Task)]
    losers = [r for r in results if isinstance(r, ChangedMeanwhile)]
    assert len(winners) == 1 and len(losers) == 1, results
    with tenant_context(acme):
        rows = list(Activity.objects.filter(task=task, kind="status").values_list("old_value", "new_value"))
        assert rows == [("pending", winners[0].status)]
        assert Task.objects.get(pk=task.pk).status == winners[0].status


def test_two_agents_taking_the_same_task_at_once_one_gets_already_taken(acme, acme_agent, acme_agent2):
    with tenant_context(acme):
        task = make_task(make_conversation(), make_queue())
        views = {agent.pk: Task.objects.get(pk=task.pk) for agent in (acme_agent, acme_agent2)}

    def take(agent):
        def act():
            with tenant_context(acme.pk):
                return task_assign(task=views[agent.pk], agent=agent, actor=agent)

        return act

    results = race(take(acme_agent), take(acme_agent2))
    winners = [r for r in results if isinstance(r, Task)]
    losers = [r for r in results if isinstance(r, AlreadyTaken)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert f"already taken by {winners[0].assignee.display_name}" in str(losers[0])
    with tenant_context(acme):
        assert Activity.objects.filter(task=task, kind="assignment").count() == 1
        assert Activity.objects.filter(task=task, kind="status").count() == 1
        assert Task.objects.get(pk=task.pk).assignee_id == winners[0].assignee_id
