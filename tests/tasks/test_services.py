"""Task services: the TaskRouter table, assignment, completion with dispositions, automation rules."""

from datetime import timedelta

import pytest
from django.utils import timezone

from contactcenter.errors import AlreadyTaken, TransitionNotAllowed
from contactcenter.tenancy import tenant_context
from conversations.errors import ChangedMeanwhile, CrossTenantLink
from conversations.models import Activity
from conversations.services import conversation_end, conversation_set_priority
from tasks.errors import AssignmentNotAllowed, DispositionNotAllowed, DispositionRequired, TaskNotAllowed
from tasks.models import AutomationRule, Disposition, Task, TaskKind, TaskStatus, Team
from tasks.services import (
    DEFAULT_DISPOSITIONS,
    TASK_TRANSITIONS,
    dispositions_ensure_defaults,
    task_assign,
    task_complete,
    task_create,
    task_start,
    task_transition,
)
from tests.conversations.conftest import (
    activity_after,
    activity_mark,
    make_conversation,
    make_queue,
    make_task,
    snapshot,
)

S = TaskStatus
ALLOWED = [(old, new) for old, targets in TASK_TRANSITIONS.items() for new in sorted(targets)]
REFUSED = [(old, new) for old in S.values for new in S.values if new not in TASK_TRANSITIONS[old]]


def test_the_table_is_taskrouters():
    assert TASK_TRANSITIONS[S.RESERVED] >= {S.PENDING, S.ASSIGNED}
    assert TASK_TRANSITIONS[S.ASSIGNED] >= {S.PENDING, S.WRAPPING}
    assert TASK_TRANSITIONS[S.COMPLETED] == TASK_TRANSITIONS[S.CANCELED] == frozenset()
    assert len(ALLOWED) + len(REFUSED) == 36


@pytest.mark.parametrize(("old", "new"), REFUSED)
def test_every_transition_outside_the_table_is_refused_and_changes_nothing(in_acme, acme_agent, old, new):
    task = make_task(status=old, assignee=acme_agent)
    before = snapshot()
    with pytest.raises(TransitionNotAllowed):
        task_transition(task=task, to_status=new, actor=acme_agent)
    assert snapshot() == before


@pytest.mark.parametrize(("old", "new"), ALLOWED)
def test_every_transition_in_the_table_writes_one_status_row(in_acme, acme_agent, old, new):
    task = make_task(status=old, assignee=acme_agent)
    mark = activity_mark()
    task_transition(task=task, to_status=new, actor=acme_agent, reason="because")
    stored = Task.objects.get(pk=task.pk)
    assert stored.status == new
    assert (stored.completed_at is not None) == (new in (S.COMPLETED, S.CANCELED))
    assert activity_after(mark) == [("status", old, new)]
    row = Activity.objects.get(pk__gt=mark)
    assert (row.task, row.actor, row.reason, row.via) == (task, acme_agent, "because", "agent")


def test_an_assigned_task_needs_an_agent(in_acme):
    task = make_task()
    with pytest.raises(TransitionNotAllowed, match="no agent"):
        task_transition(task=task, to_status=S.ASSIGNED)


def test_a_stale_task_loses_the_compare_and_set(in_acme, acme_agent):
    task = make_task()
    stale = Task.objects.get(pk=task.pk)
    task_transition(task=task, to_status=S.CANCELED, actor=acme_agent)
    mark = activity_mark()
    with pytest.raises(ChangedMeanwhile, match="now canceled"):
        task_transition(task=stale, to_status=S.RESERVED, actor=acme_agent)
    assert activity_after(mark) == []


def test_a_task_of_another_tenant_cannot_be_moved(world, globex):
    with tenant_context(globex):
        foreign = make_task()
    with pytest.raises(CrossTenantLink):
        task_transition(task=foreign, to_status=S.CANCELED)


# --- creation ---------------------------------------------------------------------------------


def test_create_refuses_a_queue_that_does_not_take_the_channel_and_a_conversation_task_without_conversation(world):
    with pytest.raises(TaskNotAllowed, match="does not take WhatsApp"):
        whatsapp = make_conversation(channel="whatsapp")
        task_create(kind=TaskKind.CONVERSATION, title="x", conversation=whatsapp, queue=world.billing)
    with pytest.raises(TaskNotAllowed):
        task_create(kind=TaskKind.CONVERSATION, title="x")


def test_create_writes_one_created_row(world):
    mark = activity_mark()
    task = task_create(kind=TaskKind.INTERNAL, title="Restock leaflets", actor=world.supervisor, priority="low")
    assert (task.status, task.created_by, task.conversation) == ("pending", world.supervisor, None)
    assert activity_after(mark) == [("created", "", "internal")]
    assert Activity.objects.get(pk__gt=mark).via == "supervisor"


