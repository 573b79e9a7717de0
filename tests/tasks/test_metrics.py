"""The wallboard's figures and the team's metrics, against values computed by hand on a fixed day
(tests/tasks/floor_day.py describes it), plus one pass through the real services."""

from datetime import datetime, timedelta

import pytest

from conversations.models import Activity
from conversations.services import conversation_assign, conversation_end, message_append_inbound, message_send_reply
from tasks.metrics import (
    agent_condition,
    answered_within_target,
    floor_board,
    peak_waiting,
    personal_today,
    team_report,
    waiting_spans,
)
from tasks.models import Queue, TaskStatus
from tasks.services import task_complete
from tests.conversations.conftest import make_conversation, make_queue, make_task
from tests.tasks.floor_day import DAY, NEW_YORK, NOON_THIRTY, at


def test_the_wallboard_at_half_past_noon(floor_day, acme_agent, acme_agent2):
    floor = floor_board(now=NOON_THIRTY, zone=NEW_YORK)
    boards = {board.queue.name: board for board in floor.queues}
    support, billing = boards["Support"], boards["Billing"]

    assert (support.waiting, support.longest_wait_seconds, support.offers_pending) == (1, 600, 1)
    assert (support.sla_at_risk, support.sla_breached) == (1, 0)
    assert (billing.waiting, billing.longest_wait_seconds, billing.sla_breached) == (1, 300, 1)
    # In target: T1 (30 s), T5 (10 s), T6 (60 s: the target itself counts); missed: T2 (answered after
    # 120 s), T4 (abandoned after 3 minutes), T7 (waiting 10 minutes); T3 left after 40 s: neither.
    assert (support.service_level.hits, support.service_level.count) == (3, 6)
    assert support.service_level.percent == 50
    assert (billing.service_level.hits, billing.service_level.count) == (0, 1)
    by_hour = {hour: (r.hits, r.count) for hour, r in enumerate(support.service_level_by_hour) if r.count}
    assert by_hour == {9: (1, 2), 10: (0, 1), 11: (2, 2), 12: (0, 1)}
    assert (floor.service_level.hits, floor.service_level.count, floor.waiting) == (3, 7, 2)

    agents = support.agents
    assert (agents.available, agents.busy, agents.wrap_up, agents.offline) == (1, 0, 0, 1)
    assert dict(agents.unavailable) == {"Lunch": 1}
    assert billing.agents.staffed == 0

    # Last hour (11:30–12:30): T6 and T7 arrived; T6 took 1260 s to handle (11:41 → 12:02). That is
    # 2 × 1260 / 3600 = 0.7 Erlangs: one agent answers 31% within 60 s, two agents 82.9% ≥ 80%.
    assert (support.forecast.arrivals_last_hour, support.forecast.aht_seconds) == (2, 1260)
    assert (support.forecast.agents_needed, support.forecast.agents_staffed, support.forecast.short_by) == (2, 1, 1)
    assert (billing.forecast.arrivals_last_hour, billing.forecast.agents_needed) == (1, None)  # no handle time yet

    # Peak waiting per quarter hour: T1 and T2 overlapped at 09:00:20–09:00:30.
    assert len(support.depth) == 50  # 00:00 to 12:30
    peaks = {index: peak for index, peak in enumerate(support.depth) if peak}
    assert peaks == {36: 2, 40: 1, 42: 1, 44: 1, 46: 1, 49: 1}  # 09:00, 10:00, 10:30, 11:00, 11:30, 12:15
    assert {index: peak for index, peak in enumerate(billing.depth) if peak} == {49: 1}


