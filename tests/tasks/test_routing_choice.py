"""The routing engine's choice (tasks/routing.py): tables for each rule, properties over random snapshots.

No database: the choice is a pure function over plain data. The property tests compare it with
`reference_offers`, the rules written out plainly at O(tasks × agents), and check the invariants the
locked service relies on (capacity, offers per task, eligibility) directly.
"""

import dataclasses
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from itertools import count
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.routing import (
    AgentSnapshot,
    OfferDecision,
    Priority,
    QueueRules,
    Strategy,
    TaskSnapshot,
    choose_offers,
    choose_offers_for_task,
)


def agent(agent_id: int, *, queues=(1,), **fields) -> AgentSnapshot:
    return AgentSnapshot(agent_id, queue_ids=frozenset(queues), **fields)


def task(task_id: int, *, queue: int = 1, channel: str = "sms", **fields) -> TaskSnapshot:
    return TaskSnapshot(task_id, queue, channel, **fields)


def queue(strategy: str = "round_robin", queue_id: int = 1, **fields) -> QueueRules:
    return QueueRules(queue_id, strategy, **fields)


def pairs(decisions: list[OfferDecision]) -> list[tuple[int, int]]:
    return [(d.task_id, d.agent_id) for d in decisions]


def offers(tasks, agents, queues, **kwargs) -> list[tuple[int, int]]:
    return pairs(choose_offers(tasks, agents, queues, **kwargs))


# --- Strategies pick what their definition says ------------------------------------------------------

