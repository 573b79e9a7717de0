"""The timer sweeps in batches: the bulk forms write what the single ones write, in a fixed number of
statements; two sweeps at once act on each row once; one failing row undoes nothing else."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contactcenter.errors import TransitionNotAllowed
from contactcenter.tenancy import dangerously_all_tenants, tenant_context
from conversations.models import Activity, Conversation, ConversationPriority, ConversationStatus
from tasks import timers
from tasks.models import AgentState, AgentStatus, Offer, OfferStatus, SlaState, Task, TaskStatus
from tasks.services import (
    agent_set_status,
    agent_state_for,
    offer_time_out,
    offers_time_out,
    task_transition_many,
)
from tests.conftest import make_member
from tests.conversations.conftest import make_conversation, make_queue, make_task, race

NOW = timezone.now


def expired_offer(task: Task, agent) -> Offer:
    return Offer.objects.create(
        tenant_id=task.tenant_id, task=task, agent=agent, expires_at=NOW() - timedelta(seconds=1)
    )


def reserved_task(queue) -> Task:
    return make_task(make_conversation(), queue, status=TaskStatus.RESERVED)


def breached_task(queue, **conversation_columns) -> Task:
    conversation = make_conversation(waiting_since=NOW() - timedelta(hours=2), **conversation_columns)
    return make_task(
        conversation, queue, sla_state=SlaState.WARNING, sla_warning_at=NOW() - timedelta(minutes=30),
        first_response_due_at=NOW() - timedelta(seconds=1),
    )  # fmt: skip


def story(tasks: list[Task], names: dict[str, str]) -> list[list[tuple]]:
    """Each task's activity rows since it was made (kind, old, new, reason, via, actor), agents' names
    replaced by their part."""

    def plain(text: str) -> str:
        for name, part in names.items():
            text = text.replace(name, part)
        return text

    return [
        [
            (kind, old, new, plain(reason), via, actor)
            for kind, old, new, reason, via, actor in Activity.objects.filter(task=task)
            .exclude(kind="created")
            .order_by("pk")
            .values_list("kind", "old_value", "new_value", "reason", "via", "actor_id")
        ]
        for task in tasks
    ]


def offers_scenario(queue, first, second) -> tuple[list[Task], list[Offer]]:
    """Three reserved tasks: one offered to both agents (both expire: it goes back to pending), one to
    the first agent only, one to both where only the first agent's offer expires (it stays reserved)."""
    both, alone, half = reserved_task(queue), reserved_task(queue), reserved_task(queue)
    expiring = [expired_offer(both, first), expired_offer(both, second), expired_offer(alone, first)]
    expiring.append(expired_offer(half, first))
    Offer.objects.create(tenant_id=half.tenant_id, task=half, agent=second, expires_at=NOW() + timedelta(minutes=5))
    return [both, alone, half], expiring


def test_the_bulk_timeout_writes_the_same_rows_and_state_as_the_single_one(in_acme, acme_supervisor):
    queue = make_queue(channels=["sms"], offer_timeout_seconds=20, missed_offers_before_unavailable=2)
    one_by_one = [make_member(in_acme, "acme-single1"), make_member(in_acme, "acme-single2")]
    in_bulk = [make_member(in_acme, "acme-bulk1"), make_member(in_acme, "acme-bulk2")]
    for agent in (*one_by_one, *in_bulk):
        agent_set_status(membership=agent, status=AgentStatus.AVAILABLE)
    single_tasks, single_offers = offers_scenario(queue, *one_by_one)
    bulk_tasks, bulk_offers = offers_scenario(queue, *in_bulk)

    for offer in single_offers:
        assert offer_time_out(offer=Offer.objects.get(pk=offer.pk)) is True
    assert {offer.pk for offer in offers_time_out(offers=bulk_offers)} == {offer.pk for offer in bulk_offers}

    def state(tasks, offers, agents):
        return (
            [Task.objects.get(pk=task.pk).status for task in tasks],
            [Offer.objects.get(pk=offer.pk).status for offer in offers],
            [AgentState.objects.values_list("status", "consecutive_missed_offers").get(membership=a) for a in agents],
        )

    single_state = state(single_tasks, single_offers, one_by_one)
    assert single_state == state(bulk_tasks, bulk_offers, in_bulk)
    assert single_state[0] == [TaskStatus.PENDING, TaskStatus.PENDING, TaskStatus.RESERVED]
    assert single_state[2][0] == (AgentStatus.UNAVAILABLE, 3)  # three missed in a row, the limit is two
    single_story = story(single_tasks, {"Single1": "first", "Single2": "second"})
    assert single_story == story(bulk_tasks, {"Bulk1": "first", "Bulk2": "second"})
    assert single_story[0] == [
        ("status", "offer pending", "offer timed_out", "first: No answer within 20s.", "system", None),
        ("status", "offer pending", "offer timed_out", "second: No answer within 20s.", "system", None),
        ("status", "reserved", "pending", "The offer to second timed out.", "system", None),
    ]