def test_the_team_report_of_the_day(floor_day, acme_agent, acme_agent2, acme_agent3):
    report = team_report(first_day=DAY, last_day=DAY, zone=NEW_YORK, now=NOON_THIRTY + timedelta(days=300))
    assert report.first_response.count == 3
    assert report.first_response.value == pytest.approx((120 + 180 + 60) / 3)  # C1, C2, C5
    # C1 09:00 → 09:10, C2 09:00:20 → 09:30, C5 from its reopening at 11:40 → 12:00.
    assert report.resolution_time.value == pytest.approx((600 + 1780 + 1200) / 3)
    assert report.work.handled == 4
    assert report.work.handle_time.value == pytest.approx((690 + 1720 + 1310 + 1260) / 4)
    assert (report.work.resolution_rate.hits, report.work.resolution_rate.count) == (3, 4)  # T5's conversation reopened
    assert (report.csat.sent, report.csat.rated, report.csat.average, report.csat.satisfied_percent) == (3, 2, 3.5, 50)
    offers = report.offers
    assert (offers.accepted, offers.declined, offers.timed_out) == (4, 1, 1)
    assert offers.time_to_accept.value == pytest.approx((25 + 80 + 8 + 30) / 4)
    assert report.dispositions == [("Support", "Follow-up Required", 1), ("Support", "Resolved", 3)]
    [support, billing] = sorted(report.queues, key=lambda s: s.queue.name, reverse=True)
    assert (support.arrived, support.answered, support.abandoned) == (7, 4, 2)
    assert (support.service_level.hits, support.service_level.count) == (3, 6)
    assert support.wait_to_answer.value == pytest.approx((30 + 120 + 10 + 60) / 4)
    assert (billing.arrived, billing.service_level.percent) == (1, 0)

    rows = {row.member.user.username: row for row in report.agents}
    assert set(rows) == {"acme-agent1", "acme-agent2", "acme-agent3"}  # the supervisors, with no figures, are left out
    a, b = rows["acme-agent1"], rows["acme-agent2"]
    assert (a.handled, a.first_response.value, a.resolution_time.value) == (3, 90, 900)
    assert a.work.handle_time.value == pytest.approx((690 + 1310 + 1260) / 3)
    assert a.work.resolution_rate.percent == pytest.approx(200 / 3)
    assert (a.offers.accepted, a.offers.declined, a.offers.timed_out, a.offers.time_to_accept.value) == (3, 1, 0, 21)
    assert (b.offers.accepted, b.offers.timed_out, b.offers.time_to_accept.value) == (1, 1, 80)
    assert (a.csat.sent, a.csat.rated, a.csat.average) == (2, 1, 5)
    assert (b.csat.average, b.first_response.value, b.resolution_time.value) == (2, 180, 1780)
    # A: offline 00:00–08:30 and 12:30–24:00, Available 08:30–10:30 and 10:50–12:30, Lunch 10:30–10:50.
    assert (a.status.available, a.status.offline, dict(a.status.unavailable)) == (13200, 72000, {"Lunch": 1200})
    # Holding T1 (690 s), T5 (1310 s) and T6 (1260 s), all while Available.
    assert a.status.busy_while_available == 3260
    assert a.status.occupancy_percent == pytest.approx(100 * 3260 / 13200)  # 24.7%
    # B: Available 09:00–24:00, holding T2 09:02:20–09:31:00.
    assert (b.status.available, b.status.occupancy_percent) == (54000, pytest.approx(100 * 1720 / 54000))
    assert dict(a.work.by_day) == {DAY: 3}


def test_a_two_day_report_splits_by_local_day_and_filters(floor_day, acme_agent, acme_agent2):
    later = NOON_THIRTY + timedelta(days=300)
    report = team_report(first_day=DAY, last_day=DAY + timedelta(days=1), zone=NEW_YORK, now=later)
    a = {row.member.pk: row for row in report.agents}[acme_agent.pk]
    assert dict(a.work.by_day) == {DAY: 3, DAY + timedelta(days=1): 1}  # T8 was done at 00:30 on the 11th
    assert a.handled_per_day == 2
    assert report.resolution_time.count == 4  # C8 too
    just_b = team_report(first_day=DAY, last_day=DAY, zone=NEW_YORK, now=later, agent=acme_agent2)
    assert [row.member for row in just_b.agents] == [acme_agent2]
    assert (just_b.work.handled, just_b.offers.accepted, just_b.csat.rated) == (1, 1, 1)
    billing_only = team_report(first_day=DAY, last_day=DAY, zone=NEW_YORK, now=later, queue=floor_day.billing)
    assert billing_only.work.handled == 0 and billing_only.first_response.count == 0
    assert [service.queue for service in billing_only.queues] == [floor_day.billing]


def test_an_agents_own_day(floor_day, acme_agent):
    figures = personal_today(agent=acme_agent, now=NOON_THIRTY, zone=NEW_YORK)
    assert (figures.handled, figures.first_response.value) == (3, 90)
    assert figures.handle_time.value == pytest.approx((690 + 1310 + 1260) / 3)
    assert (figures.resolution_rate.hits, figures.resolution_rate.count) == (2, 3)
    assert (figures.csat.rated, figures.csat.average) == (1, 5)


