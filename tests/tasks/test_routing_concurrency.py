"""Routing under real concurrency on PostgreSQL: threads with their own connections, released
together by barriers. Exactly one accept wins; concurrent routers never exceed a task's offer limit
nor an agent's capacity, checked while they run and afterwards from the Offer/Task rows and the
activity log."""

import random
import threading
import time
from collections import Counter, defaultdict

import pytest
from django.db import connection
from django.utils import timezone

from contactcenter.errors import AlreadyTaken
from contactcenter.tenancy import dangerously_all_tenants, tenant_context
from conversations.models import Activity, Contact, Conversation
from tasks.models import AgentState, Offer, OfferStatus, Task, TaskKind, TaskPriority, TaskStatus
from tasks.services import offer_accept, offer_decline, routing_run, task_claim, task_complete
from tests.conftest import make_member
from tests.conversations.conftest import make_queue, race
from tests.tasks.routing_helpers import make_agent, waiting_task

pytestmark = pytest.mark.django_db(transaction=True)
OS = OfferStatus


def test_fifty_agents_accepting_one_task_at_once_exactly_one_wins(acme):
    with tenant_context(acme):
        queue = make_queue("Everyone", max_offers_per_task=50)
        agents = {agent.pk: agent for agent in (make_agent(acme, f"acme-a{i:02}", [queue]) for i in range(50))}
        task = waiting_task(queue)
        offers = routing_run(tenant_id=acme.pk)
        assert sorted(o.agent_id for o in offers) == sorted(agents)  # 50 offers of one task

    def accept(offer):
        def act():
            with tenant_context(acme.pk):
                return offer_accept(offer=offer, agent=agents[offer.agent_id])

        return act

    results = race(*(accept(offer) for offer in offers), timeout=60)

    winners = [r for r in results if isinstance(r, Task)]
    losers = [r for r in results if isinstance(r, AlreadyTaken)]
    assert (len(winners), len(losers)) == (1, 49), [r for r in results if not isinstance(r, Task | AlreadyTaken)]
    winner = agents[winners[0].assignee_id]
    assert all(str(loser) == f"This task was already taken by {winner.display_name}." for loser in losers)
    with tenant_context(acme):
        assert Counter(Offer.objects.filter(task=task).values_list("status", flat=True)) == {
            OS.ACCEPTED: 1, OS.RESCINDED: 49,
        }  # fmt: skip
        assert Activity.objects.filter(task=task, kind="assignment").count() == 1
        assert Activity.objects.filter(task=task, kind="status", new_value="assigned").count() == 1
        assert Conversation.objects.get(pk=task.conversation_id).assignee_id == winner.pk


def test_claims_and_accepts_racing_for_one_task_have_one_winner(acme):
    with tenant_context(acme):
        queue = make_queue("Pairs", max_offers_per_task=10)
        offered = [make_agent(acme, f"acme-o{i}", [queue]) for i in range(10)]
        claimers = [make_member(acme, f"acme-c{i}") for i in range(10)]
        supervisor = make_member(acme, "acme-boss", role="supervisor")
        task = waiting_task(queue)
        offers = routing_run(tenant_id=acme.pk)
        assert len(offers) == 10
        by_agent = {o.agent_id: o for o in offers}
        seen = Task.objects.get(pk=task.pk)

    def act(fn, **kwargs):
        def run():
            with tenant_context(acme.pk):
                return fn(**kwargs)

        return run

    actions = [act(offer_accept, offer=by_agent[a.pk], agent=a) for a in offered]
    actions += [act(task_claim, task=seen, agent=c) for c in claimers[:5]]
    actions += [act(task_claim, task=seen, agent=c, actor=supervisor, note="take it") for c in claimers[5:]]
    results = race(*actions, timeout=60)

    winners = [r for r in results if isinstance(r, Task)]
    assert len(winners) == 1 and sum(isinstance(r, AlreadyTaken) for r in results) == 19, results
    with tenant_context(acme):
        assert Activity.objects.filter(task=task, kind="assignment").count() == 1
        assert not Offer.objects.filter(task=task, status=OS.PENDING).exists()