STRATEGY_CASES = [
    pytest.param(
        queue("round_robin"),
        [agent(1, last_assigned_at=50.0), agent(2), agent(3, last_assigned_at=10.0)],
        [task(100)],
        {},
        [(100, 2)],
        id="round-robin-never-assigned-first",
    ),
    pytest.param(
        queue("round_robin"),
        [agent(1, last_assigned_at=50.0), agent(2, last_assigned_at=10.0), agent(3, last_assigned_at=30.0)],
        [task(100)],
        {},
        [(100, 2)],
        id="round-robin-least-recently-assigned",
    ),
    pytest.param(
        queue("round_robin"),
        [agent(7), agent(3), agent(5)],
        [task(100)],
        {},
        [(100, 3)],
        id="round-robin-tie-goes-to-lowest-agent-id",
    ),
    pytest.param(
        queue("round_robin"),
        [agent(1, last_assigned_at=1.0), agent(2, last_assigned_at=2.0)],
        [task(100), task(101), task(102)],
        {},
        [(100, 1), (101, 2), (102, 1)],
        id="round-robin-rotates-within-one-pass",
    ),
    pytest.param(
        queue("round_robin"),
        [agent(1, load={"sms": 2}), agent(2, last_assigned_at=1.0)],
        [task(100)],
        {},
        [(100, 1)],
        id="round-robin-ignores-load-below-capacity",
    ),
    pytest.param(
        queue("load_balancing"),
        [agent(1, load={"sms": 2}), agent(2, load={"sms": 1}), agent(3, load={"sms": 1, "email": 1})],
        [task(100)],
        {},
        [(100, 2)],
        id="load-balancing-lowest-occupancy",
    ),
    pytest.param(
        queue("load_balancing"),
        [agent(1, load={"voice": 1}), agent(2, load={"sms": 2})],
        [task(100)],
        {},
        [(100, 2)],
        id="load-balancing-agent-on-a-call-is-last-for-a-chat",
    ),
    pytest.param(
        queue("load_balancing"),
        [agent(1, load={"sms": 1}, capacity={"sms": 2}), agent(2, load={"sms": 1}, capacity={"sms": 4})],
        [task(100)],
        {},
        [(100, 2)],
        id="load-balancing-relative-to-capacity",
    ),
    pytest.param(
        queue("load_balancing"),
        [agent(1, load={"sms": 1}, last_assigned_at=9.0), agent(2, load={"email": 1}, last_assigned_at=3.0)],
        [task(100)],
        {},
        [(100, 2)],
        id="load-balancing-tie-goes-by-rotation",
    ),
    pytest.param(
        queue("load_balancing"),
        [agent(1), agent(2, load={"sms": 2})],
        [task(100), task(101), task(102)],
        {},
        [(100, 1), (101, 1), (102, 2)],
        id="load-balancing-counts-offers-made-in-the-pass",
    ),
    pytest.param(
        queue("skill_based", required_skills={"spanish", "billing"}),
        [
            agent(1, skills={"spanish": 2, "billing": 2}),
            agent(2, skills={"spanish": 4, "billing": 3}, load={"sms": 2}),
            agent(3, skills={"spanish": 5, "billing": 1}),
        ],
        [task(100)],
        {},
        [(100, 2)],
        id="skill-based-highest-summed-level-even-if-busier",
    ),
    pytest.param(
        queue("skill_based", required_skills={"spanish"}),
        [agent(1, skills={"spanish": 3}, load={"sms": 1}), agent(2, skills={"spanish": 3})],
        [task(100)],
        {},
        [(100, 2)],
        id="skill-based-tie-goes-to-lower-load",
    ),
    pytest.param(
        queue("skill_based", required_skills={"spanish"}),
        [agent(1, skills={"spanish": 3}, last_assigned_at=5.0), agent(2, skills={"spanish": 3}, last_assigned_at=4.0)],
        [task(100)],
        {},
        [(100, 2)],
        id="skill-based-tie-on-level-and-load-goes-by-rotation",
    ),
    pytest.param(
        queue("skill_based", required_skills={"spanish", "billing"}),
        [agent(1, skills={"spanish": 9}), agent(2, skills={"spanish": 1, "billing": 1})],
        [task(100)],
        {},
        [(100, 2)],
        id="skill-based-needs-every-required-skill",
    ),
    pytest.param(
        queue("skill_based", required_skills={"spanish"}),
        [agent(1, skills={"spanish": 5}), agent(2, skills={"french": 2})],
        [task(100, required_skills={"french"})],
        {},
        [(100, 2)],
        id="skill-based-task-skills-replace-the-queues",
    ),
    pytest.param(
        queue("round_robin", required_skills={"billing"}),
        [agent(1), agent(2, skills={"billing": 1}, last_assigned_at=99.0)],
        [task(100)],
        {},
        [(100, 2)],
        id="round-robin-still-requires-the-queues-skills",
    ),
    pytest.param(
        queue("sticky"),
        [agent(1), agent(2, load={"sms": 2}, last_assigned_at=99.0)],
        [task(100, contact_id=42)],
        {42: 2},
        [(100, 2)],
        id="sticky-last-handler-even-if-busier",
    ),
    pytest.param(
        queue("sticky"),
        [agent(1, load={"sms": 1}), agent(2), agent(3, status="unavailable")],
        [task(100, contact_id=42)],
        {42: 3},
        [(100, 2)],
        id="sticky-falls-back-to-load-balancing-when-handler-unavailable",
    ),
    pytest.param(
        queue("sticky"),
        [agent(1, load={"sms": 1}), agent(2)],
        [task(100, contact_id=42)],
        {},
        [(100, 2)],
        id="sticky-falls-back-when-contact-never-handled",
    ),
    pytest.param(
        queue("sticky"),
        [agent(1), agent(2, load={"sms": 3})],
        [task(100, contact_id=42)],
        {42: 2},
        [(100, 1)],
        id="sticky-falls-back-when-handler-at-capacity",
    ),
    pytest.param(
        queue("sticky"),
        [agent(1), agent(2)],
        [task(100, contact_id=42, declined_by={2})],
        {42: 2},
        [(100, 1)],
        id="sticky-falls-back-when-handler-declined",
    ),
]


@pytest.mark.parametrize(("rules", "agents", "tasks", "last_handlers", "expected"), STRATEGY_CASES)
def test_strategy_picks_the_agent_its_definition_says(rules, agents, tasks, last_handlers, expected):
    assert offers(tasks, agents, [rules], last_handler_by_contact=last_handlers) == expected


# --- Capacity: a call blocks other calls, not chats --------------------------------------------------

