"""Reads of tasks and dispositions."""

from tasks.models import Disposition, TaskKind
from tasks.selectors import dispositions_for_queue, tasks_of_agent
from tasks.services import task_create


def test_dispositions_for_a_queue_are_the_active_general_ones_and_its_own(world):
    Disposition.objects.create(tenant=world.tenant, name="Billing only", position=5).queues.add(world.billing)
    Disposition.objects.create(tenant=world.tenant, name="Retired", is_active=False)
    assert [d.name for d in dispositions_for_queue(world.support)] == list(world.dispositions)
    assert [d.name for d in dispositions_for_queue(world.billing)][0] == "Billing only"
    assert "Billing only" not in [d.name for d in dispositions_for_queue(None)]


def test_an_agents_work_is_what_they_hold_and_their_to_do_list(world):
    todo = task_create(kind=TaskKind.FOLLOW_UP, title="Call back", conversation=world.live, assignee=world.agent)
    task_create(kind=TaskKind.FOLLOW_UP, title="Not mine", conversation=world.live, assignee=world.agent2)
    assert set(tasks_of_agent(world.agent)) == {world.task, todo}