# --- assignment -------------------------------------------------------------------------------


def test_assigning_a_conversation_task_to_an_agent_assigns_it(in_acme, acme_agent, acme_supervisor, support):
    task = make_task(make_conversation(), support)
    mark = activity_mark()
    task_assign(task=task, agent=acme_agent, actor=acme_supervisor, note="Speaks Spanish")
    assert (Task.objects.get(pk=task.pk).status, Task.objects.get(pk=task.pk).assignee) == ("assigned", acme_agent)
    assert activity_after(mark) == [("status", "pending", "assigned"), ("assignment", "nobody", "Agent1")]
    assert Activity.objects.filter(pk__gt=mark, kind="assignment").get().reason == "Speaks Spanish"


def test_a_follow_up_given_to_an_agent_stays_on_their_to_do_list(todo, world):
    mark = activity_mark()
    task_assign(task=todo, agent=world.agent2, actor=world.supervisor)
    stored = Task.objects.get(pk=todo.pk)
    assert (stored.status, stored.assignee, stored.status_label) == ("pending", world.agent2, "To Do")
    assert activity_after(mark) == [("assignment", "Agent1", "Agent2")]


def test_giving_a_task_to_a_team_requeues_it(world):
    team = Team.objects.create(tenant=world.tenant, name="Tier 2")
    task_assign(task=world.task, team=team, actor=world.supervisor)
    stored = Task.objects.get(pk=world.task.pk)
    assert (stored.status, stored.assignee, stored.team) == ("pending", None, team)


def test_giving_it_to_whoever_holds_it_writes_nothing(world):
    before = snapshot()
    task_assign(task=world.task, agent=world.agent, actor=world.agent)
    assert snapshot() == before


def test_assignment_refusals_change_nothing(world, globex_agent):
    before = snapshot()
    with pytest.raises(CrossTenantLink):
        task_assign(task=world.task, agent=globex_agent, actor=world.supervisor)
    with pytest.raises(AssignmentNotAllowed):
        task_assign(task=world.task, actor=world.supervisor)
    with pytest.raises(AssignmentNotAllowed):
        task_assign(task=world.task, agent=world.agent2, team=Team(tenant=world.tenant, pk=1), actor=world.supervisor)
    conversation_end(conversation=world.live, actor=world.agent)
    wrapping = Task.objects.get(pk=world.task.pk)
    before = snapshot()
    with pytest.raises(TransitionNotAllowed):
        task_assign(task=wrapping, agent=world.agent2, actor=world.supervisor)
    assert snapshot() == before


def test_a_stale_assignment_is_told_who_took_the_task(world, acme_admin):
    stale = Task.objects.get(pk=world.task.pk)
    task_assign(task=world.task, agent=world.agent2, actor=world.supervisor)
    with pytest.raises(AlreadyTaken, match="already taken by Agent2"):
        task_assign(task=stale, agent=acme_admin, actor=acme_admin)


def test_starting_a_follow_up_moves_it_to_in_progress(todo, world):
    with pytest.raises(TaskNotAllowed):
        task_start(task=todo, actor=world.agent2)
    task_start(task=todo, actor=world.agent)
    assert Task.objects.get(pk=todo.pk).status_label == "In Progress"
    with pytest.raises(TaskNotAllowed):
        task_start(task=world.task, actor=world.agent)


# --- completion and dispositions --------------------------------------------------------------


def test_completing_without_the_disposition_the_queue_requires_is_refused(world):
    conversation_end(conversation=world.live, actor=world.agent)
    task = Task.objects.get(pk=world.task.pk)
    before = snapshot()
    with pytest.raises(DispositionRequired, match="Support queue needs one"):
        task_complete(task=task, actor=world.agent, notes="done")
    assert snapshot() == before


def test_completion_writes_completion_and_disposition_rows(world):
    conversation_end(conversation=world.live, actor=world.agent)
    task = Task.objects.get(pk=world.task.pk)
    mark = activity_mark()
    task_complete(task=task, actor=world.agent, disposition=world.dispositions["Resolved"], notes="Refund sent")
    stored = Task.objects.get(pk=task.pk)
    assert (stored.status, stored.disposition.name, stored.completion_notes) == ("completed", "Resolved", "Refund sent")
    assert activity_after(mark) == [("completion", "wrapping", "completed"), ("disposition", "", "Resolved")]
    assert Task.objects.count() == 1  # no rule, no follow-up