CAPACITY_CASES = [
    pytest.param(agent(1, load={"voice": 1}), task(100, channel="voice"), [], id="on-a-call-gets-no-call"),
    pytest.param(agent(1, load={"voice": 1}), task(100, channel="sms"), [(100, 1)], id="on-a-call-gets-a-chat"),
    pytest.param(
        agent(1, load={"voice": 1}), task(100, channel="webchat"), [(100, 1)], id="on-a-call-gets-a-webchat"
    ),
    pytest.param(agent(1, load={"sms": 3}), task(100, channel="sms"), [], id="three-chats-fill-chat-capacity"),
    pytest.param(agent(1, load={"sms": 3}), task(100, channel="voice"), [(100, 1)], id="chats-do-not-block-a-call"),
    pytest.param(
        agent(1, load={"voice": 1}, capacity={"voice": 2}),
        task(100, channel="voice"),
        [(100, 1)],
        id="capacity-is-data-per-agent",
    ),
    pytest.param(agent(1, capacity={"email": 0}), task(100, channel="email"), [], id="capacity-zero-takes-none"),
    pytest.param(agent(1, load={"sms": 5}), task(100, channel="sms"), [], id="already-over-capacity"),
]


@pytest.mark.parametrize(("the_agent", "the_task", "expected"), CAPACITY_CASES)
def test_agent_takes_a_task_only_with_spare_capacity_on_its_channel(the_agent, the_task, expected):
    assert offers([the_task], [the_agent], [queue()]) == expected


def test_one_pass_never_fills_an_agent_past_capacity():
    agents = [agent(1, load={"sms": 1}), agent(2, load={"voice": 1})]
    tasks = [task(100 + n, channel="sms") for n in range(6)] + [task(200, channel="voice"), task(201, channel="voice")]
    made = offers(tasks, agents, [queue("load_balancing")])
    assert made == [(100, 1), (101, 1), (102, 2), (103, 2), (104, 2), (200, 1)]


def test_full_capacity_on_one_channel_leaves_other_queues_on_that_channel_alone():
    agents = [agent(1, queues=(1, 2), load={"sms": 2}), agent(2, queues=(2,), load={"sms": 2})]
    queues = [queue(queue_id=1), queue(queue_id=2)]
    tasks = [task(100, queue=1, priority=Priority.HIGH), task(101, queue=2), task(102, queue=2)]
    assert offers(tasks, agents, queues) == [(100, 1), (101, 2)]


# --- Wrap-up, status, queue membership, skills, channels --------------------------------------------

@pytest.mark.parametrize(
    ("wrap_up_receives_work", "expected"),
    [pytest.param(False, [], id="queue-says-no-work-in-wrap-up"), pytest.param(True, [(100, 1)], id="queue-allows")],
)
def test_wrap_up_gating(wrap_up_receives_work, expected):
    rules = queue(wrap_up_receives_work=wrap_up_receives_work)
    assert offers([task(100)], [agent(1, in_wrap_up=True)], [rules]) == expected


EXCLUDED_AGENTS = [
    pytest.param(agent(1, status="unavailable"), queue(), id="unavailable"),
    pytest.param(agent(1, status="offline"), queue(), id="offline"),
    pytest.param(agent(1, queues=(2,)), queue(), id="does-not-serve-the-queue"),
    pytest.param(agent(1, skills={"billing": 5}), queue(required_skills={"spanish"}), id="missing-skill"),
    pytest.param(agent(1, in_wrap_up=True), queue(), id="in-wrap-up"),
    pytest.param(agent(1, load={"sms": 3}), queue(), id="no-room-on-the-channel"),
]


@pytest.mark.parametrize(("the_agent", "rules"), EXCLUDED_AGENTS)
@pytest.mark.parametrize("strategy", list(Strategy))
def test_ineligible_agent_gets_no_offer(the_agent, rules, strategy):
    rules = dataclasses.replace(rules, strategy=strategy)
    last_handlers = {42: the_agent.agent_id}  # even sticky routing does not reach them
    assert offers([task(100, contact_id=42)], [the_agent], [rules], last_handler_by_contact=last_handlers) == []
    # Beside an eligible colleague (who comes later in the rotation), the colleague gets it.
    colleague = agent(2, skills={"spanish": 1}, last_assigned_at=1e9)
    made = offers([task(100, contact_id=42)], [the_agent, colleague], [rules], last_handler_by_contact=last_handlers)
    assert made == [(100, 2)]