def test_the_bulk_breach_writes_the_same_rows_and_state_as_the_single_one(in_acme):
    escalations = make_queue("Escalations", channels=["sms"])
    support = make_queue(channels=["sms"])
    moving = make_queue("Moving", channels=["sms"], escalation_queue=escalations)

    def scenario():
        return [
            breached_task(support, priority=ConversationPriority.NORMAL),
            breached_task(support, priority=ConversationPriority.URGENT),  # no priority above
            breached_task(moving, priority=ConversationPriority.LOW, status=ConversationStatus.OPEN),
        ]

    single, bulk = scenario(), scenario()
    for task in single:
        assert timers._sla_breach(task.pk) is True
    assert timers._sla_breach_many(bulk) == 3

    def state(tasks):
        return [
            (
                *Task.objects.values_list("sla_state", "priority", "queue_id", "status").get(pk=task.pk),
                Task.objects.get(pk=task.pk).escalated_at is not None,
                Conversation.objects.get(pk=task.conversation_id).priority,
            )
            for task in tasks
        ]

    assert state(single) == state(bulk)
    assert state(single)[0][:2] == (SlaState.BREACHED, "high")
    assert story(single, {}) == story(bulk, {})
    assert [kind for kind, *_ in story(single, {})[2]][:3] == ["sla", "escalation", "priority"]


def test_a_batch_costs_the_same_statements_whatever_its_size(in_acme):
    queue = make_queue(channels=["sms"], missed_offers_before_unavailable=0)
    agents = [make_member(in_acme, "acme-few"), make_member(in_acme, "acme-many")]
    for agent in agents:
        agent_state_for(agent)
    sizes: list[int] = []

    def time_out(size: int) -> None:
        offers = [expired_offer(reserved_task(queue), agents[n % 2]) for n in range(size)]
        with CaptureQueriesContext(connection) as queries:
            assert len(offers_time_out(offers=offers)) == size
        sizes.append(len(queries))

    def breach(size: int) -> None:
        tasks = [breached_task(queue) for _ in range(size)]
        with CaptureQueriesContext(connection) as queries:
            assert timers._sla_breach_many(tasks) == size
        sizes.append(len(queries))

    for action in (time_out, breach):
        sizes.clear()
        action(2)
        action(12)
        assert sizes[0] == sizes[1], (action.__name__, sizes)


def test_the_sweep_works_a_backlog_off_in_batches_of_one_tenant(acme, globex, acme_agent, globex_agent):
    due = []
    for tenant, agent in ((acme, acme_agent), (globex, globex_agent)):
        with tenant_context(tenant):
            queue = make_queue(channels=["sms"], missed_offers_before_unavailable=0)
            due += [expired_offer(reserved_task(queue), agent) for _ in range(timers.ACT_BATCH + 5)]

    assert timers.timers_sweep_due()["offers"] == len(due)
    with dangerously_all_tenants():
        assert set(Offer.objects.filter(pk__in=[o.pk for o in due]).values_list("status", flat=True)) == {"timed_out"}
        assert Activity.objects.filter(new_value="offer timed_out").count() == len(due)
    assert timers.timers_sweep_due()["offers"] == 0


