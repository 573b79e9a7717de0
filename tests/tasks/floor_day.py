"""A fixed day on acme's floor (Tuesday 10 March 2026, America/New_York), written row by row.

The metrics read timestamps and the activity log, which the services stamp with the clock; to check
them against hand-computed values the rows are written here as the services would have written them,
at chosen times (test setup, not something the application does). tests/tasks/test_metrics.py also
runs the real services once, to make sure these rows look like theirs.

Queue Support (service level 80% in 60 s), agents A (acme-agent1), B (acme-agent2), C (acme-agent3):

  T1  09:00:00 offered A 09:00:05, accepted 09:00:30; reply 09:02:00; resolved 09:10; done 09:12 "Resolved"
  T2  09:00:20 offered A 09:00:25, declined 09:00:40; offered B 09:01:00, accepted 09:02:20;
               reply 09:03:20; resolved 09:30; done 09:31 "Follow-up Required"
  T3  10:00:00 canceled unanswered 10:00:40 (the customer left at once)
  T4  10:30:00 offered B 10:30:05, timed out 10:30:35; canceled unanswered 10:33:00
  C5/T5 11:00:00 offered A 11:00:02, accepted 11:00:10; reply 11:01:00; resolved 11:20; done 11:22 "Resolved";
        the customer wrote again at 11:40 (reopened): T6 11:40:00 offered A 11:40:30, accepted 11:41:00;
        resolved 12:00; done 12:02 "Resolved"
  T7  12:20:00 still waiting: offered B 12:29:50 (pending), SLA at risk
  T8  11 March 00:10, accepted by A 00:11, done 00:30 "Resolved" (the next day)
  Billing queue (80% in 20 s): T10 12:25:00 still waiting, SLA breached.

Agent A: offline until 08:30, Available 08:30–10:30, Unavailable (Lunch) 10:30–10:50, Available
10:50–12:30, then offline. B: offline until 09:00, then Available. C: Unavailable (Lunch) since 12:00.
CSAT: C1 rated 5 (A), C2 rated 2 (B), C5 asked and not answered (A).
"""

from datetime import datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from contactcenter.tenancy import current_tenant_id
from conversations.models import Activity, ActivityKind, Conversation, CsatSurvey, Direction, Message, Via
from tasks.models import (
    AgentState,
    AgentStatus,
    AgentStatusPeriod,
    BreakReason,
    Offer,
    OfferStatus,
    Queue,
    SlaState,
    Task,
    TaskKind,
)
from tests.conftest import make_member
from tests.conversations.conftest import make_contact

NEW_YORK = ZoneInfo("America/New_York")
DAY = datetime(2026, 3, 10, tzinfo=NEW_YORK).date()
NOON_THIRTY = datetime(2026, 3, 10, 12, 30, tzinfo=NEW_YORK)


def at(hour: int, minute: int, second: int = 0, day: int = 10) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=NEW_YORK)


class Floor:
    def __init__(self, tenant_id: int):
        self.tenant_id = tenant_id
        self.phone = 0

    def conversation(self, created_at, **columns) -> Conversation:
        self.phone += 1
        contact = make_contact(phone=f"+1555987{self.phone:04d}", name=f"Customer {self.phone}")
        return Conversation.objects.create(
            tenant_id=self.tenant_id, contact=contact, channel="sms", created_at=created_at,
            status_changed_at=created_at, **columns,
        )  # fmt: skip

    def task(self, conversation, queue, created_at, **columns) -> Task:
        task = Task.objects.create(
            tenant_id=self.tenant_id, kind=TaskKind.CONVERSATION, title="Work", channel="sms", queue=queue,
            conversation=conversation, created_at=created_at, **{"status_changed_at": created_at, **columns},
        )  # fmt: skip
        self.log(task, created_at, ActivityKind.CREATED, "", "conversation")
        return task

    def log(self, task, when, kind, old, new, *, conversation=None) -> None:
        Activity.objects.create(
            tenant_id=self.tenant_id, task=task, conversation=conversation or (task.conversation if task else None),
            kind=kind, old_value=old, new_value=new, via=Via.SYSTEM, created_at=when,
        )  # fmt: skip

    def offer(self, task, agent, offered_at, status=OfferStatus.PENDING, responded_at=None) -> Offer:
        self.log(task, offered_at, ActivityKind.STATUS, "", "offer pending")
        if responded_at is not None:
            self.log(task, responded_at, ActivityKind.STATUS, "offer pending", f"offer {status}")
        return Offer.objects.create(
            tenant_id=self.tenant_id, task=task, agent=agent, status=status, created_at=offered_at,
            expires_at=offered_at + timedelta(seconds=30), responded_at=responded_at,
        )  # fmt: skip

    def moves(self, task, *steps) -> None:
        """Task status rows: (time, old, new)."""
        for when, old, new in steps:
            self.log(task, when, ActivityKind.COMPLETION if new == "completed" else ActivityKind.STATUS, old, new)

    def reply(self, conversation, agent, when) -> None:
        Message.objects.create(
            tenant_id=self.tenant_id, conversation=conversation, direction=Direction.OUTBOUND, body="On it!",
            author=agent, delivery_status="sent", created_at=when,
        )  # fmt: skip
        Conversation.objects.filter(pk=conversation.pk).update(first_response_at=when)

    def period(self, agent, status, since, until=None, reason=None) -> None:
        AgentStatusPeriod.objects.create(
            tenant_id=self.tenant_id, membership=agent, status=status, break_reason=reason, started_at=since,
            ended_at=until,
        )  # fmt: skip