@pytest.mark.parametrize("channel", ["voice", "email"])
def test_task_on_a_channel_its_queue_does_not_take_gets_no_offer(channel):
    rules = queue(channels={"sms", "webchat"})
    assert offers([task(100, channel=channel), task(101, channel="sms")], [agent(1)], [rules]) == [(101, 1)]


# --- Declines, pending offers, offers per task --------------------------------------------------------

@pytest.mark.parametrize(
    ("declined_by", "expected"),
    [
        pytest.param(set(), [(100, 1)], id="nobody-declined"),
        pytest.param({1}, [(100, 2)], id="declined-agent-skipped"),
        pytest.param({1, 2}, [], id="everyone-declined"),
    ],
)
def test_agent_who_declined_is_never_offered_the_task_again(declined_by, expected):
    agents = [agent(1), agent(2, last_assigned_at=5.0)]
    assert offers([task(100, declined_by=declined_by)], agents, [queue()]) == expected


@pytest.mark.parametrize(
    ("max_offers", "pending", "expected"),
    [
        pytest.param(1, set(), [(100, 1)], id="one-at-a-time"),
        pytest.param(3, set(), [(100, 1), (100, 2), (100, 3)], id="first-of-three-wins"),
        pytest.param(2, {1}, [(100, 2)], id="pending-offer-counts-toward-the-limit"),
        pytest.param(1, {4}, [], id="limit-already-reached-by-pending"),
        pytest.param(5, set(), [(100, 1), (100, 2), (100, 3), (100, 4)], id="limit-above-the-agents"),
    ],
)
def test_offers_per_task_respect_the_queue_limit(max_offers, pending, expected):
    agents = [agent(n, last_assigned_at=float(n)) for n in (1, 2, 3, 4)]
    rules = queue(max_offers_per_task=max_offers)
    assert offers([task(100, pending_offers_to=pending)], agents, [rules]) == expected


def test_parallel_offers_for_one_task_each_take_capacity():
    agents = [agent(1, load={"voice": 0}), agent(2)]
    tasks = [task(100, channel="voice"), task(101, channel="voice")]
    assert offers(tasks, agents, [queue(max_offers_per_task=2)]) == [(100, 1), (100, 2)]


# --- Task order ---------------------------------------------------------------------------------------

ORDER_CASES = [
    pytest.param(
        task(1, priority=Priority.LOW, waiting_since=0.0), task(2, priority=Priority.HIGH, waiting_since=50.0), 2,
        id="higher-priority-before-older",
    ),
    pytest.param(
        task(1, priority=Priority.HIGH, vip=True), task(2, priority=Priority.CRITICAL), 2,
        id="priority-before-vip",
    ),
    pytest.param(
        task(1, waiting_since=0.0), task(2, vip=True, waiting_since=50.0), 2, id="vip-before-older-at-same-priority"
    ),
    pytest.param(task(1, waiting_since=20.0), task(2, waiting_since=10.0), 2, id="older-first"),
    pytest.param(task(9), task(8), 8, id="task-id-breaks-a-full-tie"),
]


@pytest.mark.parametrize(("first", "second", "winner"), ORDER_CASES)
def test_task_order(first, second, winner):
    # One agent, one voice slot: only the first task in routing order gets it.
    first, second = (TaskSnapshot(t.task_id, 1, "voice", t.priority, t.vip, t.waiting_since) for t in (first, second))
    assert offers([first, second], [agent(1)], [queue()]) == [(winner, 1)]
    assert offers([second, first], [agent(1)], [queue()]) == [(winner, 1)]


def test_decisions_come_in_task_order():
    tasks = [
        task(1, waiting_since=5.0),
        task(2, priority=Priority.URGENT, waiting_since=9.0),
        task(3, vip=True, waiting_since=8.0),
        task(4, waiting_since=1.0),
    ]
    agents = [agent(n) for n in (1, 2)]
    assert [t for t, _ in offers(tasks, agents, [queue()])] == [2, 3, 4, 1]


def test_datetime_waiting_since():
    start = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
    tasks = [task(1, waiting_since=start + timedelta(minutes=5)), task(2, waiting_since=start)]
    made = choose_offers(tasks, [agent(1, capacity={"sms": 1})], [queue()], now=start + timedelta(minutes=10))
    assert pairs(made) == [(2, 1)]
    assert made[0].explanation.endswith("; waited 600s")