def test_a_failing_row_does_not_undo_the_others(in_acme, acme_agent):
    queue = make_queue(channels=["sms"], missed_offers_before_unavailable=0)
    offers = [expired_offer(reserved_task(queue), acme_agent) for _ in range(5)]
    tasks = [breached_task(queue) for _ in range(3)]
    bad_offer, bad_task = offers[2], tasks[1]
    # The database itself refuses to change these two rows (a trigger, undone with the test's transaction).
    with connection.as_table_owner(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_refuse_row() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'row % refused', OLD.id; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER refuse_offer BEFORE UPDATE ON tasks_offer FOR EACH ROW "
            f"WHEN (OLD.id = {bad_offer.pk}) EXECUTE FUNCTION test_refuse_row()"
        )
        cursor.execute(
            "CREATE TRIGGER refuse_task BEFORE UPDATE ON tasks_task FOR EACH ROW "
            f"WHEN (OLD.id = {bad_task.pk}) EXECUTE FUNCTION test_refuse_row()"
        )

    acted = timers.timers_sweep_due()

    assert (acted["offers"], acted["sla_breaches"]) == (4, 2)
    statuses = dict(Offer.objects.filter(pk__in=[o.pk for o in offers]).values_list("pk", "status"))
    assert statuses == {o.pk: OfferStatus.PENDING if o == bad_offer else OfferStatus.TIMED_OUT for o in offers}
    assert not Activity.objects.filter(task_id=bad_offer.task_id).exclude(kind="created").exists()
    assert Activity.objects.filter(new_value="offer timed_out").count() == 4
    states = dict(Task.objects.filter(pk__in=[t.pk for t in tasks]).values_list("pk", "sla_state"))
    assert states == {t.pk: SlaState.WARNING if t == bad_task else SlaState.BREACHED for t in tasks}
    assert Activity.objects.filter(task__in=tasks, kind="escalation").count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sweeps_act_on_each_timer_once(acme, globex, acme_agent, acme_agent2, globex_agent):
    offers, tasks = [], []
    for tenant, agents in ((acme, (acme_agent, acme_agent2)), (globex, (globex_agent,))):
        with tenant_context(tenant):
            queue = make_queue(channels=["sms"], missed_offers_before_unavailable=0)
            for n in range(30):
                task = reserved_task(queue)
                offers += [expired_offer(task, agent) for agent in agents[: 1 + n % 2]]
            tasks += [breached_task(queue) for _ in range(30)]

    results = race(timers.timers_sweep_due, timers.timers_sweep_due)

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r["offers"] for r in results) == len(offers)
    assert sum(r["sla_breaches"] for r in results) == len(tasks)
    with dangerously_all_tenants():
        assert set(Offer.objects.filter(pk__in=[o.pk for o in offers]).values_list("status", flat=True)) == {
            "timed_out"
        }
        assert Activity.objects.filter(new_value="offer timed_out").count() == len(offers)
        assert Activity.objects.filter(task__in=tasks, kind="sla").count() == len(tasks)
        assert Activity.objects.filter(task__in=tasks, kind="escalation").count() == len(tasks)
        back = Activity.objects.filter(kind="status", old_value="reserved", new_value="pending")
        assert back.count() == len({o.task_id for o in offers})


def test_the_bulk_transition_checks_the_table_and_writes_nothing_when_refused(in_acme):
    queue = make_queue(channels=["sms"])
    reserved, completed = reserved_task(queue), make_task(make_conversation(), queue, status=TaskStatus.COMPLETED)

    with pytest.raises(TransitionNotAllowed):
        task_transition_many(tasks=[reserved, completed], to_status=TaskStatus.PENDING, reasons={})
    assert Task.objects.get(pk=reserved.pk).status == TaskStatus.RESERVED
    assert not Activity.objects.filter(task=reserved, kind="status").exists()
