"""Benchmark 3b, routing through the locked service path: tasks.services.routing_run on a real database.

    ./switchboard bench routing                     # or: .venv/bin/python -m bench.routing_service
    ./switchboard bench routing --quick

1,000 available agents (50 tenants x 20, each serving their tenant's queue, default capacity: 3 per
channel) and 1k / 10k / 50k / 100k pending conversation tasks spread over the 50 tenants (bulk-written;
each size adds to the last). At each size, with 1 and then 4 routers (processes, as Celery workers
would be) each calling `routing_run(tenant_id=...)` for each of --tenants-per-round tenants in an order
of its own, until each of them has been routed by every router. A run locks its tasks and agents (SKIP LOCKED), decides
(tasks.routing.choose_offers), writes the offers, reservations and activity rows (a fixed number of
statements per run) and pushes one `offer.new` per agent and one `tasks.status` on commit;
a tenant's run fills its 20 agents (up to 60 offers per channel). Between rounds offers, reservations
and activity rows are reset with plain SQL.

Figures: decisions/s (offers made / wall time of the round), time per decision (a run's time / its
offers; p50 and p99 over the runs that made offers), and the growth of the time per decision from the
smallest to the largest queue. The limit is the bare claim in the same database, same rows: `SELECT
... FOR UPDATE SKIP LOCKED LIMIT 1` on the tenant's queue plus the `UPDATE` to reserved, one transaction
per claim, on as many connections as routers, for as many claims as the round made decisions. Targets
(issue 8): >= 1,000 decisions/s, p99 <= 10 ms per decision, growth <= 1.5x from 1k to 100k queued.

The pure choice function, without a database, is benchmarked by bench.routing_choice.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import time

from bench import harness
from bench.harness import Figure, Stage, all_tenants_cursor, percentile, plain_conninfo, say

TENANTS, AGENTS_PER_TENANT = 50, 20
TARGET_PER_S, TARGET_P99_MS, TARGET_GROWTH = 1000, 10.0, 1.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="1000,10000,50000,100000", help="queued tasks, rising, comma-separated")
    parser.add_argument("--routers", default="1,4", help="concurrent routers to measure, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per size and router count (best is kept)")
    parser.add_argument("--tenants-per-round", type=int, default=10,
                        help="tenants each router routes in a round (the same ones for every router)")  # fmt: skip


def measure(stage: Stage, options: argparse.Namespace) -> list[Figure]:
    from bench.fixtures import agents_available, queued_conversation_tasks, tenants_with_sms

    if options.quick:
        options.sizes, options.rounds = "1000,5000", 1
    sizes = [int(s) for s in options.sizes.split(",")]
    router_counts = [int(r) for r in options.routers.split(",")]
    tenants = tenants_with_sms(TENANTS)
    agents_available(tenants, AGENTS_PER_TENANT)
    tenant_ids = [t.tenant.pk for t in tenants][: options.tenants_per_round]
    queue_of = {t.tenant.pk: t.queue.pk for t in tenants}
    results: dict[tuple[int, int], dict] = {}
    queued = 0
    for size in sizes:
        started = time.monotonic()
        queued_conversation_tasks(tenants, size - queued, start=queued)
        queued = size
        _analyze()
        say(f"{size:,} tasks queued ({time.monotonic() - started:.0f} s to write)")
        for routers in router_counts:
            best = None
            for _ in range(options.rounds):
                _reset()
                made = _routing_round(tenant_ids, routers)
                _reset()
                limit = _claim_round(tenant_ids, queue_of, routers, claims=made["decisions"])
                made["claims_per_s"] = limit
                if best is None or made["decisions_per_s"] > best["decisions_per_s"]:
                    best = made
            results[(size, routers)] = best
            say(f"  {routers} router(s): {best['decisions']:,} decisions in {best['seconds']:.2f} s = "
                f"{best['decisions_per_s']:,.0f}/s; per decision p50 {best['p50_ms']:.2f} ms p99 {best['p99_ms']:.2f} ms; "
                f"run p99 {best['run_p99_ms']:.0f} ms | bare SKIP LOCKED claims {best['claims_per_s']:,.0f}/s")  # fmt: skip
    _reset()

    figures = []
    for (size, routers), r in results.items():
        figures.append(Figure(f"routing {size:,} queued, {routers} router(s): decisions/s", r["decisions_per_s"], "/s",
                              r["claims_per_s"], "bare SKIP LOCKED claim + update", target=TARGET_PER_S))  # fmt: skip
        figures.append(Figure(f"routing {size:,} queued, {routers} router(s): p99/decision", r["p99_ms"], "ms",
                              target=TARGET_P99_MS, higher_is_better=False,
                              note=f"p50 {r['p50_ms']:.2f} ms; a whole run p99 {r['run_p99_ms']:.0f} ms"))  # fmt: skip
    if len(sizes) > 1:
        for routers in router_counts:
            first, last = results[(sizes[0], routers)], results[(sizes[-1], routers)]
            growth = last["p50_ms"] / first["p50_ms"]
            limit_growth = first["claims_per_s"] / last["claims_per_s"]
            figures.append(Figure(f"routing growth {sizes[0]:,} -> {sizes[-1]:,}, {routers} router(s)", growth, "x",
                                  limit_growth, "growth of the bare claim", target=TARGET_GROWTH,
                                  higher_is_better=False, note="time per decision (p50), last size / first size"))  # fmt: skip
    return figures


def _analyze() -> None:

    with all_tenants_cursor() as cursor:
        for table in ("tasks_task", "conversations_conversation", "conversations_contact", "tasks_offer"):
            cursor.execute(f"VACUUM ANALYZE {table}")


def _reset() -> None:
    """Back to every task pending and no offers, as before the round (plain SQL, as the table owner). The
    activity rows stay: the log is append-only."""

    with all_tenants_cursor() as cursor:
        cursor.execute("DELETE FROM tasks_offer")
        cursor.execute("UPDATE tasks_task SET status = 'pending' WHERE status <> 'pending'")
        cursor.execute("UPDATE tasks_agentstate SET last_assigned_at = NULL, consecutive_missed_offers = 0")


def _router(tenant_ids: list[int], seed: int, results) -> None:
    """One router process: routing_run for every tenant, in an order of its own; (seconds, offers) each."""
    from django.db import connections

    from contactcenter.tenancy import tenant_context
    from tasks.services import routing_run

    order = list(tenant_ids)
    random.Random(seed).shuffle(order)
    runs = []
    try:
        for tenant_id in order:
            started = time.perf_counter()
            with tenant_context(tenant_id):
                offers = routing_run(tenant_id=tenant_id)
            runs.append((time.perf_counter() - started, len(offers)))
    finally:
        connections.close_all()
    results.put(runs)


def _in_processes(target, args_of_each: list[tuple]) -> tuple[list, float]:
    """Run `target(*args, results)` in one forked process per args; (their results, wall time)."""
    from django.db import connections

    connections.close_all()  # a forked child must not share the parent's connection,
    for connection in connections.all():  # nor its connection pool, whose threads do not fork
        if getattr(connection, "pool", None) is not None:
            connection.close_pool()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=target, args=(*args, results)) for args in args_of_each]
    started = time.monotonic()
    for process in processes:
        process.start()
    collected = [results.get(timeout=1800) for _ in processes]
    seconds = time.monotonic() - started
    for process in processes:
        process.join(60)
        if process.exitcode != 0:
            raise RuntimeError(f"a benchmark process exited with code {process.exitcode}")
    return collected, seconds


def _routing_round(tenant_ids: list[int], routers: int) -> dict:
    collected, seconds = _in_processes(_router, [(tenant_ids, seed) for seed in range(routers)])
    runs = [run for runs in collected for run in runs]
    decisions = sum(n for _, n in runs)
    per_decision = [elapsed / n * 1e3 for elapsed, n in runs if n]
    return {
        "decisions": decisions, "seconds": seconds, "decisions_per_s": decisions / seconds,
        "p50_ms": percentile(per_decision, 50), "p99_ms": percentile(per_decision, 99),
        "run_p99_ms": percentile([elapsed * 1e3 for elapsed, _ in runs], 99),
    }  # fmt: skip


def _claimer(conninfo: str, tenant_ids: list[int], queue_of: dict, claims: int, seed: int, results) -> None:
    """The limit: claim the oldest pending task of a tenant's queue with SKIP LOCKED, mark it reserved."""
    import psycopg

    rng = random.Random(seed)
    done = 0
    with psycopg.connect(conninfo) as connection:
        while done < claims:
            tenant_id = rng.choice(tenant_ids)
            with connection.transaction():
                row = connection.execute(
                    "SELECT id FROM tasks_task WHERE tenant_id = %s AND queue_id = %s AND status = 'pending' "
                    "ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                    (tenant_id, queue_of[tenant_id]),
                ).fetchone()
                if row:
                    connection.execute("UPDATE tasks_task SET status = 'reserved' WHERE id = %s", row)
            done += 1
    results.put(done)


def _claim_round(tenant_ids: list[int], queue_of: dict, routers: int, *, claims: int) -> float:
    conninfo = plain_conninfo()
    each = max(1, claims // routers)
    done, seconds = _in_processes(_claimer, [(conninfo, tenant_ids, queue_of, each, seed) for seed in range(routers)])
    return sum(done) / seconds


if __name__ == "__main__":
    raise SystemExit(harness.main("routing", "Routing: the locked service path (tasks.services.routing_run)",
                                  measure, add_arguments))  # fmt: skip