# --- Explanations name the strategy and the deciding facts --------------------------------------------

EXPLANATION_CASES = [
    pytest.param(
        queue("skill_based", required_skills={"spanish", "billing"}),
        [
            agent(1, skills={"spanish": 4, "billing": 3}, load={"sms": 1}),
            agent(2, skills={"spanish": 2, "billing": 3}),
            agent(3, skills={"spanish": 1, "billing": 1}),
        ],
        {},
        "skill_based: billing 3 + spanish 4 = 7 (best of 3 eligible); load 1/3 sms",
        id="skill-based",
    ),
    pytest.param(
        queue("skill_based", required_skills={"spanish"}),
        [agent(1, skills={"spanish": 3}, load={"sms": 1}), agent(2, skills={"spanish": 3})],
        {},
        "skill_based: spanish 3 = 3 (best of 2 eligible, tie broken by occupancy); load 0/3 sms",
        id="skill-based-tie",
    ),
    pytest.param(
        queue("sticky"),
        [agent(1), agent(2, load={"email": 1})],
        {42: 2},
        "sticky: last handled contact 42; load 0/3 sms",
        id="sticky",
    ),
    pytest.param(
        queue("sticky"),
        [agent(1, load={"voice": 1}), agent(2, status="unavailable")],
        {42: 2},
        "sticky → load_balancing fallback: last handler 2 unavailable; "
        "lowest occupancy 1 (1/1 voice) of 1 eligible; load 0/3 sms",
        id="sticky-fallback-unavailable",
    ),
    pytest.param(
        queue("sticky"),
        [agent(1), agent(2)],
        {},
        "sticky → load_balancing fallback: no previous handler for contact 42; "
        "lowest occupancy 0 (idle) of 2 eligible, tie broken by rotation; load 0/3 sms",
        id="sticky-fallback-never-handled",
    ),
    pytest.param(
        queue("sticky", required_skills={"billing"}),
        [agent(1, skills={"billing": 1}), agent(2)],
        {42: 2},
        "sticky → load_balancing fallback: last handler 2 lacks billing; "
        "lowest occupancy 0 (idle) of 1 eligible; load 0/3 sms",
        id="sticky-fallback-missing-skill",
    ),
    pytest.param(
        queue("load_balancing"),
        [agent(1, load={"sms": 1, "voice": 1}), agent(2, load={"email": 1})],
        {},
        "load_balancing: lowest occupancy 0.33 (1/3 email) of 2 eligible; load 0/3 sms",
        id="load-balancing",
    ),
    pytest.param(
        queue("round_robin"),
        [agent(1, last_assigned_at=20.0), agent(2, last_assigned_at=10.0)],
        {},
        "round_robin: least recently assigned (at 10.0) of 2 eligible; load 0/3 sms",
        id="round-robin",
    ),
    pytest.param(
        queue("round_robin"),
        [agent(1, last_assigned_at=20.0), agent(2)],
        {},
        "round_robin: never assigned, first in rotation of 2 eligible; load 0/3 sms",
        id="round-robin-never-assigned",
    ),
]


@pytest.mark.parametrize(("rules", "agents", "last_handlers", "expected"), EXPLANATION_CASES)
def test_explanation_names_strategy_and_deciding_facts(rules, agents, last_handlers, expected):
    [decision] = choose_offers([task(100, contact_id=42)], agents, [rules], last_handler_by_contact=last_handlers)
    assert decision.explanation == expected


def test_explanation_says_how_long_the_task_waited_and_since_last_assignment_when_given_now():
    [decision] = choose_offers([task(100, waiting_since=40.0)], [agent(1, last_assigned_at=10.0)], [queue()], now=100.0)
    assert decision.explanation == (
        "round_robin: least recently assigned (90s ago) of 1 eligible; load 0/3 sms; waited 60s"
    )


def test_explanation_when_rotation_comes_round_again_in_one_pass():
    made = choose_offers([task(1), task(2)], [agent(1)], [queue()])
    assert made[1].explanation.startswith("round_robin: everyone eligible already had an offer this pass")
    assert made[1].explanation.endswith("load 1/3 sms")


