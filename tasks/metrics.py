"""The floor's live figures and the team's metrics, from stored timestamps and the activity log.

Reads only, inside the current tenant (the scoped managers). A period is [start, end) in aware
datetimes; `local_day_bounds` turns the tenant's calendar days into one. Every function answers in
a fixed number of queries whatever the number of queues, agents or tasks (the wallboard refreshes
every few seconds). The reports page explains the same definitions in words:

- answered: the first time a conversation task became assigned (its `status` activity row → assigned);
  wait to answer = answered − the task's creation.
- service level: answered within the queue's target ÷ (answered + those that waited longer than the
  target unanswered, whether they were abandoned late or are still waiting). A task that ended
  unanswered within the target (the customer left at once) counts in neither.
- first response: the conversation's first agent reply (`first_response_at`) − its start, on the
  day of the reply, for the agent who wrote it.
- resolution time: `resolved_at` − the last reopen (resolved → a live status), or the start; for the
  conversation's agent.
- handle time: a completed conversation task's completion − its answer (talk and wrap-up).
- resolution rate: of the conversation tasks an agent completed, the share whose conversation stayed
  resolved (the customer did not write again; a CSAT rating does not reopen a conversation).
- occupancy: time Available while holding a conversation task ÷ time Available.
- CSAT: ratings 1–5 answered in the period; satisfied = 4 or 5.

A task's history is read against its current queue: a task transferred between queues counts
in the one it is in now.
"""

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models import BooleanField, Count, Exists, ExpressionWrapper, F, Min, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce

from contactcenter.models import Membership, Role
from conversations.models import (
    Activity,
    ActivityKind,
    Conversation,
    ConversationStatus,
    CsatSurvey,
    Direction,
    Message,
)
from tasks import erlang
from tasks.models import (
    AgentState,
    AgentStatus,
    AgentStatusPeriod,
    Offer,
    OfferStatus,
    Queue,
    SlaState,
    Task,
    TaskKind,
    TaskStatus,
)
from tasks.timers import OPEN_FOR_SLA

WAITING = (TaskStatus.PENDING, TaskStatus.RESERVED)
HOLDING = (TaskStatus.ASSIGNED, TaskStatus.WRAPPING)
C = ConversationStatus
LIVE_CONVERSATION = (C.NEW, C.OPEN, C.ASSIGNED, C.IN_PROGRESS, C.PENDING)
RESOLVED_OR_LATER = (C.RESOLVED, C.CLOSED, C.ARCHIVED)
DEPTH_STEP = timedelta(minutes=15)
SERVICE_LEVEL_STEP = timedelta(hours=1)
SATISFIED_FROM = 4


