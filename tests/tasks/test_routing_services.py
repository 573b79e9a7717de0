"""Routing services on real PostgreSQL and Redis: runs, offers and their answers, agents' status,
claiming, and where tasks come from. The choice itself is tested in test_routing_choice.py."""

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from contactcenter import realtime
from contactcenter.errors import AlreadyTaken
from contactcenter.tenancy import tenant_context
from conversations.models import Activity, Conversation, ConversationPriority
from conversations.services import conversation_end, conversation_transfer
from tasks.errors import AgentStatusNotAllowed, AtCapacity, OfferNotAllowed, QueueNotAllowed
from tasks.models import (
    AgentState,
    AgentStatus,
    AgentStatusPeriod,
    BreakReason,
    Offer,
    OfferStatus,
    RoutingStrategy,
    Skill,
    Task,
    TaskStatus,
    WrapUpMode,
)
from tasks.services import (
    agent_allow_queues,
    agent_choose_queues,
    agent_set_status,
    agent_state_for,
    break_reasons_ensure_defaults,
    conversation_task_ensure,
    offer_accept,
    offer_decline,
    offer_time_out,
    routing_request,
    routing_run,
    task_claim,
    task_complete,
)
from tests.conftest import make_member
from tests.conversations.conftest import activity_after, activity_mark, make_conversation, make_queue
from tests.tasks.routing_helpers import expire, make_agent, waiting_task

A = AgentStatus
OS = OfferStatus


@pytest.fixture
def queue(in_acme):
    return make_queue("Routing", channels=["sms", "voice", "webchat"])


def route(tenant) -> list[Offer]:
    return routing_run(tenant_id=tenant.pk)


# --- a routing run ------------------------------------------------------------------------------


def test_a_run_offers_the_task_reserves_it_and_explains_why(in_acme, queue, django_capture_on_commit_callbacks, listen):
    agent = make_agent(in_acme, "acme-ann", [queue])
    task = waiting_task(queue)
    inbox = listen(realtime.agent_group(in_acme.pk, agent.pk))
    mark = activity_mark()

    with django_capture_on_commit_callbacks(execute=True):
        offers = route(in_acme)

    assert [(o.task_id, o.agent_id, o.status) for o in offers] == [(task.pk, agent.pk, OS.PENDING)]
    offer = Offer.objects.get(pk=offers[0].pk)
    assert offer.explanation.startswith("round_robin: never assigned, first in rotation of 1 eligible")
    assert "load 0/3 sms" in offer.explanation
    assert abs((offer.expires_at - offer.created_at) - timedelta(seconds=queue.offer_timeout_seconds)) < timedelta(seconds=1)
    task.refresh_from_db()
    assert task.status == TaskStatus.RESERVED
    assert activity_after(mark) == [("status", "pending", "reserved"), ("status", "", "offer pending")]
    pushed = [m for m in inbox.receive_all() if m["event"] == "offer.new"]
    assert [[(o["offer"], o["explanation"]) for o in m["data"]["offers"]] for m in pushed] == [
        [(offer.public_id, offer.explanation)]
    ]
    assert route(in_acme) == []  # nothing more to offer: the task is reserved