def test_second_parallel_offer_of_a_sticky_task_explains_the_fallback():
    made = choose_offers([task(100, contact_id=42)], [agent(1), agent(2)], [queue("sticky", max_offers_per_task=2)],
                         last_handler_by_contact={42: 2})
    assert [d.explanation.split(";")[0] for d in made] == [
        "sticky: last handled contact 42",
        "sticky → load_balancing fallback: last handler 2 already holds an offer for this task",
    ]


# --- The one-task path and bad snapshots ----------------------------------------------------------------

def test_choose_offers_for_task_matches_a_full_pass_of_one_task():
    agents = [agent(n, load={"sms": n % 3}, last_assigned_at=float(10 - n)) for n in range(1, 8)]
    the_task = task(100, pending_offers_to={1})
    rules = queue("load_balancing", max_offers_per_task=3)
    assert choose_offers_for_task(the_task, agents, rules) == choose_offers([the_task], agents, [rules])
    assert pairs(choose_offers_for_task(the_task, agents, rules)) == [(100, 6), (100, 3)]


@pytest.mark.parametrize(
    ("tasks", "agents", "queues", "message"),
    [
        pytest.param([task(1), task(1)], [], [queue()], "duplicate task ids", id="duplicate-task"),
        pytest.param([task(1)], [agent(1), agent(1)], [queue()], "duplicate agent_id 1", id="duplicate-agent"),
        pytest.param([task(1)], [], [queue(), queue()], "duplicate queue_id 1", id="duplicate-queue"),
        pytest.param([task(1, queue=9)], [], [queue()], r"queues not in the snapshot: \[9\]", id="unknown-queue"),
    ],
)
def test_inconsistent_snapshot_fails_loudly(tasks, agents, queues, message):
    with pytest.raises(ValueError, match=message):
        choose_offers(tasks, agents, queues)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: task(1, channel="pigeon"), id="unknown-channel"),
        pytest.param(lambda: queue("random"), id="unknown-strategy"),
        pytest.param(lambda: agent(1, status="busy"), id="unknown-status"),
        pytest.param(lambda: queue(max_offers_per_task=0), id="no-offers-allowed"),
        pytest.param(lambda: agent(1, capacity={"sms": -1}), id="negative-capacity"),
    ],
)
def test_snapshot_rejects_bad_values(build):
    with pytest.raises(ValueError):
        build()


def test_routing_module_loads_without_django():
    """The choice must stay importable (and benchmarkable) without Django or a database."""
    probe = "import sys, tasks.routing; sys.exit('django' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).resolve().parents[2], env={})
    assert result.returncode == 0


# --- Properties over random snapshots ----------------------------------------------------------------

CHANNELS = ["voice", "sms", "email"]
SKILLS = ["spanish", "billing"]


class Snapshot(NamedTuple):
    tasks: list[TaskSnapshot]
    agents: list[AgentSnapshot]
    queues: list[QueueRules]
    last_handler_by_contact: dict[int, int]