def local_day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[midnight, next midnight) of `day` in `zone` (23 or 25 hours long on daylight-saving days)."""
    return datetime.combine(day, time(0), tzinfo=zone), datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)


# --- figures that add up ------------------------------------------------------------------------------


class Sums:
    """Figures kept as sums (counts, totals), never as ratios, so that agents' figures add up to the
    team's: `a + b` adds field by field."""

    def __add__(self, other):
        return type(self)(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass
class Mean(Sums):
    """An average kept as count and total."""

    count: int = 0
    total: float = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value

    @property
    def value(self) -> float | None:
        return self.total / self.count if self.count else None


@dataclass
class Ratio(Sums):
    hits: int = 0
    count: int = 0

    def add(self, hit: bool) -> None:
        self.count += 1
        self.hits += bool(hit)

    @property
    def percent(self) -> float | None:
        return 100 * self.hits / self.count if self.count else None


@dataclass
class Csat(Sums):
    sent: int = 0
    rated: int = 0
    total: int = 0
    satisfied: int = 0

    @property
    def average(self) -> float | None:
        return self.total / self.rated if self.rated else None

    @property
    def satisfied_percent(self) -> float | None:
        return 100 * self.satisfied / self.rated if self.rated else None


@dataclass
class OfferAnswers(Sums):
    accepted: int = 0
    declined: int = 0
    timed_out: int = 0
    time_to_accept: Mean = field(default_factory=Mean)


@dataclass
class StatusTime:
    """Seconds in each status within the period, and the part of Available spent holding work."""

    available: float = 0.0
    offline: float = 0.0
    unavailable: Counter = field(default_factory=Counter)  # break reason → seconds
    busy_while_available: float = 0.0

    @property
    def unavailable_total(self) -> float:
        return sum(self.unavailable.values())

    @property
    def unavailable_by_reason(self) -> list[tuple[str, float]]:
        return sorted(self.unavailable.items())

    @property
    def occupancy_percent(self) -> float | None:
        return 100 * self.busy_while_available / self.available if self.available else None


def _seconds(value: timedelta | None) -> float:
    return value.total_seconds() if value is not None else 0.0


def answered_within_target(
    *, created_at: datetime, answered_at: datetime | None, ended_at: datetime | None, now: datetime,
    target_seconds: int,
) -> bool | None:  # fmt: skip
    """Whether a conversation task counts for the service level as in target (True), missed (False),
    or not at all (None: it ended unanswered, or is still waiting, within the target)."""
    if answered_at is not None:
        return (answered_at - created_at).total_seconds() <= target_seconds
    waited = ((ended_at or now) - created_at).total_seconds()
    return False if waited > target_seconds else None


def _answered_at() -> Subquery:
    """When a task first became assigned, from its activity log."""
    return Subquery(
        Activity.objects.filter(task=OuterRef("pk"), kind=ActivityKind.STATUS, new_value=TaskStatus.ASSIGNED)
        .order_by("created_at", "pk")
        .values("created_at")[:1]
    )


def _conversation_tasks():
    return Task.objects.filter(kind=TaskKind.CONVERSATION)


def _conversations_of_queue(queue: Queue):
    return _conversation_tasks().filter(queue=queue).values("conversation_id")


# --- waiting over time ------------------------------------------------------------------------------


def waiting_spans(
    rows: Iterable[tuple[int, int, datetime, str, str]],
) -> dict[int, list[tuple[datetime, datetime | None]]]:
    """From activity rows (task id, queue id, at, kind, new value) ordered by task and time: each
    queue's spans [start, end) during which one of its tasks waited (pending or reserved); an open
    span has end None. A task created is pending; its `status` and `completion` rows move it."""
    spans: dict[int, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    waiting_since: dict[int, tuple[int, datetime]] = {}
    for task_id, queue_id, at, kind, new_value in rows:
        if kind == ActivityKind.CREATED:
            status = TaskStatus.PENDING
        elif new_value in TaskStatus.values:
            status = new_value
        else:
            continue  # an offer's row ("offer pending"), not the task's status
        if status in WAITING and task_id not in waiting_since:
            waiting_since[task_id] = (queue_id, at)
        elif status not in WAITING and task_id in waiting_since:
            queue, since = waiting_since.pop(task_id)
            spans[queue].append((since, at))
    for queue, since in waiting_since.values():
        spans[queue].append((since, None))
    return spans


def peak_waiting(spans: list[tuple[datetime, datetime | None]], *, start: datetime, end: datetime,
                 step: timedelta) -> list[int]:  # fmt: skip
    """The most tasks waiting at once in each step from `start` to `end` (the last step may be short)."""
    events = sorted([(since, 1) for since, _ in spans] + [(until, -1) for _, until in spans if until is not None])
    peaks: list[int] = []
    depth, index = 0, 0
    bucket = start
    while bucket < end:
        bucket_end = min(bucket + step, end)
        while index < len(events) and events[index][0] <= bucket:
            depth += events[index][1]
            index += 1
        peak = depth
        while index < len(events) and events[index][0] < bucket_end:
            depth += events[index][1]
            index += 1
            peak = max(peak, depth)
        peaks.append(peak)
        bucket = bucket_end
    return peaks


# --- the wallboard ------------------------------------------------------------------------------------


@dataclass
class AgentCounts:
    """Agents by what they are doing: Available (free), Busy (holding a conversation), Wrap-up
    (only wrapping up), Unavailable by break reason, Offline."""

    available: int = 0
    busy: int = 0
    wrap_up: int = 0
    offline: int = 0
    unavailable: Counter = field(default_factory=Counter)

    @property
    def staffed(self) -> int:
        """Agents in status Available, free or not: the ones routing counts on."""
        return self.available + self.busy + self.wrap_up

    @property
    def unavailable_total(self) -> int:
        return sum(self.unavailable.values())

    @property
    def unavailable_by_reason(self) -> list[tuple[str, int]]:
        return sorted(self.unavailable.items())

    def count(self, condition: str, reason: str = "") -> None:
        if condition == "unavailable":
            self.unavailable[reason or "No reason"] += 1
        else:
            setattr(self, condition, getattr(self, condition) + 1)


@dataclass
class StaffingForecast:
    arrivals_last_hour: int
    aht_seconds: float | None
    agents_needed: int | None  # None: no handle time measured yet, so no estimate
    agents_staffed: int

    @property
    def short_by(self) -> int:
        return max((self.agents_needed or 0) - self.agents_staffed, 0)


@dataclass
class QueueBoard:
    queue: Queue
    agents: AgentCounts = field(default_factory=AgentCounts)
    waiting: int = 0
    longest_wait_seconds: float | None = None
    offers_pending: int = 0
    sla_at_risk: int = 0
    sla_breached: int = 0
    service_level: Ratio = field(default_factory=Ratio)
    depth: list[int] = field(default_factory=list)  # peak waiting per DEPTH_STEP since midnight
    service_level_by_hour: list[Ratio] = field(default_factory=list)
    forecast: StaffingForecast | None = None


@dataclass
class FloorBoard:
    now: datetime
    day_start: datetime
    day_end: datetime
    queues: list[QueueBoard]
    agents: AgentCounts

    @property
    def waiting(self) -> int:
        return sum(board.waiting for board in self.queues)

    @property
    def service_level(self) -> Ratio:
        return sum((board.service_level for board in self.queues), Ratio())

    @property
    def sla_breached(self) -> int:
        return sum(board.sla_breached for board in self.queues)


def floor_board(*, now: datetime, zone: ZoneInfo) -> FloorBoard:
    """Everything the wallboard shows, per queue, as of `now`, "today" being the tenant's day.

    Nine queries whatever the size of the floor: queues; open tasks by queue; pending offers by
    queue; agents, their queues and what they hold (four); today's tasks with their answer; the
    status history of the tasks that waited today.
    """
    day_start, day_end = local_day_bounds(now.astimezone(zone).date(), zone)
    queues = list(Queue.objects.order_by("name", "pk"))
    boards = {queue.pk: QueueBoard(queue=queue) for queue in queues}
    waiting_now = Q(status__in=WAITING)
    customer_waiting = Q(status__in=OPEN_FOR_SLA, conversation__waiting_since__isnull=False)
    for row in (
        _conversation_tasks()
        .filter(queue__isnull=False, status__in=(*WAITING, *HOLDING))
        .values("queue_id")
        .annotate(
            waiting=Count("pk", filter=waiting_now),
            oldest=Min("created_at", filter=waiting_now),
            at_risk=Count("pk", filter=customer_waiting & Q(sla_state=SlaState.WARNING)),
            breached=Count("pk", filter=customer_waiting & Q(sla_state=SlaState.BREACHED)),
        )
        .order_by()
    ):
        board = boards[row["queue_id"]]
        board.waiting, board.sla_at_risk, board.sla_breached = row["waiting"], row["at_risk"], row["breached"]
        board.longest_wait_seconds = (now - row["oldest"]).total_seconds() if row["oldest"] else None
    for queue_id, pending in (
        Offer.objects.filter(status=OfferStatus.PENDING, task__queue__isnull=False)
        .values_list("task__queue_id")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        boards[queue_id].offers_pending = pending
    by_queue, everyone = _agents_by_queue()
    for queue_id, counts in by_queue.items():
        if queue_id in boards:
            boards[queue_id].agents = counts
    _today_and_last_hour(boards, now=now, day_start=day_start)
    _depth_today(boards, now=now, day_start=day_start)
    return FloorBoard(now=now, day_start=day_start, day_end=day_end, queues=list(boards.values()), agents=everyone)


def agent_condition(status: str, holds: set[str]) -> str:
    """What an agent is doing, in the wallboard's words (see AgentCounts)."""
    if status == AgentStatus.OFFLINE:
        return "offline"
    if status == AgentStatus.UNAVAILABLE:
        return "unavailable"
    if TaskStatus.ASSIGNED in holds:
        return "busy"
    return "wrap_up" if TaskStatus.WRAPPING in holds else "available"


def _agents_by_queue() -> tuple[dict[int, AgentCounts], AgentCounts]:
    active = AgentState.objects.filter(membership__is_active=True)
    states = list(active.values_list("pk", "membership_id", "status", "break_reason__name"))
    served, allowed = defaultdict(set), defaultdict(set)
    # The through tables are not tenant-scoped models: they are read for this tenant's states only
    # (a subquery through the scoped manager, so the query runs even when there is no agent yet).
    for through, queues_of in (
        (AgentState.served_queues.through, served),
        (AgentState.allowed_queues.through, allowed),
    ):
        for state_id, queue_id in through.objects.filter(agentstate__in=active.values("pk")).values_list(
            "agentstate_id", "queue_id"
        ):
            queues_of[state_id].add(queue_id)
    holds = defaultdict(set)
    for member_id, status in (
        _conversation_tasks().filter(status__in=HOLDING).values_list("assignee_id", "status").order_by().distinct()
    ):
        holds[member_id].add(status)
    by_queue: dict[int, AgentCounts] = defaultdict(AgentCounts)
    everyone = AgentCounts()
    for state_id, member_id, status, reason in states:
        condition = agent_condition(status, holds[member_id])
        everyone.count(condition, reason)
        queue_ids = served[state_id] & allowed[state_id] if allowed[state_id] else served[state_id]
        for queue_id in queue_ids:
            by_queue[queue_id].count(condition, reason)
    return by_queue, everyone


def _today_and_last_hour(boards: dict[int, QueueBoard], *, now: datetime, day_start: datetime) -> None:
    """Today's service level (in total and by hour) and the staffing forecast, from one read of the
    tasks that arrived today or in the last hour, or completed in the last 24 hours."""
    hour_ago, day_ago = now - timedelta(hours=1), now - timedelta(hours=24)
    rows = (
        _conversation_tasks()
        .filter(queue__isnull=False)
        # Completed in the last 24 hours implies a status change since then (and that is indexed).
        .filter(Q(created_at__gte=min(day_start, hour_ago), created_at__lt=now) | Q(status_changed_at__gte=day_ago))
        .annotate(answered_at=_answered_at())
        .values_list("queue_id", "created_at", "answered_at", "completed_at", "status")
    )
    hours = int((now - day_start) / SERVICE_LEVEL_STEP) + 1
    for board in boards.values():
        board.service_level_by_hour = [Ratio() for _ in range(hours)]
    arrivals: Counter = Counter()
    handle_last_hour: dict[int, Mean] = defaultdict(Mean)
    handle_last_day: dict[int, Mean] = defaultdict(Mean)
    for queue_id, created_at, answered_at, completed_at, status in rows:
        board = boards[queue_id]
        if day_start <= created_at < now:
            outcome = answered_within_target(
                created_at=created_at, answered_at=answered_at, ended_at=completed_at, now=now,
                target_seconds=board.queue.service_level_seconds,
            )  # fmt: skip
            if outcome is not None:
                board.service_level.add(outcome)
                board.service_level_by_hour[int((created_at - day_start) / SERVICE_LEVEL_STEP)].add(outcome)
        if hour_ago <= created_at < now:
            arrivals[queue_id] += 1
        if status == TaskStatus.COMPLETED and answered_at is not None and day_ago <= completed_at < now:
            seconds = (completed_at - answered_at).total_seconds()
            handle_last_day[queue_id].add(seconds)
            if completed_at >= hour_ago:
                handle_last_hour[queue_id].add(seconds)
    for queue_id, board in boards.items():
        aht = handle_last_hour[queue_id].value or handle_last_day[queue_id].value
        needed = None
        if not arrivals[queue_id]:
            needed = 0
        elif aht:
            try:
                needed = erlang.agents_needed(
                    calls_per_hour=arrivals[queue_id], aht_seconds=aht,
                    target_percent=board.queue.service_level_percent, target_seconds=board.queue.service_level_seconds,
                )  # fmt: skip
            except ValueError:  # beyond any real floor (a task held for days skews the handle time): no estimate
                needed = None
        board.forecast = StaffingForecast(arrivals[queue_id], aht, needed, board.agents.staffed)


def _depth_today(boards: dict[int, QueueBoard], *, now: datetime, day_start: datetime) -> None:
    # A task whose last status change was before today kept that status all day: it matters only
    # if it is still waiting now. Every other task that could have waited today changed today.
    relevant = (
        _conversation_tasks()
        .filter(queue__isnull=False)
        .filter(Q(status__in=WAITING) | Q(status_changed_at__gte=day_start) | Q(created_at__gte=day_start))
    )
    rows = (
        Activity.objects.filter(
            task__in=relevant.values("pk"),
            kind__in=(ActivityKind.CREATED, ActivityKind.STATUS, ActivityKind.COMPLETION),
            created_at__lt=now,
        )
        .order_by("task_id", "created_at", "pk")
        .values_list("task_id", "task__queue_id", "created_at", "kind", "new_value")
    )
    spans = waiting_spans(rows)
    for queue_id, board in boards.items():
        board.depth = peak_waiting(spans.get(queue_id, []), start=day_start, end=now, step=DEPTH_STEP)


# --- team metrics -------------------------------------------------------------------------------------


def first_responses(*, start: datetime, end: datetime, queue=None, agent=None) -> dict[int, Mean]:
    """Seconds from a conversation's start to its first agent reply, for replies given in the
    period, by the agent who wrote them."""
    replies = Message.objects.filter(
        direction=Direction.OUTBOUND, author__isnull=False, created_at__gte=start, created_at__lt=end,
        created_at=F("conversation__first_response_at"),
    )  # fmt: skip
    if agent is not None:
        replies = replies.filter(author=agent)
    if queue is not None:
        replies = replies.filter(conversation__in=_conversations_of_queue(queue))
    rows = (
        replies.values("author_id")
        .annotate(n=Count("pk"), total=Sum(F("created_at") - F("conversation__created_at")))
        .order_by()
    )
    return {row["author_id"]: Mean(row["n"], _seconds(row["total"])) for row in rows}


def resolution_times(*, start: datetime, end: datetime, queue=None, agent=None) -> dict[int | None, Mean]:
    """Seconds from the last reopen (or the start) to the resolution, for conversations resolved in
    the period (and still resolved, closed or archived), by the conversation's agent."""
    last_reopen = Subquery(
        Activity.objects.filter(
            conversation=OuterRef("pk"),
            kind=ActivityKind.STATUS,
            old_value=C.RESOLVED,
            new_value__in=LIVE_CONVERSATION,
        )
        .order_by("-created_at", "-pk")
        .values("created_at")[:1]
    )
    conversations = Conversation.objects.filter(resolved_at__gte=start, resolved_at__lt=end)
    if agent is not None:
        conversations = conversations.filter(assignee=agent)
    if queue is not None:
        conversations = conversations.filter(pk__in=_conversations_of_queue(queue))
    rows = (
        conversations.annotate(since=Coalesce(last_reopen, F("created_at")))
        .values("assignee_id")
        .annotate(n=Count("pk"), total=Sum(F("resolved_at") - F("since")))
        .order_by()
    )
    return {row["assignee_id"]: Mean(row["n"], _seconds(row["total"])) for row in rows}


@dataclass
class CompletedWork(Sums):
    """An agent's completed conversation tasks in a period."""

    handled: int = 0
    handle_time: Mean = field(default_factory=Mean)
    resolution_rate: Ratio = field(default_factory=Ratio)
    by_day: Counter = field(default_factory=Counter)  # local date → tasks completed


def completed_work(
    *, start: datetime, end: datetime, zone: ZoneInfo, queue=None, agent=None
) -> dict[int, CompletedWork]:
    """Conversation tasks completed in the period, by their agent: handle time, whether the
    conversation stayed resolved, and how many per local day."""
    reopened_later = Activity.objects.filter(
        conversation=OuterRef("conversation_id"), kind=ActivityKind.STATUS, old_value=C.RESOLVED,
        new_value__in=LIVE_CONVERSATION, created_at__gt=OuterRef("completed_at"),
    )  # fmt: skip
    tasks = _conversation_tasks().filter(
        status=TaskStatus.COMPLETED, completed_at__gte=start, completed_at__lt=end, assignee__isnull=False
    )
    if agent is not None:
        tasks = tasks.filter(assignee=agent)
    if queue is not None:
        tasks = tasks.filter(queue=queue)
    rows = tasks.annotate(
        answered_at=_answered_at(),
        stayed_resolved=ExpressionWrapper(
            Q(~Exists(reopened_later), conversation__status__in=RESOLVED_OR_LATER), output_field=BooleanField()
        ),
    ).values_list("assignee_id", "completed_at", "answered_at", "stayed_resolved")
    work: dict[int, CompletedWork] = defaultdict(CompletedWork)
    for agent_id, completed_at, answered_at, stayed_resolved in rows:
        done = work[agent_id]
        done.handled += 1
        if answered_at is not None:  # else it never became assigned through us: nothing to measure from
            done.handle_time.add((completed_at - answered_at).total_seconds())
        done.resolution_rate.add(stayed_resolved)
        done.by_day[completed_at.astimezone(zone).date()] += 1
    return dict(work)


def csat_by_agent(*, start: datetime, end: datetime, queue=None, agent=None) -> dict[int | None, Csat]:
    """Surveys sent and ratings received in the period, by the agent of the conversation."""
    sent = Q(sent_at__gte=start, sent_at__lt=end)
    rated = Q(answered_at__gte=start, answered_at__lt=end, score__isnull=False)
    surveys = CsatSurvey.objects.filter(sent | rated)
    if agent is not None:
        surveys = surveys.filter(agent=agent)
    if queue is not None:
        surveys = surveys.filter(queue=queue)
    rows = (
        surveys.values("agent_id")
        .annotate(
            sent=Count("pk", filter=sent),
            rated=Count("pk", filter=rated),
            total=Sum("score", filter=rated),
            satisfied=Count("pk", filter=rated & Q(score__gte=SATISFIED_FROM)),
        )
        .order_by()
    )
    return {row["agent_id"]: Csat(row["sent"], row["rated"], row["total"] or 0, row["satisfied"]) for row in rows}


def offer_answers(*, start: datetime, end: datetime, queue=None, agent=None) -> dict[int, OfferAnswers]:
    """Offers made in the period, by agent: accepted, declined, timed out, and the time to accept."""
    accepted = Q(status=OfferStatus.ACCEPTED)
    offers = Offer.objects.filter(created_at__gte=start, created_at__lt=end)
    if agent is not None:
        offers = offers.filter(agent=agent)
    if queue is not None:
        offers = offers.filter(task__queue=queue)
    rows = (
        offers.values("agent_id")
        .annotate(
            accepted=Count("pk", filter=accepted),
            declined=Count("pk", filter=Q(status=OfferStatus.DECLINED)),
            timed_out=Count("pk", filter=Q(status=OfferStatus.TIMED_OUT)),
            to_accept=Sum(F("responded_at") - F("created_at"), filter=accepted),
        )
        .order_by()
    )
    return {
        row["agent_id"]: OfferAnswers(
            row["accepted"], row["declined"], row["timed_out"], Mean(row["accepted"], _seconds(row["to_accept"]))
        )
        for row in rows
    }


def _clip(since: datetime, until: datetime | None, start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    since, until = max(since, start), min(until or end, end)
    return (since, until) if since < until else None


def _merged(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for since, until in sorted(spans):
        if merged and since <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], until))
        else:
            merged.append((since, until))
    return merged


def _overlap_seconds(first: list[tuple[datetime, datetime]], second: list[tuple[datetime, datetime]]) -> float:
    total = 0.0
    for since, until in first:
        for other_since, other_until in second:
            overlap = (min(until, other_until) - max(since, other_since)).total_seconds()
            total += max(overlap, 0)
    return total


def status_time(*, start: datetime, end: datetime, now: datetime, agent=None) -> dict[int, StatusTime]:
    """Time each agent spent in each status in the period (up to `now`), from AgentStatusPeriod,
    and the part of their Available time in which they held a conversation task (occupancy).
    Agent-wide: an agent's status is not per queue."""
    end = min(end, now)
    periods = AgentStatusPeriod.objects.filter(started_at__lt=end).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=start)
    )
    holding = (
        _conversation_tasks()
        .filter(assignee__isnull=False, status__in=(*HOLDING, TaskStatus.COMPLETED))
        .filter(Q(completed_at__isnull=True) | Q(completed_at__gt=start))
        .annotate(answered_at=_answered_at())
        .filter(answered_at__lt=end)
    )
    if agent is not None:
        periods, holding = periods.filter(membership=agent), holding.filter(assignee=agent)
    times: dict[int, StatusTime] = defaultdict(StatusTime)
    available: dict[int, list] = defaultdict(list)
    for member_id, status, reason, since, until in periods.values_list(
        "membership_id", "status", "break_reason__name", "started_at", "ended_at"
    ):
        span = _clip(since, until, start, end)
        if span is None:
            continue
        seconds = (span[1] - span[0]).total_seconds()
        time_of = times[member_id]
        if status == AgentStatus.AVAILABLE:
            time_of.available += seconds
            available[member_id].append(span)
        elif status == AgentStatus.UNAVAILABLE:
            time_of.unavailable[reason or "No reason"] += seconds
        else:
            time_of.offline += seconds
    held: dict[int, list] = defaultdict(list)
    for member_id, since, until in holding.values_list("assignee_id", "answered_at", "completed_at"):
        if (span := _clip(since, until, start, end)) is not None:
            held[member_id].append(span)
    for member_id, spans in held.items():
        if member_id in times:
            times[member_id].busy_while_available = _overlap_seconds(_merged(spans), _merged(available[member_id]))
    return dict(times)


