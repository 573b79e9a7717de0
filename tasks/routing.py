"""The routing engine's choice: which available agents get an offer for which waiting task.

This is a pure function over a snapshot of plain data: no Django, no database, no clock (the time,
when an explanation should mention how long a task waited, comes in as `now`), no randomness. The
same snapshot always gives the same offers, whatever the order of its lists, so the choice is tested
by table and by property and benchmarked without a database. A service loads the snapshot, calls
`choose_offers` and applies the decisions under row locks (`SELECT ... FOR UPDATE SKIP LOCKED`);
when a lock or a compare-and-set fails it re-reads and routes again. Concurrency never reaches here.

Rules (the contract the tests check):

- **Eligible agent** for a task: status `available`; serves the task's queue; not in wrap-up unless
  the queue lets agents in wrap-up receive work; has every required skill (the task's own
  `required_skills` when given, which *replace* the queue's); spare capacity on the task's channel
  (`load[channel] < capacity[channel]`, so a call blocks other calls but not chats); has not
  declined (or let time out) an offer of this task; does not already hold an offer for it.
- **Task order**: higher priority first, then VIP before non-VIP, then longest waiting, then task id.
  A task whose channel its queue does not take gets no offer.
- **Offers per task**: up to the queue's `max_offers_per_task`, counting the offers already pending.
- **Strategies** (the first key wins; every key ends in the agent's place in the rotation):
  - `round_robin`: the rotation: never-assigned agents first, then least recently assigned, then
    agent id. An agent offered a task in this pass moves to the back, as if assigned just now.
  - `load_balancing`: lowest *occupancy*, the sum over channels of load / capacity. One call on a
    voice capacity of 1 weighs as much as three chats on a chat capacity of 3, so an agent on a call
    is the last to get a chat. Ties go by the rotation.
  - `skill_based`: highest sum of levels over the required skills, then occupancy, then rotation.
  - `sticky`: the agent who last handled the task's contact (`last_handler_by_contact`, contact id
    → agent id, given separately because it is a fact about contacts) if eligible, otherwise load
    balancing; the explanation says why it fell back.
- **One pass, greedy**: tasks are taken in order and each offer adds to the chosen agent's load and
  moves them in the rotation before the next choice, so one call never puts an agent over capacity.

Cost: agents are grouped into *pools*, the agents who could take a task of one route (queue,
channel, required skills), and the waiting tasks into one heap per pool; reading every task once
(a lookup and an append) is the only work that grows with the queue. The heaps are merged in task
order; a pool whose agents are all at capacity is dropped with every task still waiting in it, so a
pass ends as soon as nobody can take more, and each decision scans the free agents of one pool.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from heapq import heapify, heappop, heapreplace
from itertools import count
from operator import attrgetter
from types import MappingProxyType

type Moment = float | datetime
"""A point in time: a float timestamp or a datetime. Use one kind throughout a snapshot."""


class Channel(StrEnum):
    VOICE = "voice"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    WEBCHAT = "webchat"
    EMAIL = "email"
    FAX = "fax"


class Strategy(StrEnum):
    ROUND_ROBIN = "round_robin"
    LOAD_BALANCING = "load_balancing"
    SKILL_BASED = "skill_based"
    STICKY = "sticky"


class AgentStatus(StrEnum):
    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"
    OFFLINE = "offline"


class Priority(IntEnum):
    """Priority ranks; a task's priority may be any int, higher is served first."""

    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3
    NORMAL = 1  # the names for the same ranks
    URGENT = 3


CHANNELS: tuple[str, ...] = tuple(c.value for c in Channel)
DEFAULT_CAPACITY: Mapping[str, int] = MappingProxyType(
    {c: 1 if c == Channel.VOICE else 3 for c in CHANNELS}
)
"""Capacity per channel unless an agent's snapshot says otherwise: one call, three of anything else."""


def _set(snapshot: object, name: str, value: object) -> None:
    # Normalising a frozen dataclass in __post_init__ is the one place a field is written.
    object.__setattr__(snapshot, name, value)


def _channel_counts(given: Mapping[str, int], defaults: Mapping[str, int], what: str) -> Mapping[str, int]:
    counts = dict(defaults)
    for channel, n in given.items():
        counts[Channel(channel).value] = int(n)
        if counts[channel] < 0:
            raise ValueError(f"{what} on {channel} is negative: {n}")
    return MappingProxyType(counts)