@st.composite
def snapshots(draw) -> Snapshot:
    """Small snapshots where most tasks have someone who could take them, and some have nobody."""
    queue_ids = range(1, draw(st.integers(1, 3)) + 1)
    queues = [
        QueueRules(
            queue_id,
            draw(st.sampled_from(list(Strategy))),
            required_skills=draw(st.frozensets(st.sampled_from(SKILLS), max_size=1)),
            max_offers_per_task=draw(st.integers(1, 3)),
            wrap_up_receives_work=draw(st.booleans()),
            channels=draw(st.just(frozenset(CHANNELS)) | st.frozensets(st.sampled_from(CHANNELS), min_size=1)),
        )
        for queue_id in queue_ids
    ]
    agent_ids = list(range(1, draw(st.integers(0, 7)) + 1))
    some_agents = st.frozensets(st.sampled_from(agent_ids), max_size=2) if agent_ids else st.just(frozenset())
    agents = [
        AgentSnapshot(
            agent_id,
            draw(st.sampled_from(["available"] * 6 + ["unavailable", "offline"])),
            in_wrap_up=draw(st.integers(0, 5)) == 0,
            queue_ids=draw(st.frozensets(st.sampled_from(queue_ids), min_size=1)),
            skills=draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), min_size=1)),
            capacity=draw(st.dictionaries(st.sampled_from(CHANNELS), st.integers(0, 3), max_size=2)),
            load=draw(st.dictionaries(st.sampled_from(CHANNELS), st.integers(0, 3), max_size=2)),
            last_assigned_at=draw(st.none() | st.integers(0, 4).map(float)),
        )
        for agent_id in agent_ids
    ]
    tasks = [
        TaskSnapshot(
            task_id,
            draw(st.sampled_from(queue_ids)),
            draw(st.sampled_from(CHANNELS)),
            priority=draw(st.integers(0, 3)),
            vip=draw(st.booleans()),
            waiting_since=float(draw(st.integers(0, 5))),
            contact_id=draw(st.none() | st.integers(1, 4)),
            declined_by=draw(st.just(frozenset()) | some_agents),
            pending_offers_to=draw(st.just(frozenset()) | some_agents),
            required_skills=draw(st.none() | st.frozensets(st.sampled_from(SKILLS), max_size=1)),
        )
        for task_id in range(1, draw(st.integers(0, 14)) + 1)
    ]
    # Handlers run one past the agents: a contact's last handler may be nobody on duty now.
    last_handlers = {contact_id: draw(st.integers(1, len(agent_ids) + 1)) for contact_id in range(1, 4)}
    return Snapshot(tasks, agents, queues, last_handlers)


def routed(snapshot: Snapshot) -> list[OfferDecision]:
    return choose_offers(
        snapshot.tasks, snapshot.agents, snapshot.queues, last_handler_by_contact=snapshot.last_handler_by_contact
    )


def required_skills(the_task: TaskSnapshot, rules: QueueRules) -> frozenset[str]:
    return rules.required_skills if the_task.required_skills is None else the_task.required_skills


def may_take(the_agent: AgentSnapshot, the_task: TaskSnapshot, rules: QueueRules, load: dict[str, int]) -> bool:
    """Eligibility, from the rules: everything but declines and pending offers."""
    return (
        the_agent.status == "available"
        and rules.queue_id in the_agent.queue_ids
        and the_task.channel in rules.channels
        and not (the_agent.in_wrap_up and not rules.wrap_up_receives_work)
        and all(s in the_agent.skills for s in required_skills(the_task, rules))
        and load[the_task.channel] < the_agent.capacity[the_task.channel]
    )


def reference_offers(snapshot: Snapshot) -> list[tuple[int, int]]:
    """The rules written out plainly, O(tasks × agents): what choose_offers must agree with."""
    tasks, agents, queues, last_handlers = snapshot
    rules_by_id = {q.queue_id: q for q in queues}
    load = {a.agent_id: dict(a.load) for a in agents}
    offered_at: dict[int, int] = {}
    sequence = count()

    def rotation(a: AgentSnapshot) -> tuple:
        if a.agent_id in offered_at:
            return (2, offered_at[a.agent_id])
        if a.last_assigned_at is None:
            return (0, a.agent_id)
        return (1, a.last_assigned_at, a.agent_id)

    def occupancy(a: AgentSnapshot) -> Fraction:
        return sum(Fraction(n, a.capacity[c]) if a.capacity[c] else Fraction(n) for c, n in load[a.agent_id].items())

    made = []
    for t in sorted(tasks, key=lambda t: (-t.priority, not t.vip, t.waiting_since, t.task_id)):
        rules = rules_by_id[t.queue_id]
        skills = required_skills(t, rules)
        excluded = set(t.declined_by | t.pending_offers_to)
        for _ in range(rules.max_offers_per_task - len(t.pending_offers_to)):
            eligible = [a for a in agents if a.agent_id not in excluded and may_take(a, t, rules, load[a.agent_id])]
            if not eligible:
                break
            by_load = min(eligible, key=lambda a: (occupancy(a), rotation(a)))
            if rules.strategy == "round_robin":
                chosen = min(eligible, key=rotation)
            elif rules.strategy == "load_balancing":
                chosen = by_load
            elif rules.strategy == "skill_based":
                chosen = min(eligible, key=lambda a: (-sum(a.skills[s] for s in skills), occupancy(a), rotation(a)))
            else:
                handler = last_handlers.get(t.contact_id)
                chosen = next((a for a in eligible if a.agent_id == handler), by_load)
            made.append((t.task_id, chosen.agent_id))
            excluded.add(chosen.agent_id)
            load[chosen.agent_id][t.channel] += 1
            offered_at[chosen.agent_id] = next(sequence)
    return made