def test_waiting_spans_follow_the_status_rows():
    t0 = at(9, 0)
    rows = [
        (1, 10, t0, "created", "conversation"),
        (1, 10, t0 + timedelta(seconds=5), "status", "offer pending"),  # an offer's row: not a status
        (1, 10, t0 + timedelta(seconds=5), "status", "reserved"),
        (1, 10, t0 + timedelta(seconds=20), "status", "pending"),
        (1, 10, t0 + timedelta(seconds=30), "status", "assigned"),
        (1, 10, t0 + timedelta(seconds=90), "status", "pending"),  # re-queued: waits again
        (1, 10, t0 + timedelta(seconds=95), "status", "canceled"),
        (2, 20, t0 + timedelta(seconds=10), "created", "conversation"),
    ]
    assert waiting_spans(rows) == {
        10: [(t0, t0 + timedelta(seconds=30)), (t0 + timedelta(seconds=90), t0 + timedelta(seconds=95))],
        20: [(t0 + timedelta(seconds=10), None)],
    }


def test_peak_waiting_counts_overlaps_within_each_step():
    t0 = at(9, 0)
    minute = timedelta(minutes=1)
    spans = [(t0 - minute, t0 + minute), (t0 + 2 * minute, t0 + 3 * minute), (t0 + 2 * minute, None),
             (t0 + 4 * minute, t0 + 4 * minute + timedelta(seconds=1))]  # fmt: skip
    assert peak_waiting(spans, start=t0, end=t0 + 6 * minute, step=2 * minute) == [1, 2, 2]
    assert peak_waiting([(t0, t0 + minute)], start=t0 + minute, end=t0 + 2 * minute, step=minute) == [
        0
    ]  # ends excluded


def test_service_level_outcomes():
    t0 = at(9, 0)
    kwargs = {"created_at": t0, "now": t0 + timedelta(hours=1), "target_seconds": 20}
    assert answered_within_target(answered_at=t0 + timedelta(seconds=20), ended_at=None, **kwargs) is True
    assert answered_within_target(answered_at=t0 + timedelta(seconds=21), ended_at=None, **kwargs) is False
    assert answered_within_target(answered_at=None, ended_at=t0 + timedelta(seconds=5), **kwargs) is None
    assert answered_within_target(answered_at=None, ended_at=t0 + timedelta(seconds=25), **kwargs) is False
    assert answered_within_target(answered_at=None, ended_at=None, **kwargs) is False  # still waiting after an hour


def test_agent_conditions():
    assert agent_condition("available", set()) == "available"
    assert agent_condition("available", {TaskStatus.ASSIGNED, TaskStatus.WRAPPING}) == "busy"
    assert agent_condition("available", {TaskStatus.WRAPPING}) == "wrap_up"
    assert agent_condition("unavailable", {TaskStatus.ASSIGNED}) == "unavailable"
    assert agent_condition("offline", set()) == "offline"


def test_the_real_services_write_what_the_metrics_read(in_acme, acme_agent, dispositions):
    """One conversation through the services: answered, replied, resolved and completed today."""
    queue = make_queue("Sales")
    conversation = make_conversation()
    message_append_inbound(conversation=conversation, body="Hello?", provider_message_id="SM-metrics-1")
    task = make_task(conversation, queue)
    conversation_assign(conversation=conversation, agent=acme_agent, actor=acme_agent)
    message_send_reply(conversation=conversation, author=acme_agent, body="Hi!")
    conversation.refresh_from_db()
    conversation_end(conversation=conversation, actor=acme_agent)
    task.refresh_from_db()
    task_complete(task=task, actor=acme_agent, disposition=dispositions["Resolved"])

    now = datetime.now(tz=NEW_YORK) + timedelta(seconds=1)
    figures = personal_today(agent=acme_agent, now=now, zone=NEW_YORK)
    assert figures.handled == 1 and figures.first_response.count == 1 and figures.handle_time.count == 1
    assert figures.resolution_rate.percent == 100
    assert Activity.objects.filter(task=task, kind="status", new_value="assigned").count() == 1
    board = {b.queue.name: b for b in floor_board(now=now, zone=NEW_YORK).queues}["Sales"]
    assert (board.service_level.count, board.forecast.arrivals_last_hour) == (1, 1)
    assert board.forecast.aht_seconds is not None and board.forecast.agents_needed >= 1
    assert board.waiting == 0


def test_an_impossible_target_gives_no_estimate_rather_than_an_error(floor_day):
    Queue.objects.filter(pk=floor_day.support.pk).update(service_level_percent=100)  # past the form's validation
    support = {b.queue.name: b for b in floor_board(now=NOON_THIRTY, zone=NEW_YORK).queues}["Support"]
    assert support.forecast.arrivals_last_hour == 2 and support.forecast.agents_needed is None