# --- four routers, a thousand tasks, fifty agents -----------------------------------------------------

CHANNELS = ("voice", "sms", "webchat")
LOAD_NOW_SQL = """
    SELECT agent_id, channel, count(*) FROM (
        SELECT t.assignee_id AS agent_id, t.channel FROM tasks_task t
         WHERE t.tenant_id = %(tenant)s AND t.status = 'assigned' AND t.kind = 'conversation'
        UNION ALL
        SELECT o.agent_id, t.channel FROM tasks_offer o JOIN tasks_task t ON t.id = o.task_id
         WHERE o.tenant_id = %(tenant)s AND o.status = 'pending'
    ) held GROUP BY agent_id, channel
"""
OFFERS_NOW_SQL = """
    SELECT o.task_id, count(*), max(q.max_offers_per_task) FROM tasks_offer o
      JOIN tasks_task t ON t.id = o.task_id JOIN tasks_queue q ON q.id = t.queue_id
     WHERE o.tenant_id = %(tenant)s AND o.status = 'pending' GROUP BY o.task_id
"""


def _bulk_waiting_tasks(tenant, queues, n: int) -> list[int]:
    """Test setup: n conversation tasks waiting, written in bulk (the services would take a minute)."""
    rng = random.Random(4)
    now = timezone.now()
    contacts = Contact.objects.bulk_create(
        Contact(tenant=tenant, name=f"Customer {i}", is_vip=rng.random() < 0.1) for i in range(n)
    )
    channels = [rng.choice(CHANNELS) for _ in range(n)]
    conversations = Conversation.objects.bulk_create(
        Conversation(tenant=tenant, contact=contact, channel=channel, waiting_since=now)
        for contact, channel in zip(contacts, channels, strict=True)
    )
    tasks = Task.objects.bulk_create(
        Task(
            tenant=tenant, kind=TaskKind.CONVERSATION, title=f"Task {i}", channel=conversation.channel,
            queue=queues[i % len(queues)], conversation=conversation, priority=rng.choice(TaskPriority.values),
        )
        for i, conversation in enumerate(conversations)
    )  # fmt: skip
    return [task.pk for task in tasks]


def _max_overlap(intervals) -> int:
    """The most intervals [start, end) open at one instant (end None: still open)."""
    events = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals if end is not None],
        key=lambda event: (event[0], event[1]),  # at one instant, ends before starts
    )
    open_now = peak = 0
    for _, step in events:
        open_now += step
        peak = max(peak, open_now)
    return peak


class Swarm:
    """Threads that each use their own connection, start together at a barrier and run a loop body
    until `stop` is set; any exception stops them all and is kept for the test to report."""

    def __init__(self, tenant):
        self.tenant = tenant
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.bodies = []

    def add(self, body) -> None:
        self.bodies.append(body)

    def run_until(self, done, timeout: float) -> bool:
        barrier = threading.Barrier(len(self.bodies) + 1)

        def run(body):
            try:
                connection.ensure_connection()
                barrier.wait(30)
                with tenant_context(self.tenant.pk):
                    while not self.stop.is_set():
                        body()
            except BaseException as error:  # noqa: BLE001 - reported by the test
                self.errors.append(error)
                self.stop.set()
            finally:
                connection.close()

        threads = [threading.Thread(target=run, args=(body,)) for body in self.bodies]
        for thread in threads:
            thread.start()
        barrier.wait(30)
        deadline = time.monotonic() + timeout
        reached = False
        while not self.stop.is_set() and time.monotonic() < deadline:
            with tenant_context(self.tenant.pk):
                if done():
                    reached = True
                    break
            time.sleep(0.05)
        self.stop.set()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads), "a thread hung"
        assert not self.errors, self.errors
        return reached


