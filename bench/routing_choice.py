"""Benchmark: the routing engine's pure choice function (tasks/routing.py), without Django or a database.

    .venv/bin/python -m bench.routing_choice            # from the repo root; about 40 s on 2 cores
    .venv/bin/python -m bench.routing_choice --sizes 1000,10000 --rounds 3 --samples 300   # quicker

Snapshot: 1,000 agents across 50 tenants (20 each, two queues per tenant, agents serving one or both),
all four strategies, every channel, agents part-busy; 1k / 10k / 50k / 100k queued tasks. For each
size it measures

- a **routing pass**: one `choose_offers` call over the whole snapshot, producing D decisions; the
  figures are the pass time and the time per decision (pass / D), median and worst of the repeats;
- **single-task decisions**: `choose_offers_for_task` for a sample of the queued tasks against the
  same agents (the event-driven path: a task is created or re-queued), p50 / p99 per decision.

Sizes are measured round after round, interleaved, so that noise from the rest of the machine falls
on all of them alike. Every figure is printed twice: by wall clock (what a caller waits, including
time the OS gave to other processes) and by the routing thread's CPU time (the router's own cost).
On a shared 2-core box the wall-clock p99 of a ~0.2 ms call is mostly preemption; compare the two.

Every figure is printed next to a limit measured in the same run, on the same data:

- pass limit: sort the tasks into routing order and hand the first D of them to the next agent of a
  pre-built list per queue, with no eligibility, capacity or strategy: what any router must pay to
  read, order and answer, and nothing more;
- single-task limit: one bare scan of the agents for the first available one serving the task's
  queue with room on its channel: what a router without a prepared index must pay per decision.

Targets (issue 8, item 3): >= 1,000 decisions/s, p99 <= 10 ms per decision, <= 1.5x growth 1k -> 100k.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.routing import (  # noqa: E402
    CHANNELS,
    AgentSnapshot,
    OfferDecision,
    QueueRules,
    Strategy,
    TaskSnapshot,
    choose_offers,
    choose_offers_for_task,
)

TENANTS = 50
AGENTS_PER_TENANT = 20
QUEUES_PER_TENANT = 2
SKILLS = ("billing", "spanish", "french", "tech", "sales")
CHANNEL_MIX = {"voice": 30, "sms": 20, "whatsapp": 10, "messenger": 5, "webchat": 20, "email": 13, "fax": 2}
TARGET_DECISIONS_PER_S = 1_000
TARGET_P99_MS = 10.0
TARGET_GROWTH = 1.5


def build_snapshot(n_tasks: int, seed: int) -> tuple[list[TaskSnapshot], list[AgentSnapshot], list[QueueRules], dict[int, int]]:
    """A deterministic snapshot; agents and queues are the same for every size, only the tasks grow."""
    rng = random.Random(seed)
    strategies = list(Strategy)
    queues = []
    agents = []
    for tenant in range(TENANTS):
        tenant_queues = [tenant * QUEUES_PER_TENANT + q + 1 for q in range(QUEUES_PER_TENANT)]
        for queue_id in tenant_queues:
            strategy = strategies[queue_id % len(strategies)]
            required = frozenset(rng.sample(SKILLS, rng.randint(1, 2))) if strategy == Strategy.SKILL_BASED else frozenset()
            queues.append(
                QueueRules(
                    queue_id,
                    strategy,
                    required_skills=required,
                    max_offers_per_task=rng.choice((1, 1, 1, 2, 3)),
                    wrap_up_receives_work=rng.random() < 0.3,
                )
            )
        for n in range(AGENTS_PER_TENANT):
            agent_id = tenant * AGENTS_PER_TENANT + n + 1
            serves = frozenset(tenant_queues if rng.random() < 0.5 else [rng.choice(tenant_queues)])
            load = {c: rng.randint(0, 1 if c == "voice" else 2) for c in rng.sample(CHANNELS, 2)}
            agents.append(
                AgentSnapshot(
                    agent_id,
                    rng.choices(("available", "unavailable", "offline"), (85, 10, 5))[0],
                    in_wrap_up=rng.random() < 0.1,
                    queue_ids=serves,
                    skills={s: rng.randint(1, 5) for s in rng.sample(SKILLS, rng.randint(2, 4))},
                    load=load,
                    last_assigned_at=None if rng.random() < 0.05 else rng.uniform(0, 3600),
                )
            )
    channels, weights = zip(*CHANNEL_MIX.items())
    tasks = []
    for task_id in range(1, n_tasks + 1):
        queue = rng.choice(queues)
        tenant_first_agent = (queue.queue_id - 1) // QUEUES_PER_TENANT * AGENTS_PER_TENANT + 1
        declined = frozenset([tenant_first_agent + rng.randrange(AGENTS_PER_TENANT)]) if rng.random() < 0.05 else frozenset()
        tasks.append(
            TaskSnapshot(
                task_id,
                queue.queue_id,
                rng.choices(channels, weights)[0],
                priority=rng.choices((0, 1, 2, 3), (20, 60, 15, 5))[0],
                vip=rng.random() < 0.05,
                waiting_since=rng.uniform(0, 3600),
                contact_id=rng.randrange(1, 20_000),
                declined_by=declined,
            )
        )
    last_handler_by_contact = {
        contact: (contact % TENANTS) * AGENTS_PER_TENANT + rng.randrange(AGENTS_PER_TENANT) + 1
        for contact in range(1, 20_000)
    }
    return tasks, agents, queues, last_handler_by_contact


def bare_pass(tasks: list[TaskSnapshot], agents: list[AgentSnapshot], decisions: int) -> list[OfferDecision]:
    """The pass limit: order the tasks, give the first `decisions` to the next agent of a pre-built list."""
    by_queue: dict[int, list[int]] = {}
    for agent in agents:
        for queue_id in agent.queue_ids:
            by_queue.setdefault(queue_id, []).append(agent.agent_id)
    turn = dict.fromkeys(by_queue, 0)
    made = []
    for task in sorted(tasks, key=lambda t: (-t.priority, not t.vip, t.waiting_since, t.task_id)):
        if len(made) == decisions:
            break
        serving = by_queue.get(task.queue_id)
        if serving:
            made.append(OfferDecision(task.task_id, serving[turn[task.queue_id] % len(serving)], "bare"))
            turn[task.queue_id] += 1
    return made


def bare_single(task: TaskSnapshot, agents: list[AgentSnapshot]) -> OfferDecision | None:
    """The single-task limit: the first available agent serving the queue with room on the channel."""
    for agent in agents:
        if (
            agent.status == "available"
            and task.queue_id in agent.queue_ids
            and agent.load[task.channel] < agent.capacity[task.channel]
        ):
            return OfferDecision(task.task_id, agent.agent_id, "bare")
    return None


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ratio(ours: float, limit: float) -> str:
    return f"{ours / limit:5.1f}x limit"


class Size:
    """One queue depth: its snapshot and every timing taken on it."""

    def __init__(self, n_tasks: int, samples: int, seed: int) -> None:
        self.n_tasks = n_tasks
        self.tasks, self.agents, self.queues, self.last_handlers = build_snapshot(n_tasks, seed)
        queue_by_id = {q.queue_id: q for q in self.queues}
        sample = random.Random(seed + n_tasks).choices(self.tasks, k=samples)
        self.sample = [(task, queue_by_id[task.queue_id]) for task in sample]
        self.decisions = 0
        self.pass_s: list[float] = []
        self.pass_cpu_s: list[float] = []
        self.bare_pass_s: list[float] = []
        self.bare_pass_cpu_s: list[float] = []
        self.single_s: list[float] = []
        self.single_cpu_s: list[float] = []
        self.bare_single_s: list[float] = []
        self.bare_single_cpu_s: list[float] = []
        self.single_offered = 0

    def time_pass(self) -> None:
        gc.collect()
        start, start_cpu = time.perf_counter(), time.thread_time()
        made = choose_offers(self.tasks, self.agents, self.queues, last_handler_by_contact=self.last_handlers)
        self.pass_cpu_s.append(time.thread_time() - start_cpu)
        self.pass_s.append(time.perf_counter() - start)
        self.decisions = len(made)
        gc.collect()
        start, start_cpu = time.perf_counter(), time.thread_time()
        bare_pass(self.tasks, self.agents, self.decisions)
        self.bare_pass_cpu_s.append(time.thread_time() - start_cpu)
        self.bare_pass_s.append(time.perf_counter() - start)

    def time_single(self, chunk: list[tuple[TaskSnapshot, QueueRules]]) -> None:
        gc.collect()
        for task, queue in chunk:
            start, start_cpu = time.perf_counter(), time.thread_time()
            made = choose_offers_for_task(task, self.agents, queue, last_handler_by_contact=self.last_handlers)
            self.single_cpu_s.append(time.thread_time() - start_cpu)
            self.single_s.append(time.perf_counter() - start)
            self.single_offered += bool(made)
            start, start_cpu = time.perf_counter(), time.thread_time()
            bare_single(task, self.agents)
            self.bare_single_cpu_s.append(time.thread_time() - start_cpu)
            self.bare_single_s.append(time.perf_counter() - start)

    def figures(self, clock: str) -> dict[str, float]:
        """Figures by wall clock ("wall") or by the CPU time of this thread ("cpu")."""
        cpu = clock == "cpu"
        pass_s, bare_pass_s = (self.pass_cpu_s, self.bare_pass_cpu_s) if cpu else (self.pass_s, self.bare_pass_s)
        single_s, bare_single_s = (self.single_cpu_s, self.bare_single_cpu_s) if cpu else (self.single_s, self.bare_single_s)
        d = self.decisions
        median, bare_median = statistics.median(pass_s), statistics.median(bare_pass_s)
        return {
            "pass_ms": median * 1e3,
            "pass_worst_ms": max(pass_s) * 1e3,
            "bare_pass_ms": bare_median * 1e3,
            "per_decision_us": median / d * 1e6,
            "bare_per_decision_us": bare_median / d * 1e6,
            "decisions_per_s": d / median,
            "single_p50_us": percentile(single_s, 50) * 1e6,
            "single_p99_us": percentile(single_s, 99) * 1e6,
            "single_max_us": max(single_s) * 1e6,
            "bare_single_p50_us": percentile(bare_single_s, 50) * 1e6,
            "bare_single_p99_us": percentile(bare_single_s, 99) * 1e6,
            "single_per_s": len(single_s) / sum(single_s),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000,100000", help="queued task counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=15, help="routing passes timed per size")
    parser.add_argument("--samples", type=int, default=4000, help="single-task decisions timed per size")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    print(f"routing choice benchmark — {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"{TENANTS} tenants, {TENANTS * QUEUES_PER_TENANT} queues, {TENANTS * AGENTS_PER_TENANT} agents; "
          f"targets >= {TARGET_DECISIONS_PER_S:,} decisions/s, p99 <= {TARGET_P99_MS:g} ms, growth <= {TARGET_GROWTH}x")
    started = time.perf_counter()
    sizes = [Size(int(n), args.samples, args.seed) for n in args.sizes.split(",")]
    print(f"snapshots built in {time.perf_counter() - started:.1f} s; timing {args.rounds} rounds, "
          "sizes interleaved so that noise from the rest of the machine falls on every size alike")

    # Round after round over every size, so a noisy minute spreads across all of them.
    for round_number in range(args.rounds):
        for size in sizes:
            size.time_pass()
            per_round = len(size.sample) // args.rounds
            size.time_single(size.sample[round_number * per_round:(round_number + 1) * per_round])

    for clock in ("wall", "cpu"):
        report(sizes, clock)


def report(sizes: list[Size], clock: str) -> None:
    if clock == "wall":
        print("\n=== wall clock: what a caller waits, including time the machine gave to other processes ===")
    else:
        print("\n=== CPU time of the routing thread: the router's own cost, without preemption by other processes ===")
    results = [(size, size.figures(clock)) for size in sizes]
    for size, r in results:
        print(f"\n{size.n_tasks:,} queued tasks — a routing pass makes {size.decisions:,} offers "
              f"(median of {len(size.pass_s)} passes)")
        print(f"  pass time      {r['pass_ms']:9.2f} ms  (worst {r['pass_worst_ms']:7.2f} ms)"
              f"   | limit {r['bare_pass_ms']:8.2f} ms  {ratio(r['pass_ms'], r['bare_pass_ms'])}")
        print(f"  per decision   {r['per_decision_us']:9.2f} us  {r['decisions_per_s']:9,.0f} decisions/s"
              f"  | limit {r['bare_per_decision_us']:8.2f} us  {ratio(r['per_decision_us'], r['bare_per_decision_us'])}")
        print(f"  single task    p50 {r['single_p50_us']:7.1f} us  p99 {r['single_p99_us']:7.1f} us"
              f"  max {r['single_max_us']:7.1f} us  {r['single_per_s']:7,.0f} decisions/s"
              f"  ({size.single_offered:,}/{len(size.single_s):,} got an offer)")
        print(f"                 | limit p50 {r['bare_single_p50_us']:5.1f} us  p99 {r['bare_single_p99_us']:5.1f} us"
              f"   {ratio(r['single_p50_us'], r['bare_single_p50_us'])} (p50)"
              f"  {ratio(r['single_p99_us'], r['bare_single_p99_us'])} (p99)")

    if len(results) < 2:
        return
    (first, f), (last, l) = results[0], results[-1]
    growth = {key: l[key] / f[key] for key in f}
    print(f"\ngrowth {first.n_tasks:,} -> {last.n_tasks:,} queued ({clock}):")
    print(f"  routing pass, time per decision  {growth['per_decision_us']:5.2f}x   | limit {growth['bare_per_decision_us']:5.2f}x")
    print(f"  single task, p50                 {growth['single_p50_us']:5.2f}x   | limit {growth['bare_single_p50_us']:5.2f}x")
    print(f"  single task, p99                 {growth['single_p99_us']:5.2f}x   | limit {growth['bare_single_p99_us']:5.2f}x")

    slowest_rate = min(min(r["decisions_per_s"], r["single_per_s"]) for _, r in results)
    worst_p99_ms = max(r["single_p99_us"] for _, r in results) / 1e3
    worst_pass_ms = max(r["pass_worst_ms"] for _, r in results)

    def verdict(ok: bool) -> str:
        return "met   " if ok else "MISSED"

    print(f"\ntargets ({clock}):")
    print(f"  {verdict(slowest_rate >= TARGET_DECISIONS_PER_S)} decisions/s, slowest of pass and single task "
          f"{slowest_rate:10,.0f}  (>= {TARGET_DECISIONS_PER_S:,})")
    print(f"  {verdict(worst_p99_ms <= TARGET_P99_MS)} p99 per single-task decision, worst size    "
          f"{worst_p99_ms:10.3f} ms (<= {TARGET_P99_MS:g} ms)")
    for label, key in (("routing pass, per decision", "per_decision_us"), ("single task, p99", "single_p99_us")):
        print(f"  {verdict(growth[key] <= TARGET_GROWTH)} growth, {label:<32} {growth[key]:10.2f}x  (<= {TARGET_GROWTH}x)")
    print(f"  (a whole routing pass, which every offer in it waits for, took at worst {worst_pass_ms:.0f} ms)")


if __name__ == "__main__":
    main()