@pytest.mark.parametrize(
    ("strategy", "fact"),
    [
        (RoutingStrategy.ROUND_ROBIN, "round_robin: least recently assigned"),
        (RoutingStrategy.LOAD_BALANCING, "load_balancing: lowest occupancy 0 (idle)"),
        (RoutingStrategy.SKILL_BASED, "skill_based: billing 5 = 5"),
        (RoutingStrategy.STICKY, "sticky: last handled contact"),
    ],
)
def test_each_strategy_picks_its_agent_and_names_the_deciding_facts(in_acme, strategy, fact):
    queue = make_queue(f"Q {strategy}", strategy=strategy)
    if strategy == RoutingStrategy.SKILL_BASED:
        queue.required_skills.add(Skill.objects.create(tenant=in_acme, name="billing"))
    busy = make_agent(in_acme, "acme-busy", [queue], skills={"billing": 2})
    best = make_agent(in_acme, "acme-best", [queue], skills={"billing": 5})
    task_claim(task=waiting_task(queue, channel="webchat"), agent=busy)  # busy: a chat, assigned just now
    AgentState.objects.filter(membership=best).update(last_assigned_at=timezone.now() - timedelta(hours=1))
    task = waiting_task(queue)
    earlier = make_conversation(task.conversation.contact, channel="sms")
    Task.objects.create(tenant=in_acme, title="Last week", conversation=earlier, channel="sms", assignee=best,
                        status=TaskStatus.COMPLETED)  # fmt: skip

    offers = route(in_acme)

    assert [(o.task_id, o.agent_id) for o in offers] == [(task.pk, best.pk)]
    assert offers[0].explanation.startswith(fact), offers[0].explanation


def test_vip_and_priority_go_first_and_the_agent_is_never_over_capacity(in_acme, queue):
    agent = make_agent(in_acme, "acme-ann", [queue], capacity={"sms": 2})
    plain = waiting_task(queue)
    vip = waiting_task(queue, vip=True)
    urgent = waiting_task(queue, priority=ConversationPriority.URGENT)

    offers = route(in_acme)

    assert [o.task_id for o in offers] == [urgent.pk, vip.pk]
    assert Task.objects.get(pk=plain.pk).status == TaskStatus.PENDING
    assert route(in_acme) == []  # 2 of 2 sms offered: the third waits
    offer_decline(offer=offers[0], agent=agent)
    assert route(in_acme)[0].task_id == plain.pk  # capacity freed by the decline


def test_an_agent_on_a_call_gets_no_second_call_but_does_get_chats(in_acme, queue):
    agent = make_agent(in_acme, "acme-ann", [queue])
    first_call = waiting_task(queue, channel="voice")
    offer_accept(offer=route(in_acme)[0], agent=agent)
    second_call = waiting_task(queue, channel="voice")
    chat = waiting_task(queue, channel="webchat")

    offers = route(in_acme)

    assert [(o.task_id, o.agent_id) for o in offers] == [(chat.pk, agent.pk)]
    assert "load 0/3 webchat" in offers[0].explanation
    assert Task.objects.get(pk=second_call.pk).status == TaskStatus.PENDING
    assert Task.objects.get(pk=first_call.pk).assignee_id == agent.pk


@pytest.mark.parametrize("receives_work", [False, True])
def test_an_agent_in_wrap_up_gets_work_only_when_the_queue_allows_it(in_acme, queue, receives_work):
    queue.wrap_up_receives_work = receives_work
    queue.save()
    agent = make_agent(in_acme, "acme-ann", [queue])
    task = waiting_task(queue)
    offer_accept(offer=route(in_acme)[0], agent=agent)
    conversation_end(conversation=Conversation.objects.get(pk=task.conversation_id), actor=agent)
    assert Task.objects.get(pk=task.pk).status == TaskStatus.WRAPPING
    waiting_task(queue)

    offers = route(in_acme)

    assert [o.agent_id for o in offers] == ([agent.pk] if receives_work else [])


def test_automatic_wrap_up_gets_its_due_time_in_the_same_transition(in_acme, queue):
    queue.wrap_up_mode, queue.wrap_up_seconds = WrapUpMode.AUTOMATIC, 45
    queue.save()
    agent = make_agent(in_acme, "acme-ann", [queue])
    task = waiting_task(queue)
    offer_accept(offer=route(in_acme)[0], agent=agent)
    before = timezone.now()

    conversation_end(conversation=Conversation.objects.get(pk=task.conversation_id), actor=agent)

    task.refresh_from_db()
    assert task.status == TaskStatus.WRAPPING
    assert before + timedelta(seconds=45) <= task.wrap_up_due_at <= timezone.now() + timedelta(seconds=45)