@settings(max_examples=200)
@given(snapshots())
def test_choice_matches_the_rules_written_out_plainly(snapshot):
    assert pairs(routed(snapshot)) == reference_offers(snapshot)


@settings(max_examples=100)
@given(snapshots())
def test_no_agent_ever_exceeds_a_channel_capacity(snapshot):
    offered = Counter()
    by_id = {t.task_id: t for t in snapshot.tasks}
    for decision in routed(snapshot):
        offered[decision.agent_id, by_id[decision.task_id].channel] += 1
    for a in snapshot.agents:
        for channel in CHANNELS:
            if offered[a.agent_id, channel]:
                assert a.load[channel] + offered[a.agent_id, channel] <= a.capacity[channel]


@settings(max_examples=100)
@given(snapshots())
def test_no_task_gets_more_offers_than_its_queue_allows(snapshot):
    decisions = pairs(routed(snapshot))
    assert len(set(decisions)) == len(decisions)
    rules_by_id = {q.queue_id: q for q in snapshot.queues}
    per_task = Counter(task_id for task_id, _ in decisions)
    for t in snapshot.tasks:
        if per_task[t.task_id]:
            assert len(t.pending_offers_to) + per_task[t.task_id] <= rules_by_id[t.queue_id].max_offers_per_task


@settings(max_examples=100)
@given(snapshots())
def test_every_offer_goes_to_an_eligible_agent(snapshot):
    tasks = {t.task_id: t for t in snapshot.tasks}
    agents = {a.agent_id: a for a in snapshot.agents}
    rules_by_id = {q.queue_id: q for q in snapshot.queues}
    for decision in routed(snapshot):
        t, a = tasks[decision.task_id], agents[decision.agent_id]
        assert a.agent_id not in t.declined_by and a.agent_id not in t.pending_offers_to
        assert may_take(a, t, rules_by_id[t.queue_id], dict(a.load))  # eligible before this pass's offers
        assert decision.explanation.startswith(rules_by_id[t.queue_id].strategy)


@settings(max_examples=100)
@given(snapshots())
def test_no_task_waits_while_an_eligible_agent_has_room(snapshot):
    """Greedy and work-conserving: after the pass, every task still short of offers has nobody left to take it."""
    decisions = pairs(routed(snapshot))
    tasks = {t.task_id: t for t in snapshot.tasks}
    load = {a.agent_id: dict(a.load) for a in snapshot.agents}
    for task_id, agent_id in decisions:
        load[agent_id][tasks[task_id].channel] += 1
    rules_by_id = {q.queue_id: q for q in snapshot.queues}
    for t in snapshot.tasks:
        rules = rules_by_id[t.queue_id]
        offered = {a for task_id, a in decisions if task_id == t.task_id}
        if len(t.pending_offers_to) + len(offered) < rules.max_offers_per_task:
            excluded = t.declined_by | t.pending_offers_to | offered
            assert not [
                a.agent_id for a in snapshot.agents
                if a.agent_id not in excluded and may_take(a, t, rules, load[a.agent_id])
            ]


@settings(max_examples=100)
@given(snapshots(), st.data())
def test_same_snapshot_same_offers_whatever_the_order_of_its_lists(snapshot, data):
    first = routed(snapshot)
    assert routed(snapshot) == first
    shuffled = Snapshot(
        data.draw(st.permutations(snapshot.tasks)),
        data.draw(st.permutations(snapshot.agents)),
        data.draw(st.permutations(snapshot.queues)),
        snapshot.last_handler_by_contact,
    )
    assert routed(shuffled) == first


@settings(max_examples=50)
@given(snapshots())
def test_snapshot_is_not_changed_by_routing(snapshot):
    before = [(a.agent_id, dict(a.load), a.last_assigned_at) for a in snapshot.agents]
    routed(snapshot)
    assert [(a.agent_id, dict(a.load), a.last_assigned_at) for a in snapshot.agents] == before