@dataclass(frozen=True, slots=True)
class QueueRules:
    """How one queue routes its tasks.

    `max_offers_per_task`: 1 offers a task to one agent at a time; N offers it to up to N agents at
    once and the first to accept wins.
    """

    queue_id: int
    strategy: str = Strategy.ROUND_ROBIN
    required_skills: frozenset[str] = frozenset()
    max_offers_per_task: int = 1
    wrap_up_receives_work: bool = False
    channels: frozenset[str] = frozenset(CHANNELS)

    def __post_init__(self) -> None:
        _set(self, "strategy", Strategy(self.strategy).value)
        _set(self, "required_skills", frozenset(self.required_skills))
        _set(self, "channels", frozenset(Channel(c).value for c in self.channels))
        if self.max_offers_per_task < 1:
            raise ValueError(f"queue {self.queue_id}: max_offers_per_task must be at least 1")


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    """A task waiting in a queue.

    `declined_by`: agents who declined or let an offer of this task time out; never offered it again.
    `pending_offers_to`: agents holding a pending offer for it now (already counted in their load).
    `required_skills`: when given, replaces the queue's required skills for this task.
    """

    task_id: int
    queue_id: int
    channel: str
    priority: int = Priority.MEDIUM
    vip: bool = False
    waiting_since: Moment = 0.0
    contact_id: int | None = None
    declined_by: frozenset[int] = frozenset()
    pending_offers_to: frozenset[int] = frozenset()
    required_skills: frozenset[str] | None = None

    def __post_init__(self) -> None:
        _set(self, "channel", Channel(self.channel).value)
        _set(self, "declined_by", frozenset(self.declined_by))
        _set(self, "pending_offers_to", frozenset(self.pending_offers_to))
        if self.required_skills is not None:
            _set(self, "required_skills", frozenset(self.required_skills))


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """An agent (a tenant membership) as routing sees them.

    `capacity`: tasks the agent may hold at once per channel; channels left out take
    `DEFAULT_CAPACITY`. `load`: tasks assigned plus pending offers, per channel; channels left out
    are 0. `last_assigned_at`: None for never assigned (first in the rotation).
    """

    agent_id: int
    status: str = AgentStatus.AVAILABLE
    in_wrap_up: bool = False
    queue_ids: frozenset[int] = frozenset()
    skills: Mapping[str, int] = field(default_factory=dict)
    capacity: Mapping[str, int] = DEFAULT_CAPACITY
    load: Mapping[str, int] = field(default_factory=dict)
    last_assigned_at: Moment | None = None

    def __post_init__(self) -> None:
        _set(self, "status", AgentStatus(self.status).value)
        _set(self, "queue_ids", frozenset(self.queue_ids))
        _set(self, "skills", MappingProxyType(dict(self.skills)))
        _set(self, "capacity", _channel_counts(self.capacity, DEFAULT_CAPACITY, "capacity"))
        _set(self, "load", _channel_counts(self.load, dict.fromkeys(CHANNELS, 0), "load"))


@dataclass(frozen=True, slots=True)
class OfferDecision:
    """Offer `task_id` to `agent_id`; `explanation` is shown to the agent and kept for supervisors."""

    task_id: int
    agent_id: int
    explanation: str