def test_pick_mode_makes_no_offers_and_agents_claim(in_acme):
    picked = make_queue("Pick", pick_mode=True)
    agent = make_agent(in_acme, "acme-ann", [picked])
    task = waiting_task(picked)

    assert route(in_acme) == []

    claimed = task_claim(task=task, agent=agent)
    assert (claimed.status, claimed.assignee_id) == (TaskStatus.ASSIGNED, agent.pk)
    conversation = Conversation.objects.get(pk=task.conversation_id)
    assert (conversation.status, conversation.assignee_id) == ("assigned", agent.pk)


def test_auto_answer_accepts_at_once(in_acme):
    auto = make_queue("Auto", auto_answer=True, max_offers_per_task=3)
    agent = make_agent(in_acme, "acme-ann", [auto])
    make_agent(in_acme, "acme-bob", [auto])
    task = waiting_task(auto)

    offers = route(in_acme)

    assert [o.status for o in offers] == [OS.ACCEPTED]  # one offer, accepted
    task.refresh_from_db()
    assert (task.status, task.assignee_id) == (TaskStatus.ASSIGNED, agent.pk)
    assert Conversation.objects.get(pk=task.conversation_id).assignee_id == agent.pk


def test_routing_for_one_tenant_never_touches_the_other(acme, globex, in_acme):
    acme_queue = make_queue("Support")
    acme_agent = make_agent(acme, "acme-ann", [acme_queue])
    acme_task = waiting_task(acme_queue)
    with tenant_context(globex):
        globex_queue = make_queue("Support")
        globex_agent = make_agent(globex, "globex-gil", [globex_queue])
        globex_task = waiting_task(globex_queue)

    offers = route(acme)

    assert [(o.task_id, o.agent_id) for o in offers] == [(acme_task.pk, acme_agent.pk)]
    with tenant_context(globex):
        assert Task.objects.get(pk=globex_task.pk).status == TaskStatus.PENDING
        assert not Offer.objects.exists()
        offers = routing_run(tenant_id=globex.pk)
        assert [(o.task_id, o.agent_id) for o in offers] == [(globex_task.pk, globex_agent.pk)]
    with pytest.raises(Exception, match="inside that tenant"):
        routing_run(tenant_id=globex.pk)  # acme's context


# --- offers --------------------------------------------------------------------------------------


def test_accept_assigns_task_and_conversation_and_rescinds_the_other_offers(in_acme):
    wide = make_queue("Wide", max_offers_per_task=2)
    ann = make_agent(in_acme, "acme-ann", [wide])
    bob = make_agent(in_acme, "acme-bob", [wide])
    task = waiting_task(wide)
    offers = {o.agent_id: o for o in route(in_acme)}
    assert set(offers) == {ann.pk, bob.pk}
    mark = activity_mark()

    offer_accept(offer=offers[bob.pk], agent=bob)

    task.refresh_from_db()
    assert (task.status, task.assignee_id) == (TaskStatus.ASSIGNED, bob.pk)
    assert Conversation.objects.get(pk=task.conversation_id).assignee_id == bob.pk
    assert Offer.objects.get(pk=offers[ann.pk].pk).status == OS.RESCINDED
    rows = activity_after(mark)
    assert ("status", "offer pending", "offer accepted") in rows
    assert ("status", "offer pending", "offer rescinded") in rows
    assert ("status", "reserved", "assigned") in rows
    assert [r for r in rows if r[0] == "assignment"] == [("assignment", "nobody", bob.display_name)]
    assert AgentState.objects.get(membership=bob).last_assigned_at is not None
    with pytest.raises(AlreadyTaken, match=f"already taken by {bob.display_name}"):
        offer_accept(offer=offers[ann.pk], agent=ann)