def test_four_routers_over_a_thousand_tasks_and_fifty_agents_never_overload_anyone(acme):
    """Round 1: four routers race until nothing more can be offered. Round 2: ten threads answer the
    agents' offers (one in ten declined: the task goes to someone else), the routers race again,
    and so on until every agent is full. Round 3: every agent completes a chat and the routers fill
    the freed room. Throughout, a monitor checks every agent's load and every task's pending offers
    in single snapshots; at the end the Offer/Task rows and the activity log are replayed."""
    with tenant_context(acme):
        # Offers do not expire here (no sweep runs): this test is about capacity, not time-outs.
        one_at_a_time = make_queue("Calls and texts", max_offers_per_task=1, offer_timeout_seconds=600)
        two_at_once = make_queue("Chats", max_offers_per_task=2, strategy="load_balancing", offer_timeout_seconds=600)
        queues = [one_at_a_time, two_at_once]
        # Two texts and two chats each (not three) keeps the run under a minute: every accept and
        # every offer costs several realtime pushes.
        capacity = {"voice": 1, "sms": 2, "webchat": 2}
        agents = [make_agent(acme, f"acme-r{i:02}", queues, capacity=capacity) for i in range(50)]
        task_ids = _bulk_waiting_tasks(acme, queues, 1000)
    full = 50 * sum(capacity.values())
    limit = {one_at_a_time.pk: 1, two_at_once.pk: 2}
    violations: list[str] = []
    routed = Counter()

    def router(number):
        def body():
            made = routing_run(tenant_id=acme.pk)
            routed[number] += len(made)
            if not made:
                time.sleep(0.05)

        return body

    def monitor():
        with connection.cursor() as cursor:
            cursor.execute(LOAD_NOW_SQL, {"tenant": acme.pk})
            for agent_id, channel, held in cursor.fetchall():
                if held > capacity[channel]:
                    violations.append(f"agent {agent_id} holds {held} {channel}")
            cursor.execute(OFFERS_NOW_SQL, {"tenant": acme.pk})
            for task_id, pending, allowed in cursor.fetchall():
                if pending > allowed:
                    violations.append(f"task {task_id} has {pending} pending offers")
        time.sleep(0.02)

    def answering(mine, decline_rate=0.1):
        rng = random.Random(mine[0].pk)

        def body():
            for agent in mine:
                for offer in Offer.objects.filter(agent=agent, status=OS.PENDING):
                    try:
                        if rng.random() < decline_rate:
                            offer_decline(offer=offer, agent=agent)
                        else:
                            offer_accept(offer=offer, agent=agent)
                    except AlreadyTaken:
                        pass  # the other agent offered the chat accepted first
            time.sleep(0.05)

        return body

    def completing_one_chat(mine, done_by):
        def body():
            for agent in mine:
                if agent.pk not in done_by:
                    task = Task.objects.filter(assignee=agent, status=TaskStatus.ASSIGNED, channel="webchat").first()
                    task_complete(task=task, actor=agent)
                    done_by.add(agent.pk)
            time.sleep(0.05)

        return body

    def assigned() -> int:
        return Task.objects.filter(pk__in=task_ids, status=TaskStatus.ASSIGNED).count()

    def no_pending_offers() -> bool:
        return not Offer.objects.filter(status=OS.PENDING).exists()

    def phase(bodies, done, timeout: float) -> None:
        swarm = Swarm(acme)
        for body in [*bodies, monitor]:
            swarm.add(body)
        assert swarm.run_until(done, timeout=timeout), f"{done.__name__} not reached in {timeout}s: {routed}"

    def routers_settled() -> bool:
        return not _routing_possible(acme)

    routers = [router(n) for n in range(4)]
    # Round 1: four routers race until nothing more can be offered.
    phase(routers, routers_settled, timeout=40)
    # Round 2: the agents answer their offers (ten threads), then the routers race again, until
    # every agent is full.
    # Some declines first, so declined tasks must find other agents; then everyone accepts, so the
    # floor must fill up completely whatever the random declines left.
    for decline_rate in [0.1] * 5 + [0.0] * 10:
        phase([answering(agents[i::10], decline_rate) for i in range(10)], no_pending_offers, timeout=30)
        phase(routers, routers_settled, timeout=30)
        with tenant_context(acme):
            if decline_rate == 0.0 and assigned() == full and no_pending_offers():
                break
    with tenant_context(acme):
        assert assigned() == full, _room_left(acme, agents, capacity)
    # Round 3: everyone completes one chat; the routers refill the room it leaves.
    done_by: set[int] = set()
    phase([completing_one_chat(agents[i::10], done_by) for i in range(10)], lambda: len(done_by) == 50, timeout=30)
    for decline_rate in [0.1] * 3 + [0.0] * 10:
        phase(routers, routers_settled, timeout=30)
        phase([answering(agents[i::10], decline_rate) for i in range(10)], no_pending_offers, timeout=30)
        with tenant_context(acme):
            if decline_rate == 0.0 and assigned() == full:
                break

    assert not violations, violations[:10]
    assert sum(1 for n in range(4) if routed[n]) >= 2, routed  # the routers shared the work: they raced
    with tenant_context(acme):
        assert routing_run(tenant_id=acme.pk) == []  # everyone is full
    with dangerously_all_tenants():
        tasks = {t.pk: t for t in Task.objects.filter(pk__in=task_ids)}
        offers = list(Offer.objects.filter(task_id__in=task_ids))
        log = list(Activity.objects.filter(task_id__in=task_ids).order_by("pk"))
    names = {a.display_name: a.pk for a in agents}
    assert Counter(t.status for t in tasks.values())[TaskStatus.COMPLETED] == 50

    # From the Offer and Task rows: each agent's work per channel over time, and each task's offers.
    held = defaultdict(list)
    offered = defaultdict(list)
    for offer in offers:
        task = tasks[offer.task_id]
        end = task.completed_at if offer.status == OS.ACCEPTED else offer.responded_at
        held[offer.agent_id, task.channel].append((offer.created_at, end))
        offered[task.pk].append((offer.created_at, offer.responded_at))
    for (agent_id, channel), intervals in held.items():
        assert _max_overlap(intervals) <= capacity[channel], (agent_id, channel)
    for task_id, intervals in offered.items():
        assert _max_overlap(intervals) <= limit[tasks[task_id].queue_id], task_id
    assert Counter(o.status for o in offers)[OS.ACCEPTED] == full + 50
    assert Counter(o.status for o in offers)[OS.DECLINED] > 0  # declined tasks went to someone else

    # From the activity log: one assignment per task, and no agent ever held more than capacity.
    assigned_rows = Counter(row.task_id for row in log if row.kind == "status" and row.new_value == "assigned")
    assert set(assigned_rows.values()) == {1} and len(assigned_rows) == full + 50
    assert Counter(row.task_id for row in log if row.kind == "assignment") == assigned_rows
    began_at = {row.task_id: (names[row.new_value], row.created_at) for row in log if row.kind == "assignment"}
    ended_at = {row.task_id: row.created_at for row in log if row.kind == "completion"}
    spans = defaultdict(list)
    for task_id, (agent_id, at) in began_at.items():
        spans[agent_id, tasks[task_id].channel].append((at, ended_at.get(task_id)))
    for (agent_id, channel), intervals in spans.items():
        assert _max_overlap(intervals) == capacity[channel], (agent_id, channel)  # full, never over


def _room_left(tenant, agents, capacity) -> str:
    """Which agents still have room, and what waits: said when the floor did not fill up."""
    from tasks.selectors import agent_loads

    loads, _ = agent_loads([agent.pk for agent in agents])
    room = {agent.pk: {c: n - loads[agent.pk][c] for c, n in capacity.items() if loads[agent.pk][c] < n} for agent in agents}
    waiting = Counter(Task.objects.filter(status=TaskStatus.PENDING).values_list("channel", flat=True))
    return f"room left: {dict((k, v) for k, v in room.items() if v)}; waiting: {dict(waiting)}"


def _routing_possible(tenant) -> bool:
    """Whether a routing run right now would offer anything (it offers and keeps them if so)."""
    return bool(routing_run(tenant_id=tenant.pk))