def build_floor_day(*, agent_a, agent_b, agent_c, dispositions) -> SimpleNamespace:
    """Write the day described above into the current tenant; returns its queues and tasks."""
    floor = Floor(current_tenant_id())
    resolved, follow_up = dispositions["Resolved"], dispositions["Follow-up Required"]
    support = Queue.objects.create(
        tenant_id=floor.tenant_id, name="Support", service_level_percent=80, service_level_seconds=60
    )
    billing = Queue.objects.create(tenant_id=floor.tenant_id, name="Billing")

    def handled(created_at, agent, answered_at, replied_at, resolved_at, done_at, disposition, conversation=None):
        conversation = conversation or floor.conversation(created_at)
        task = floor.task(
            conversation, support, created_at, status="completed", assignee=agent, completed_at=done_at,
            status_changed_at=done_at, disposition=disposition,
        )  # fmt: skip
        floor.moves(
            task, (answered_at, "reserved", "assigned"), (resolved_at, "assigned", "wrapping"),
            (done_at, "wrapping", "completed"),
        )  # fmt: skip
        if replied_at is not None:
            floor.reply(conversation, agent, replied_at)
        floor.log(None, resolved_at, ActivityKind.STATUS, "in_progress", "resolved", conversation=conversation)
        Conversation.objects.filter(pk=conversation.pk).update(
            status="resolved", assignee=agent, resolved_at=resolved_at, status_changed_at=resolved_at
        )
        return conversation, task

    c1, t1 = handled(at(9, 0), agent_a, at(9, 0, 30), at(9, 2), at(9, 10), at(9, 12), resolved)
    floor.moves(t1, (at(9, 0, 5), "pending", "reserved"))
    floor.offer(t1, agent_a, at(9, 0, 5), OfferStatus.ACCEPTED, at(9, 0, 30))

    c2, t2 = handled(at(9, 0, 20), agent_b, at(9, 2, 20), at(9, 3, 20), at(9, 30), at(9, 31), follow_up)
    floor.moves(t2, (at(9, 0, 25), "pending", "reserved"), (at(9, 0, 40), "reserved", "pending"),
                (at(9, 1), "pending", "reserved"))  # fmt: skip
    floor.offer(t2, agent_a, at(9, 0, 25), OfferStatus.DECLINED, at(9, 0, 40))
    floor.offer(t2, agent_b, at(9, 1), OfferStatus.ACCEPTED, at(9, 2, 20))

    c3 = floor.conversation(at(10, 0), status="closed")
    t3 = floor.task(c3, support, at(10, 0), status="canceled", completed_at=at(10, 0, 40))
    floor.moves(t3, (at(10, 0, 40), "pending", "canceled"))

    c4 = floor.conversation(at(10, 30), status="closed")
    t4 = floor.task(c4, support, at(10, 30), status="canceled", completed_at=at(10, 33))
    floor.moves(t4, (at(10, 30, 5), "pending", "reserved"), (at(10, 30, 35), "reserved", "pending"),
                (at(10, 33), "pending", "canceled"))  # fmt: skip
    floor.offer(t4, agent_b, at(10, 30, 5), OfferStatus.TIMED_OUT, at(10, 30, 35))

    c5, t5 = handled(at(11, 0), agent_a, at(11, 0, 10), at(11, 1), at(11, 20), at(11, 22), resolved)
    floor.moves(t5, (at(11, 0, 2), "pending", "reserved"))
    floor.offer(t5, agent_a, at(11, 0, 2), OfferStatus.ACCEPTED, at(11, 0, 10))
    floor.log(None, at(11, 40), ActivityKind.STATUS, "resolved", "open", conversation=c5)  # the customer wrote again
    _, t6 = handled(at(11, 40), agent_a, at(11, 41), None, at(12, 0), at(12, 2), resolved, conversation=c5)
    floor.moves(t6, (at(11, 40, 30), "pending", "reserved"))
    floor.offer(t6, agent_a, at(11, 40, 30), OfferStatus.ACCEPTED, at(11, 41))

    c7 = floor.conversation(at(12, 20), status="open", waiting_since=at(12, 20))
    t7 = floor.task(c7, support, at(12, 20), status="reserved", sla_state=SlaState.WARNING,
                    status_changed_at=at(12, 29, 50))  # fmt: skip
    floor.moves(t7, (at(12, 29, 50), "pending", "reserved"))
    floor.offer(t7, agent_b, at(12, 29, 50))

    c8, t8 = handled(at(0, 10, day=11), agent_a, at(0, 11, day=11), None, at(0, 25, day=11), at(0, 30, day=11),
                     resolved)  # fmt: skip

    c10 = floor.conversation(at(12, 25), status="open", waiting_since=at(12, 25))
    t10 = floor.task(c10, billing, at(12, 25), sla_state=SlaState.BREACHED)

    lunch = BreakReason.objects.create(tenant_id=floor.tenant_id, name="Lunch")
    floor.period(agent_a, AgentStatus.OFFLINE, at(18, 0, day=9), at(8, 30))
    floor.period(agent_a, AgentStatus.AVAILABLE, at(8, 30), at(10, 30))
    floor.period(agent_a, AgentStatus.UNAVAILABLE, at(10, 30), at(10, 50), reason=lunch)
    floor.period(agent_a, AgentStatus.AVAILABLE, at(10, 50), at(12, 30))
    floor.period(agent_a, AgentStatus.OFFLINE, at(12, 30))
    floor.period(agent_b, AgentStatus.OFFLINE, at(20, 0, day=9), at(9, 0))
    floor.period(agent_b, AgentStatus.AVAILABLE, at(9, 0))
    floor.period(agent_c, AgentStatus.UNAVAILABLE, at(12, 0), reason=lunch)
    for agent, status, reason in ((agent_a, AgentStatus.OFFLINE, None), (agent_b, AgentStatus.AVAILABLE, None),
                                  (agent_c, AgentStatus.UNAVAILABLE, lunch)):  # fmt: skip
        state = AgentState.objects.create(
            tenant_id=floor.tenant_id, membership=agent, status=status, break_reason=reason
        )
        state.served_queues.add(support)

    for conversation, agent, score, sent_at in ((c1, agent_a, 5, at(9, 10)), (c2, agent_b, 2, at(9, 30)),
                                                (c5, agent_a, None, at(12, 0))):  # fmt: skip
        CsatSurvey.objects.create(
            tenant_id=floor.tenant_id, conversation=conversation, agent=agent, queue=support, score=score,
            sent_at=sent_at, reply_by=sent_at + timedelta(hours=24),
            answered_at=sent_at + timedelta(minutes=5) if score else None,
        )  # fmt: skip
    return SimpleNamespace(
        support=support, billing=billing, tasks=[t1, t2, t3, t4, t5, t6, t7, t8, t10], lunch=lunch,
        conversations=[c1, c2, c3, c4, c5, c7, c8, c10],
    )  # fmt: skip


@pytest.fixture
def acme_agent3(acme):
    return make_member(acme, "acme-agent3")


@pytest.fixture
def floor_day(in_acme, acme_agent, acme_agent2, acme_agent3, dispositions):
    """The fixed day, written into acme (tests/tasks/conftest.py offers this fixture to the directory)."""
    return build_floor_day(agent_a=acme_agent, agent_b=acme_agent2, agent_c=acme_agent3, dispositions=dispositions)