def test_an_offer_is_its_agents_alone_and_expires(in_acme, queue):
    ann = make_agent(in_acme, "acme-ann", [queue])
    bob = make_agent(in_acme, "acme-bob", [queue])
    waiting_task(queue)
    offer = route(in_acme)[0]
    other = bob if offer.agent_id == ann.pk else ann
    with pytest.raises(OfferNotAllowed, match="someone else"):
        offer_accept(offer=offer, agent=other)
    with pytest.raises(OfferNotAllowed, match="expired"):
        offer_accept(offer=expire(offer), agent=offer.agent)
    assert Offer.objects.get(pk=offer.pk).status == OS.PENDING  # the sweep times it out, not the refusal


def test_decline_goes_to_the_next_agent_and_never_back(in_acme, queue):
    ann = make_agent(in_acme, "acme-ann", [queue])
    bob = make_agent(in_acme, "acme-bob", [queue])
    task = waiting_task(queue)
    first = route(in_acme)[0]
    first_agent, second_agent = (ann, bob) if first.agent_id == ann.pk else (bob, ann)
    mark = activity_mark()

    offer_decline(offer=first, agent=first_agent)

    assert Task.objects.get(pk=task.pk).status == TaskStatus.PENDING
    assert activity_after(mark) == [("status", "offer pending", "offer declined"), ("status", "reserved", "pending")]
    second = route(in_acme)
    assert [o.agent_id for o in second] == [second_agent.pk]
    offer_decline(offer=second[0], agent=second_agent)
    assert route(in_acme) == []  # neither is offered it again
    assert Task.objects.get(pk=task.pk).status == TaskStatus.PENDING
    with pytest.raises(OfferNotAllowed, match="already declined"):
        offer_decline(offer=first, agent=first_agent)


def test_time_out_moves_on_once_and_missed_offers_make_the_agent_unavailable(in_acme, queue, listen):
    queue.missed_offers_before_unavailable = 2
    queue.save()
    ann = make_agent(in_acme, "acme-ann", [queue])
    first, second = waiting_task(queue), waiting_task(queue)
    offers = route(in_acme)
    assert {o.task_id for o in offers} == {first.pk, second.pk}

    assert offer_time_out(offer=offers[0]) is True
    assert offer_time_out(offer=offers[0]) is False  # a second sweep does nothing
    state = AgentState.objects.get(membership=ann)
    assert (state.status, state.consecutive_missed_offers) == (A.AVAILABLE, 1)
    assert Task.objects.get(pk=offers[0].task_id).status == TaskStatus.PENDING

    assert offer_time_out(offer=offers[1]) is True
    state = AgentState.objects.select_related("break_reason").get(membership=ann)
    assert (state.status, state.break_reason.name, state.consecutive_missed_offers) == (A.UNAVAILABLE, "Missed offers", 2)
    assert [(p.status, p.ended_at is None) for p in AgentStatusPeriod.objects.filter(membership=ann)] == [
        (A.OFFLINE, False), (A.AVAILABLE, False), (A.UNAVAILABLE, True),
    ]  # fmt: skip
    agent_set_status(membership=ann, status=A.AVAILABLE)
    assert route(in_acme) == []  # timed out counts as declined: neither task comes back to ann


@pytest.mark.django_db(transaction=True)
def test_the_missed_offers_notice_says_why(acme, listen):
    with tenant_context(acme):
        queue = make_queue("Support", missed_offers_before_unavailable=1)
        ann = make_agent(acme, "acme-ann", [queue])
        waiting_task(queue)
        offer = routing_run(tenant_id=acme.pk)[0]
        inbox = listen(realtime.agent_group(acme.pk, ann.pk))
        offer_time_out(offer=offer)
    notices = [m["data"] for m in inbox.receive_all() if m["event"] == "agent.notice"]
    assert len(notices) == 1
    assert notices[0]["break_reason"] == "Missed offers"
    assert "1 offers in a row went unanswered" in notices[0]["message"]