def dispositions_by_queue(*, start: datetime, end: datetime, queue=None, agent=None) -> list[tuple[str, str, int]]:
    """(queue, disposition, count) of the conversation tasks completed in the period."""
    tasks = _conversation_tasks().filter(status=TaskStatus.COMPLETED, completed_at__gte=start, completed_at__lt=end)
    if agent is not None:
        tasks = tasks.filter(assignee=agent)
    if queue is not None:
        tasks = tasks.filter(queue=queue)
    rows = (
        tasks.values_list("queue__name", "disposition__name")
        .annotate(n=Count("pk"))
        .order_by("queue__name", "disposition__name")
    )
    return [(queue_name or "No queue", disposition or "No disposition", n) for queue_name, disposition, n in rows]


@dataclass
class QueueService:
    queue: Queue
    arrived: int = 0
    answered: int = 0
    abandoned: int = 0  # ended without an agent answering
    service_level: Ratio = field(default_factory=Ratio)
    wait_to_answer: Mean = field(default_factory=Mean)


def service_by_queue(*, start: datetime, end: datetime, now: datetime, queue=None) -> list[QueueService]:
    """Per queue, the conversations that arrived in the period: answered, abandoned, the service
    level against the queue's target and the average wait to answer."""
    queues = Queue.objects.order_by("name", "pk")
    tasks = _conversation_tasks().filter(queue__isnull=False, created_at__gte=start, created_at__lt=end)
    if queue is not None:
        queues, tasks = queues.filter(pk=queue.pk), tasks.filter(queue=queue)
    services = {q.pk: QueueService(queue=q) for q in queues}
    rows = tasks.annotate(answered_at=_answered_at()).values_list(
        "queue_id", "created_at", "answered_at", "completed_at"
    )
    for queue_id, created_at, answered_at, completed_at in rows:
        service = services[queue_id]
        service.arrived += 1
        if answered_at is not None:
            service.answered += 1
            service.wait_to_answer.add((answered_at - created_at).total_seconds())
        elif completed_at is not None:
            service.abandoned += 1
        outcome = answered_within_target(
            created_at=created_at, answered_at=answered_at, ended_at=completed_at, now=now,
            target_seconds=service.queue.service_level_seconds,
        )  # fmt: skip
        if outcome is not None:
            service.service_level.add(outcome)
    return list(services.values())