def test_a_disposition_limited_to_other_queues_inactive_or_foreign_is_refused(world, globex):
    world.dispositions["Escalation"].queues.add(world.billing)
    retired = Disposition.objects.create(tenant=world.tenant, name="Old code", is_active=False)
    with tenant_context(globex):
        dispositions_ensure_defaults(tenant=globex)
        foreign = Disposition.objects.get(name="Resolved")
    conversation_end(conversation=world.live, actor=world.agent)
    task = Task.objects.get(pk=world.task.pk)
    before = snapshot()
    with pytest.raises(DispositionNotAllowed, match="not used in this task's queue"):
        task_complete(task=task, actor=world.agent, disposition=world.dispositions["Escalation"])
    with pytest.raises(DispositionNotAllowed, match="no longer in use"):
        task_complete(task=task, actor=world.agent, disposition=retired)
    with pytest.raises(CrossTenantLink):
        task_complete(task=task, actor=world.agent, disposition=foreign)
    assert snapshot() == before


def test_a_follow_up_rule_fires_in_the_completion_transaction(world, follow_up_rule):
    conversation_set_priority(conversation=world.live, priority="urgent", actor=world.agent)
    conversation_end(conversation=world.live, actor=world.agent)
    task = Task.objects.get(pk=world.task.pk)
    mark = activity_mark()
    before_completion = timezone.now()
    task_complete(task=task, actor=world.agent, disposition=world.dispositions["Follow-up Required"])
    follow_up = Task.objects.get(kind=TaskKind.FOLLOW_UP)
    assert (follow_up.conversation, follow_up.assignee, follow_up.rule) == (world.live, world.agent, follow_up_rule)
    assert (follow_up.title, follow_up.priority, follow_up.status_label) == ("Call the customer back", "high", "To Do")
    assert before_completion + timedelta(hours=48) <= follow_up.due_at <= timezone.now() + timedelta(hours=48)
    assert activity_after(mark) == [
        ("completion", "wrapping", "completed"),
        ("disposition", "", "Follow-up Required"),
        ("created", "", "follow_up"),
    ]
    created = Activity.objects.filter(pk__gt=mark, kind="created").get()
    assert (created.via, created.actor, created.reason) == ("rule", None, "Rule “Follow up”")


def test_a_rule_without_its_priority_takes_the_conversations_and_can_go_to_a_team(world, follow_up_rule):
    team = Team.objects.create(tenant=world.tenant, name="Callbacks")
    AutomationRule.objects.filter(pk=follow_up_rule.pk).update(priority="", assign_to="team", team=team)
    conversation_set_priority(conversation=world.live, priority="urgent", actor=world.agent)
    conversation_end(conversation=world.live, actor=world.agent)
    task = Task.objects.get(pk=world.task.pk)
    task_complete(task=task, actor=world.agent, disposition=world.dispositions["Follow-up Required"])
    follow_up = Task.objects.get(kind=TaskKind.FOLLOW_UP)
    assert (follow_up.priority, follow_up.team, follow_up.assignee) == ("critical", team, None)


@pytest.mark.parametrize("variant", ["other disposition", "inactive rule"])
def test_rules_that_do_not_match_create_nothing(world, follow_up_rule, variant):
    disposition = world.dispositions["Resolved" if variant == "other disposition" else "Follow-up Required"]
    if variant == "inactive rule":
        AutomationRule.objects.filter(pk=follow_up_rule.pk).update(is_active=False)
    conversation_end(conversation=world.live, actor=world.agent)
    task_complete(task=Task.objects.get(pk=world.task.pk), actor=world.agent, disposition=disposition)
    assert not Task.objects.filter(kind=TaskKind.FOLLOW_UP).exists()


def test_a_conversation_resolved_without_an_agents_task_fires_rules_without_disposition(world):
    AutomationRule.objects.create(tenant=world.tenant, name="Always", follow_up_title="Survey", assign_to="same_agent")
    AutomationRule.objects.create(
        tenant=world.tenant, name="Only follow-ups", disposition=world.dispositions["Follow-up Required"]
    )
    conversation = make_conversation()
    conversation_end(conversation=conversation, actor=world.supervisor)
    assert list(Task.objects.filter(kind=TaskKind.FOLLOW_UP).values_list("title", "conversation")) == [
        ("Survey", conversation.pk)
    ]


def test_an_internal_task_completes_without_disposition(world):
    task = task_create(kind=TaskKind.INTERNAL, title="Restock", queue=world.support, assignee=world.agent)
    task_start(task=task, actor=world.agent)
    task_complete(task=task, actor=world.agent)
    assert Task.objects.get(pk=task.pk).status_label == "Resolved"


def test_default_dispositions_are_ensured_once_in_order(in_acme, globex):
    assert [d.name for d in dispositions_ensure_defaults(tenant=in_acme)] == list(DEFAULT_DISPOSITIONS)
    assert dispositions_ensure_defaults(tenant=in_acme) == []
    assert list(Disposition.objects.values_list("name", flat=True)) == list(DEFAULT_DISPOSITIONS)
    with tenant_context(globex):
        assert len(dispositions_ensure_defaults(tenant=globex)) == 3
    assert make_queue("Sales").takes("voice")