class _Agent:
    """An agent's load and place in the rotation during one pass; each offer made updates them."""

    __slots__ = (
        "snapshot", "agent_id", "skill_names", "capacity", "load", "rotation", "offered_this_pass",
        "occupancy", "occupancy_denominator", "occupancy_step", "pools_by_channel",
    )

    def __init__(self, snapshot: AgentSnapshot, rotation: int, occupancy_denominator: int) -> None:
        self.snapshot = snapshot
        self.agent_id = snapshot.agent_id
        self.skill_names = frozenset(snapshot.skills)
        self.capacity = snapshot.capacity
        self.load = dict(snapshot.load)
        self.rotation = rotation
        self.offered_this_pass = False
        # Occupancy is kept as an integer count of 1/occupancy_denominator (the lcm of every capacity in the
        # pass), so ties are exact. A task on a channel of capacity 0 (lowered under a busy agent) weighs 1.
        self.occupancy_denominator = occupancy_denominator
        self.occupancy_step = {c: occupancy_denominator // (cap or 1) for c, cap in self.capacity.items()}
        self.occupancy = sum(n * self.occupancy_step[c] for c, n in self.load.items())
        self.pools_by_channel: dict[str, list[_Pool]] = {}


class _Pool:
    """The agents who could take a task of one queue, channel and skill set, and the tasks waiting for them.

    `free` holds the pool's agents with spare capacity on the channel; an agent leaves it when full
    and never comes back within a pass (load only grows), so an empty `free` ends the pool.
    """

    __slots__ = ("queue", "channel", "skills", "free", "skill_level", "waiting")

    def __init__(self, queue: QueueRules, channel: str, skills: frozenset[str]) -> None:
        self.queue = queue
        self.channel = channel
        self.skills = skills
        self.free: dict[int, _Agent] = {}
        self.skill_level: dict[int, int] = {}
        self.waiting: list[tuple] = []


def choose_offers(
    tasks: Iterable[TaskSnapshot],
    agents: Iterable[AgentSnapshot],
    queues: Iterable[QueueRules],
    *,
    last_handler_by_contact: Mapping[int, int] | None = None,
    now: Moment | None = None,
) -> list[OfferDecision]:
    """The offers to make now, in the order they were decided (task order, then best agent first).

    Raises ValueError on duplicate task, agent or queue ids, or a task whose queue is not given.
    `now`, when given, only adds how long the task waited to each explanation.
    """
    tasks = list(tasks)
    queue_by_id = _by_unique_id(queues, "queue_id")
    agent_by_id = _by_unique_id(agents, "agent_id")
    if len({t.task_id for t in tasks}) != len(tasks):
        raise ValueError("duplicate task ids in the snapshot")
    needed_queue_ids = {t.queue_id for t in tasks}
    if missing := needed_queue_ids - queue_by_id.keys():
        raise ValueError(f"tasks refer to queues not in the snapshot: {sorted(missing)}")

    serving = _working_agents([a for a in agent_by_id.values() if not a.queue_ids.isdisjoint(needed_queue_ids)])
    serving_by_queue: dict[int, list[_Agent]] = {}
    for agent in serving:
        for queue_id in agent.snapshot.queue_ids & needed_queue_ids:
            serving_by_queue.setdefault(queue_id, []).append(agent)

    # Group the waiting tasks by route (queue, channel, the task's own skills if any). A route that leads
    # to nobody (the queue does not take the channel, or no agent has room) maps to None and its tasks
    # are passed over at the cost of one lookup. This loop is the only work done for every task.
    pool_by_route: dict[tuple[int, str, frozenset[str] | None], _Pool | None] = {}
    for index, task in enumerate(tasks):
        route = (task.queue_id, task.channel, task.required_skills)
        pool = pool_by_route.get(route, _UNROUTED)
        if pool is _UNROUTED:
            pool = pool_by_route[route] = _build_pool(queue_by_id[task.queue_id], task, serving_by_queue)
        if pool is not None and len(task.pending_offers_to) < pool.queue.max_offers_per_task:
            pool.waiting.append((-task.priority, not task.vip, task.waiting_since, task.task_id, index))
    pools = [pool for pool in pool_by_route.values() if pool is not None]

    # Merge the pools' heaps in task order. The pool number breaks no ties (task ids are unique); it
    # only keeps the comparison away from the pool object.
    merge = []
    for number, pool in enumerate(pools):
        if pool.waiting:
            heapify(pool.waiting)
            merge.append((pool.waiting[0], number, pool))
    heapify(merge)

    rotation = count(len(serving))
    decisions: list[OfferDecision] = []
    last_handlers = last_handler_by_contact or {}
    while merge:
        _, number, pool = merge[0]
        if not pool.free:  # everyone who could take these tasks is at capacity: they keep waiting
            heappop(merge)
            continue
        task = tasks[heappop(pool.waiting)[-1]]
        excluded = set(task.declined_by | task.pending_offers_to)
        for _ in range(pool.queue.max_offers_per_task - len(task.pending_offers_to)):
            choice = _choose_agent(task, pool, excluded, last_handlers, agent_by_id, now)
            if choice is None:
                break
            agent, explanation = choice
            decisions.append(OfferDecision(task.task_id, agent.agent_id, explanation))
            excluded.add(agent.agent_id)
            _add_offer(agent, task.channel, next(rotation))
        if pool.waiting:
            heapreplace(merge, (pool.waiting[0], number, pool))
        else:
            heappop(merge)
    return decisions


def choose_offers_for_task(
    task: TaskSnapshot,
    agents: Iterable[AgentSnapshot],
    queue: QueueRules,
    *,
    last_handler_by_contact: Mapping[int, int] | None = None,
    now: Moment | None = None,
) -> list[OfferDecision]:
    """The offers for one task just created or re-queued: the event-driven path.

    Its cost grows with the agents, not with how many other tasks wait.
    """
    return choose_offers([task], agents, [queue], last_handler_by_contact=last_handler_by_contact, now=now)


def _by_unique_id[T](items: Iterable[T], id_field: str) -> dict[int, T]:
    items = list(items)
    id_of = attrgetter(id_field)
    by_id = {id_of(item): item for item in items}
    if len(by_id) != len(items):
        seen = Counter(map(id_of, items))
        raise ValueError(f"duplicate {id_field} {next(k for k, n in seen.items() if n > 1)} in the snapshot")
    return by_id


def _working_agents(snapshots: list[AgentSnapshot]) -> list[_Agent]:
    """Working copies of the agents, numbered in rotation order: never assigned, then least recently."""
    in_rotation = sorted(
        snapshots,
        key=lambda a: (0, a.agent_id) if a.last_assigned_at is None else (1, a.last_assigned_at, a.agent_id),
    )
    denominator = math.lcm(*{cap for a in in_rotation for cap in a.capacity.values() if cap})
    return [_Agent(snapshot, rank, denominator) for rank, snapshot in enumerate(in_rotation)]


def _build_pool(queue: QueueRules, task: TaskSnapshot, serving_by_queue: Mapping[int, list[_Agent]]) -> _Pool | None:
    """The pool for tasks like `task`, or None when no agent could take one."""
    channel = task.channel
    if channel not in queue.channels:
        return None
    skills = queue.required_skills if task.required_skills is None else task.required_skills
    pool = _Pool(queue, channel, skills)
    for agent in serving_by_queue.get(queue.queue_id, ()):
        snapshot = agent.snapshot
        if snapshot.status != AgentStatus.AVAILABLE or (snapshot.in_wrap_up and not queue.wrap_up_receives_work):
            continue
        if agent.load[channel] >= agent.capacity[channel] or not skills <= agent.skill_names:
            continue
        pool.free[agent.agent_id] = agent
        pool.skill_level[agent.agent_id] = sum(snapshot.skills[s] for s in skills) if skills else 0
        agent.pools_by_channel.setdefault(channel, []).append(pool)
    return pool if pool.free else None


_UNROUTED = object()


def _add_offer(agent: _Agent, channel: str, rotation: int) -> None:
    """Count an offer just made: more load, to the back of the rotation, out of pools it filled."""
    agent.load[channel] += 1
    agent.occupancy += agent.occupancy_step[channel]
    agent.rotation = rotation
    agent.offered_this_pass = True
    if agent.load[channel] >= agent.capacity[channel]:
        for pool in agent.pools_by_channel.get(channel, ()):
            pool.free.pop(agent.agent_id, None)


def _choose_agent(
    task: TaskSnapshot,
    pool: _Pool,
    excluded: set[int],
    last_handlers: Mapping[int, int],
    agent_by_id: Mapping[int, AgentSnapshot],
    now: Moment | None,
) -> tuple[_Agent, str] | None:
    """The best eligible agent for one more offer of `task` by the queue's strategy, and why."""
    candidates = [a for a in pool.free.values() if a.agent_id not in excluded]
    if not candidates:
        return None
    strategy = pool.queue.strategy
    channel = task.channel
    if strategy == Strategy.ROUND_ROBIN:
        agent = min(candidates, key=_by_rotation)
        reason = f"{_rotation_fact(agent, now)} of {len(candidates)} eligible"
    elif strategy == Strategy.SKILL_BASED:
        level = pool.skill_level
        agent = min(candidates, key=lambda a: (-level[a.agent_id], a.occupancy, a.rotation))
        reason = _skill_fact(agent, pool, candidates)
    elif strategy == Strategy.LOAD_BALANCING:
        agent = min(candidates, key=_by_occupancy)
        reason = _occupancy_fact(agent, candidates)
    else:
        handler_id = last_handlers.get(task.contact_id) if task.contact_id is not None else None
        if handler_id is not None and handler_id in pool.free and handler_id not in excluded:
            agent = pool.free[handler_id]
            reason = f"last handled contact {task.contact_id}"
        else:
            why = _why_not_last_handler(task, pool, excluded, handler_id, agent_by_id)
            agent = min(candidates, key=_by_occupancy)
            strategy = f"sticky → {Strategy.LOAD_BALANCING} fallback"
            reason = f"{why}; {_occupancy_fact(agent, candidates)}"
    facts = f"{strategy}: {reason}; load {agent.load[channel]}/{agent.capacity[channel]} {channel}"
    return agent, facts + _wait_fact(task, now)


_by_rotation: Callable[[_Agent], int] = lambda a: a.rotation  # noqa: E731
_by_occupancy: Callable[[_Agent], tuple[int, int]] = lambda a: (a.occupancy, a.rotation)  # noqa: E731


def _rotation_fact(agent: _Agent, now: Moment | None) -> str:
    snapshot = agent.snapshot
    if agent.offered_this_pass:  # then so had every other candidate, or they would come first
        return "everyone eligible already had an offer this pass, next in rotation"
    if snapshot.last_assigned_at is None:
        return "never assigned, first in rotation"
    if now is not None:
        return f"least recently assigned ({_seconds(now - snapshot.last_assigned_at):.0f}s ago)"
    return f"least recently assigned (at {_moment(snapshot.last_assigned_at)})"


def _occupancy_fact(agent: _Agent, candidates: list[_Agent]) -> str:
    occupancy = _number(agent.occupancy / agent.occupancy_denominator)
    busy = " + ".join(f"{n}/{agent.capacity[c]} {c}" for c, n in agent.load.items() if n) or "idle"
    tie = any(a.occupancy == agent.occupancy and a is not agent for a in candidates)
    return f"lowest occupancy {occupancy} ({busy}) of {len(candidates)} eligible" + (
        ", tie broken by rotation" if tie else ""
    )


def _skill_fact(agent: _Agent, pool: _Pool, candidates: list[_Agent]) -> str:
    if not pool.skills:
        return f"no skills required, {_occupancy_fact(agent, candidates)}"
    levels = agent.snapshot.skills
    total = pool.skill_level[agent.agent_id]
    terms = " + ".join(f"{s} {levels[s]}" for s in sorted(pool.skills))
    tied = [a for a in candidates if pool.skill_level[a.agent_id] == total]
    tie = ""
    if len(tied) > 1:
        by_load = sum(1 for a in tied if a.occupancy == agent.occupancy) == 1
        tie = ", tie broken by occupancy" if by_load else ", tie broken by rotation"
    return f"{terms} = {total} (best of {len(candidates)} eligible{tie})"


def _why_not_last_handler(
    task: TaskSnapshot,
    pool: _Pool,
    excluded: set[int],
    handler_id: int | None,
    agent_by_id: Mapping[int, AgentSnapshot],
) -> str:
    if task.contact_id is None:
        return "no contact on the task"
    if handler_id is None:
        return f"no previous handler for contact {task.contact_id}"
    handler = agent_by_id.get(handler_id)
    who = f"last handler {handler_id}"
    if handler is None:
        return f"{who} not in the snapshot"
    if handler.status != AgentStatus.AVAILABLE:
        return f"{who} {handler.status}"
    if pool.queue.queue_id not in handler.queue_ids:
        return f"{who} does not serve queue {pool.queue.queue_id}"
    if handler.in_wrap_up and not pool.queue.wrap_up_receives_work:
        return f"{who} in wrap-up"
    if missing := sorted(s for s in pool.skills if s not in handler.skills):
        return f"{who} lacks {', '.join(missing)}"
    if handler_id in task.declined_by:
        return f"{who} declined this task"
    if handler_id in excluded:
        return f"{who} already holds an offer for this task"
    return f"{who} at capacity on {task.channel}"


def _number(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _wait_fact(task: TaskSnapshot, now: Moment | None) -> str:
    return "" if now is None else f"; waited {_seconds(now - task.waiting_since):.0f}s"


def _seconds(delta: float | timedelta) -> float:
    return delta.total_seconds() if isinstance(delta, timedelta) else float(delta)


def _moment(moment: Moment) -> str:
    return moment.isoformat(timespec="seconds") if isinstance(moment, datetime) else f"{moment}"