# --- the reports and the agent's own figures ----------------------------------------------------------


@dataclass
class AgentReport:
    member: Membership
    work: CompletedWork
    first_response: Mean
    resolution_time: Mean
    csat: Csat
    offers: OfferAnswers
    status: StatusTime
    days: int

    @property
    def handled(self) -> int:
        return self.work.handled

    @property
    def handled_per_day(self) -> float:
        return self.work.handled / self.days


@dataclass
class TeamReport:
    start: datetime
    end: datetime
    days: list[date]
    agents: list[AgentReport]
    queues: list[QueueService]
    dispositions: list[tuple[str, str, int]]
    first_response: Mean
    resolution_time: Mean
    work: CompletedWork
    csat: Csat
    offers: OfferAnswers

    @property
    def service_level(self) -> Ratio:
        return sum((service.service_level for service in self.queues), Ratio())


def team_report(
    *, first_day: date, last_day: date, zone: ZoneInfo, now: datetime, queue=None, agent=None
) -> TeamReport:
    """The reports page: the team's metrics for the tenant's days first_day..last_day, by agent and
    by queue, narrowed to one queue and/or one agent. Eleven queries, whatever the team's size."""
    start, _ = local_day_bounds(first_day, zone)
    _, end = local_day_bounds(last_day, zone)
    filters = {"start": start, "end": end, "queue": queue, "agent": agent}
    responses = first_responses(**filters)
    resolutions = resolution_times(**filters)
    work = completed_work(**filters, zone=zone)
    csat = csat_by_agent(**filters)
    offers = offer_answers(**filters)
    status = status_time(start=start, end=end, now=now, agent=agent)
    members = Membership.objects.filter(is_active=True).select_related("user")
    if agent is not None:
        members = members.filter(pk=agent.pk)
    seen = set(responses) | set(resolutions) | set(work) | set(csat) | set(offers) | set(status)
    days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    agents = [
        AgentReport(
            member=member,
            work=work.get(member.pk, CompletedWork()),
            first_response=responses.get(member.pk, Mean()),
            resolution_time=resolutions.get(member.pk, Mean()),
            csat=csat.get(member.pk, Csat()),
            offers=offers.get(member.pk, OfferAnswers()),
            status=status.get(member.pk, StatusTime()),
            days=len(days),
        )
        for member in members
        if member.role == Role.AGENT or member.pk in seen
    ]
    return TeamReport(
        start=start, end=end, days=days, agents=agents, queues=service_by_queue(start=start, end=end, now=now, queue=queue),
        dispositions=dispositions_by_queue(**filters),
        first_response=sum(responses.values(), Mean()), resolution_time=sum(resolutions.values(), Mean()),
        work=sum(work.values(), CompletedWork()), csat=sum(csat.values(), Csat()),
        offers=sum(offers.values(), OfferAnswers()),
    )  # fmt: skip


@dataclass
class PersonalMetrics:
    handled: int
    first_response: Mean
    handle_time: Mean
    resolution_rate: Ratio
    csat: Csat


def personal_today(*, agent: Membership, now: datetime, zone: ZoneInfo) -> PersonalMetrics:
    """The agent's own figures for their tenant's day so far (three queries)."""
    start, _ = local_day_bounds(now.astimezone(zone).date(), zone)
    work = completed_work(start=start, end=now, zone=zone, agent=agent).get(agent.pk, CompletedWork())
    return PersonalMetrics(
        handled=work.handled,
        first_response=first_responses(start=start, end=now, agent=agent).get(agent.pk, Mean()),
        handle_time=work.handle_time,
        resolution_rate=work.resolution_rate,
        csat=csat_by_agent(start=start, end=now, agent=agent).get(agent.pk, Csat()),
    )