def test_transfer_cancels_pending_offers_and_requeues(in_acme, queue):
    other = make_queue("Other")
    make_agent(in_acme, "acme-ann", [queue])
    task = waiting_task(queue)
    offer = route(in_acme)[0]

    conversation_transfer(conversation=Conversation.objects.get(pk=task.conversation_id), queue=other, note="billing")

    assert Offer.objects.get(pk=offer.pk).status == OS.CANCELED
    task.refresh_from_db()
    assert (task.status, task.queue_id) == (TaskStatus.PENDING, other.pk)


# --- claiming ---------------------------------------------------------------------------------------


def test_claiming_a_reserved_task_rescinds_offers_and_the_loser_is_told_who_has_it(in_acme, queue, acme_supervisor):
    ann = make_agent(in_acme, "acme-ann", [queue])
    bob = make_agent(in_acme, "acme-bob", [])
    task = waiting_task(queue)
    offer = route(in_acme)[0]
    mark = activity_mark()

    task_claim(task=task, agent=bob, actor=acme_supervisor, note="Bob knows this customer")

    assert Offer.objects.get(pk=offer.pk).status == OS.RESCINDED
    assert ("assignment", "nobody", bob.display_name) in activity_after(mark)
    assert Activity.objects.get(task=task, kind="assignment").reason == "Bob knows this customer"
    with pytest.raises(AlreadyTaken, match=f"already taken by {bob.display_name}"):
        task_claim(task=task, agent=ann)
    with pytest.raises(AlreadyTaken, match=f"already taken by {bob.display_name}"):
        offer_accept(offer=offer, agent=ann)


def test_self_assignment_respects_capacity_but_a_supervisor_may_overload(in_acme, acme_supervisor):
    picked = make_queue("Pick", pick_mode=True)
    ann = make_agent(in_acme, "acme-ann", [picked])
    first, second = waiting_task(picked, channel="voice"), waiting_task(picked, channel="voice")
    task_claim(task=first, agent=ann)

    with pytest.raises(AtCapacity, match="1 of 1 Voice"):
        task_claim(task=second, agent=ann)
    assert Task.objects.get(pk=second.pk).status == TaskStatus.PENDING

    task_claim(task=second, agent=ann, actor=acme_supervisor)
    assert Task.objects.get(pk=second.pk).assignee_id == ann.pk
    with pytest.raises(Exception, match="Only supervisors"):
        task_claim(task=waiting_task(picked), agent=ann, actor=make_member(in_acme, "acme-carl"))


# --- agents ------------------------------------------------------------------------------------------


def test_status_changes_record_each_period_and_unavailable_needs_a_reason(in_acme, queue, acme_supervisor):
    break_reasons_ensure_defaults(tenant=in_acme)
    ann = make_agent(in_acme, "acme-ann", [queue], status=A.OFFLINE)
    lunch = BreakReason.objects.get(name="Lunch")

    with pytest.raises(AgentStatusNotAllowed, match="Choose why"):
        agent_set_status(membership=ann, status=A.UNAVAILABLE)
    agent_set_status(membership=ann, status=A.AVAILABLE)
    agent_set_status(membership=ann, status=A.UNAVAILABLE, break_reason=lunch, actor=acme_supervisor)
    agent_set_status(membership=ann, status=A.UNAVAILABLE, break_reason=lunch)  # unchanged: nothing written

    periods = list(AgentStatusPeriod.objects.filter(membership=ann).order_by("started_at", "pk"))
    assert [(p.status, p.break_reason_id, p.ended_at is None) for p in periods] == [
        (A.OFFLINE, None, False), (A.AVAILABLE, None, False), (A.UNAVAILABLE, lunch.pk, True),
    ]  # fmt: skip
    assert periods[0].ended_at == periods[1].started_at
    with pytest.raises(AgentStatusNotAllowed, match="Only the agent or a supervisor"):
        agent_set_status(membership=ann, status=A.OFFLINE, actor=make_member(in_acme, "acme-bob"))
    assert sorted(BreakReason.objects.values_list("name", flat=True)) == ["Break", "Lunch", "Missed offers", "Training"]
    assert break_reasons_ensure_defaults(tenant=in_acme) == []


