"""Benchmark 5, timers: offer expiries and SLA deadlines all due in the same minute, swept for real.

    ./switchboard bench timers                      # or: .venv/bin/python -m bench.timers
    ./switchboard bench timers --quick

Seeds 1,000 agents (50 tenants x 20) and --count timers: half pending offers (a reserved task offered
to one of its tenant's agents), half conversation tasks whose customer waits for a first response.
Then starts the Celery worker and beat exactly as `./switchboard run` does, and once the worker is
ready moves every due time into the same minute (spread evenly, starting a few seconds ahead). Beat
enqueues `tasks.jobs.sweep_due_timers` every half second; the sweeps time the offers out (the task goes
back to its queue, routing is asked again) and escalate the breached tasks, through the services.

Figures: lateness (when the service acted - when it was due: `responded_at - expires_at` for offers,
`escalated_at - first_response_due_at` for SLA breaches) p50 / p99 / max, how many were acted on, and
duplicates (0: each offer's `timed out` row and each task's breach and escalation rows exist once).
The limit is the bare compare-and-set, measured in the same run on the same tables: `UPDATE ... SET
status = 'timed_out' WHERE id = %s AND status = 'pending'`, one transaction per row, as rows/s; the
sweeps' own rate is the number acted on over the time from the first due time to the last action.
Targets (issue 8): lateness p99 <= 1 s, 0 duplicates.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

from bench import harness
from bench.harness import Figure, Stage, all_tenants_cursor, percentile, plain_conninfo, say

TENANTS, AGENTS_PER_TENANT = 50, 20
LEAD_SECONDS = 5.0  # the first due time, after the worker is ready
WINDOW_SECONDS = 60.0  # all due in the same minute
TARGET_P99_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=10_000, help="timers in the minute (half offers, half SLA)")
    parser.add_argument("--patience", type=float, default=600.0, help="seconds to wait after the minute for the sweeps")


def measure(stage: Stage, options: argparse.Namespace) -> list[Figure]:
    from django.utils import timezone

    from bench.fixtures import agents_available, queued_conversation_tasks, tenants_with_sms
    from contactcenter.tenancy import dangerously_all_tenants
    from tasks.models import AgentStatus, Offer, TaskStatus

    if options.quick:
        options.count, options.patience = 400, 120.0
    far = timezone.now() + timedelta(days=30)
    tenants = tenants_with_sms(TENANTS, missed_offers_before_unavailable=0)
    agents_available(tenants, AGENTS_PER_TENANT, status=AgentStatus.UNAVAILABLE)  # nobody to re-offer to
    half = options.count // 2
    offered = queued_conversation_tasks(tenants, half, status=TaskStatus.RESERVED)
    agents_of = {t.tenant.pk: t.agents for t in tenants}
    with dangerously_all_tenants():  # seeding many tenants at once; every row names its own tenant
        Offer.objects.bulk_create(
            [Offer(tenant_id=task.tenant_id, task=task, agent=agents_of[task.tenant_id][n % AGENTS_PER_TENANT],
                   expires_at=far) for n, task in enumerate(offered)],
            batch_size=2000,
        )  # fmt: skip
    queued_conversation_tasks(tenants, options.count - half, start=half, first_response_due_at=far)
    say(f"{half:,} pending offers and {options.count - half:,} response deadlines written")

    limit = _bare_compare_and_set_rate(min(2000, half))
    say(f"limit: bare compare-and-set, one transaction per row: {limit:,.0f} rows/s")

    stage.start_worker_and_beat()
    with all_tenants_cursor() as cursor:  # every timer into the same minute, evenly spread
        cursor.execute(
            "UPDATE tasks_offer SET expires_at = now() + make_interval(secs => %s + %s * random()) "
            "WHERE status = 'pending'",
            [LEAD_SECONDS, WINDOW_SECONDS],
        )
        cursor.execute(
            "UPDATE tasks_task SET first_response_due_at = now() + make_interval(secs => %s + %s * random()) "
            "WHERE first_response_due_at IS NOT NULL",
            [LEAD_SECONDS, WINDOW_SECONDS],
        )
    started = time.monotonic()
    deadline = started + LEAD_SECONDS + WINDOW_SECONDS + options.patience
    while time.monotonic() < deadline:
        time.sleep(5)
        offers_left, deadlines_left = _left()
        say(
            f"{time.monotonic() - started:4.0f} s: {offers_left:,} offers and {deadlines_left:,} deadlines not acted on yet"
        )
        if time.monotonic() > started + LEAD_SECONDS + WINDOW_SECONDS and not offers_left and not deadlines_left:
            break

    offer_lateness, sla_lateness, duplicates, acted_per_s = _lateness()
    all_lateness = offer_lateness + sla_lateness
    say(f"offers acted on: {len(offer_lateness):,}/{half:,}; deadlines: {len(sla_lateness):,}/{options.count - half:,}; "
        f"sweeps acted on {acted_per_s:,.0f} timers/s while behind")  # fmt: skip
    return [
        Figure("timers: acted on per second while behind", acted_per_s, "/s", limit, "bare compare-and-set UPDATE"),
        Figure("timers: lateness p50 (offers and SLA)", percentile(all_lateness, 50), "s"),
        Figure("timers: lateness p99 (offers and SLA)", percentile(all_lateness, 99), "s", target=TARGET_P99_S,
               higher_is_better=False,
               note=f"offers p99 {percentile(offer_lateness, 99):.2f} s, SLA p99 {percentile(sla_lateness, 99):.2f} s, "
                    f"max {max(all_lateness, default=float('nan')):.2f} s; "
                    f"{options.count - len(all_lateness):,} not acted on within the patience"),
        Figure("timers: duplicates", duplicates, "rows", target=0, higher_is_better=False),
    ]  # fmt: skip


def _left() -> tuple[int, int]:

    with all_tenants_cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM tasks_offer WHERE status = 'pending' AND expires_at < now() + interval '1 day'"
        )
        offers = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM tasks_task WHERE first_response_due_at IS NOT NULL AND escalated_at IS NULL "
            "AND sla_state <> 'breached'"
        )
        return offers, cursor.fetchone()[0]


def _lateness() -> tuple[list[float], list[float], int, float]:

    with all_tenants_cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM responded_at - expires_at), expires_at, responded_at FROM tasks_offer "
            "WHERE status = 'timed_out'"
        )
        offers = cursor.fetchall()
        cursor.execute(
            "SELECT extract(epoch FROM escalated_at - first_response_due_at), first_response_due_at, escalated_at "
            "FROM tasks_task WHERE escalated_at IS NOT NULL AND first_response_due_at IS NOT NULL"
        )
        breaches = cursor.fetchall()
        # Each timed-out offer writes one "offer timed_out" row; each breach one SLA row and one escalation.
        cursor.execute(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM conversations_activity "
            "WHERE new_value = 'offer timed_out' GROUP BY task_id, reason) AS rows_per_offer"
        )
        duplicates = cursor.fetchone()[0]
        cursor.execute(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM conversations_activity "
            "WHERE kind IN ('sla', 'escalation') AND new_value <> 'warning' GROUP BY task_id, kind) AS rows_per_task"
        )
        duplicates += cursor.fetchone()[0]
    rows = offers + breaches
    if not rows:
        return [], [], int(duplicates), 0.0
    first_due = min(due for _, due, _ in rows)
    last_act = max(acted for _, _, acted in rows)
    span = (last_act - first_due).total_seconds()
    return [float(r[0]) for r in offers], [float(r[0]) for r in breaches], int(duplicates), len(rows) / max(span, 1e-9)


def _bare_compare_and_set_rate(rows: int) -> float:
    """Rows/s of `UPDATE tasks_offer SET status='timed_out' ... WHERE id=%s AND status='pending'`, one
    transaction each, on `rows` of the seeded offers; then put back as they were."""
    import psycopg

    conninfo = plain_conninfo()
    with psycopg.connect(conninfo, autocommit=True) as raw:
        ids = [
            r[0]
            for r in raw.execute("SELECT id FROM tasks_offer WHERE status = 'pending' ORDER BY id LIMIT %s", [rows])
        ]
        started = time.perf_counter()
        for offer_id in ids:
            raw.execute(
                "UPDATE tasks_offer SET status = 'timed_out', responded_at = now() WHERE id = %s AND status = 'pending'",
                [offer_id],
            )
        rate = len(ids) / (time.perf_counter() - started)
        raw.execute("UPDATE tasks_offer SET status = 'pending', responded_at = NULL WHERE id = ANY(%s)", [ids])
    return rate


if __name__ == "__main__":
    raise SystemExit(harness.main("timers", "Timers: offer expiries and SLA deadlines due in the same minute",
                                  measure, add_arguments))  # fmt: skip