def test_agents_serve_only_queues_they_are_allowed(in_acme, queue, acme_supervisor):
    other = make_queue("Other")
    ann = make_agent(in_acme, "acme-ann", [queue, other])  # nothing restricted yet: every queue
    agent_allow_queues(membership=ann, queues=[queue], actor=acme_supervisor)
    state = agent_state_for(ann)
    assert list(state.served_queues.values_list("pk", flat=True)) == [queue.pk]  # Other was dropped

    with pytest.raises(QueueNotAllowed, match="Other"):
        agent_choose_queues(membership=ann, queues=[queue, other])
    waiting_task(other)
    assert route(in_acme) == []


# --- where tasks come from ---------------------------------------------------------------------------


def test_an_inbound_message_makes_one_task_with_its_sla_deadlines(in_acme, queue):
    task = waiting_task(queue, priority=ConversationPriority.URGENT)
    conversation = Conversation.objects.get(pk=task.conversation_id)

    again = conversation_task_ensure(conversation=conversation, queue=queue)

    assert again.pk == task.pk
    assert Task.objects.filter(conversation=conversation).count() == 1
    assert (task.status, task.priority, task.queue_id) == (TaskStatus.PENDING, "critical", queue.pk)
    assert task.first_response_due_at == conversation.waiting_since + timedelta(seconds=queue.sla_urgent_seconds)
    assert task.sla_warning_at == task.first_response_due_at - timedelta(seconds=queue.sla_warning_seconds)


def routing_jobs(client) -> list[str]:
    return [
        payload["headers"]["argsrepr"]
        for payload in (json.loads(raw) for raw in client.lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1))
        if payload["headers"]["task"] == "tasks.jobs.route_tenant"
    ]


def test_routing_is_requested_once_per_transaction_after_commit(in_acme, queue, broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        routing_request(tenant_id=in_acme.pk)
        waiting_task(queue)  # creating a task in a queue requests it too
        routing_request(tenant_id=in_acme.pk)
    assert routing_jobs(broker) == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()
    assert routing_jobs(broker) == [repr((in_acme.pk,))]


@pytest.mark.django_db(transaction=True)
def test_requests_wait_for_the_routing_job_not_yet_started_and_a_started_run_takes_new_ones(acme, broker):
    with tenant_context(acme):
        queue = make_queue("Support")
        for _ in range(3):  # three transactions commit while the first job waits in the queue
            with transaction.atomic():
                routing_request(tenant_id=acme.pk)
        assert routing_jobs(broker) == [repr((acme.pk,))]

        route(acme)  # the job's run starts: what commits from now on needs a job of its own
        with transaction.atomic():
            routing_request(tenant_id=acme.pk)
        assert routing_jobs(broker) == [repr((acme.pk,))] * 2

        routing_run(tenant_id=acme.pk, queue_ids=[queue.pk])  # a run of some queues covers less
        with transaction.atomic():
            routing_request(tenant_id=acme.pk)
        assert routing_jobs(broker) == [repr((acme.pk,))] * 2


@pytest.mark.django_db(transaction=True)
def test_completing_work_frees_capacity_and_requests_routing(acme, broker):
    with tenant_context(acme):
        queue = make_queue("Support")
        ann = make_agent(acme, "acme-ann", [queue], capacity={"sms": 1})
        first, second = waiting_task(queue), waiting_task(queue)
        offer_accept(offer=route(acme)[0], agent=ann)
        assert route(acme) == []
        broker.delete(settings.CELERY_TASK_DEFAULT_QUEUE)

        task_complete(task=Task.objects.get(assignee=ann), actor=ann)

        assert routing_jobs(broker) == [repr((acme.pk,))]  # one job, after the commit
        assert [o.task_id for o in route(acme)] == [second.pk]
        assert Task.objects.get(pk=first.pk).status == TaskStatus.COMPLETED
