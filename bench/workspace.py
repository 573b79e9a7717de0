"""Benchmark 6, the agent workspace: server time and query count of the desktop an agent reloads.

    ./switchboard bench workspace                   # or: .venv/bin/python -m bench.workspace
    ./switchboard bench workspace --quick           # a smoke run; --profile shows where the time goes

One agent holds 50 open conversations (each an assigned task with a few messages), and has the one
with a 500-message history open (`GET /?open=<it>`, the full page: status bar, task list, the pane
with history, actions, reply box and context). Timed in-process through Django's full request path
(middleware, session, tenant, template rendering) with production settings: p50 and p95 over the
runs. Query counts are taken at 5 and 50 conversations, and at 50 and 500 messages: they must be the
same (constant). Also timed: the fragments one `message.new` push renders for the agent's socket.

The limit is the data itself: the same rows (the 500 messages with their authors, the 50 tasks with
their contacts and last message) fetched with plain psycopg in one connection. Target (issue 8):
<= 50 ms per workspace, constant query count.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from bench import harness
from bench.harness import Figure, Stage, percentile, plain_conninfo, say

TARGET_MS = 50.0
CONVERSATIONS, HISTORY = 50, 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=40, help="timed requests per figure")
    parser.add_argument("--profile", action="store_true", help="print where the timed requests spend their time")


def measure(stage: Stage, options: argparse.Namespace) -> list[Figure]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    runs = 8 if options.quick else options.runs
    say("seeding one agent with open conversations")
    agent, conversations = _seed(CONVERSATIONS)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(agent.user)
    open_one = conversations[0]

    def page() -> None:
        response = client.get(f"/?open={open_one.public_id}")
        assert response.status_code == 200, response.status_code

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            page()
        return len(captured)

    _add_messages(open_one, 50)
    page()  # warm: session, content types, templates
    at_50_messages = queries()
    _add_messages(open_one, HISTORY - 50)
    at_500_messages = queries()
    _release(agent, conversations[5:])
    at_5_conversations = queries()
    _hold(agent, conversations[5:])
    at_50_conversations = queries()

    times = []
    profiler = cProfile.Profile() if options.profile else None
    for _ in range(runs):
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        page()
        if profiler:
            profiler.disable()
        times.append((time.perf_counter() - started) * 1000)
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)

    push_times = _push_times(agent, open_one, runs)
    raw = _raw_fetch_ms(agent, open_one, runs)
    constant = at_50_messages == at_500_messages and at_5_conversations == at_50_conversations
    return [
        Figure(
            f"workspace, {CONVERSATIONS} conversations, {HISTORY}-message history open: p50",
            percentile(times, 50), "ms", limit=raw, limit_what="the same rows with plain psycopg",
            target=TARGET_MS, higher_is_better=False,
        ),
        Figure("workspace: p95", percentile(times, 95), "ms", limit=raw,
               limit_what="the same rows with plain psycopg", target=TARGET_MS, higher_is_better=False),
        Figure(
            "workspace queries at 50 conversations (target: the count at 5)", at_50_conversations, "queries",
            target=at_5_conversations, higher_is_better=False,
            note=f"{at_5_conversations} / {at_50_conversations} queries at 5 / 50 conversations; {at_50_messages} / "
            f"{at_500_messages} at 50 / 500 messages: " + ("constant" if constant else "NOT constant"),
        ),
        Figure("one message.new push rendered for the agent's socket: p50", percentile(push_times, 50), "ms",
               limit=raw, limit_what="the workspace's raw rows", higher_is_better=False),
    ]  # fmt: skip


def _seed(count: int):
    from contactcenter.models import Tenant
    from contactcenter.tenancy import tenant_context
    from conversations.models import Conversation
    from tasks.models import Queue
    from tests.conftest import make_member
    from tests.tasks.routing_helpers import waiting_task

    tenant = Tenant.objects.create(name="Workspace bench", slug="workspace-bench")
    with tenant_context(tenant):
        queue = Queue.objects.create(tenant=tenant, name="Support")
        agent = make_member(tenant, "bench-agent")
        conversations = [Conversation.objects.get(pk=waiting_task(queue).conversation_id) for _ in range(count)]
    _hold(agent, conversations)
    return agent, conversations


def _hold(agent, conversations) -> None:
    from contactcenter.tenancy import tenant_context
    from conversations.services import conversation_assign

    with tenant_context(agent.tenant_id):
        for conversation in conversations:
            conversation.refresh_from_db()
            if conversation.assignee_id != agent.pk:
                conversation_assign(conversation=conversation, agent=agent, actor=agent)


def _release(agent, conversations) -> None:
    """Take conversations off the agent's list for the query-count comparison (plain update, bench only)."""
    from contactcenter.tenancy import tenant_context
    from tasks.models import Task

    with tenant_context(agent.tenant_id):
        Task.objects.filter(conversation__in=conversations).update(assignee=None, status="pending")
        type(conversations[0]).objects.filter(pk__in=[c.pk for c in conversations]).update(assignee=None)


def _add_messages(conversation, count: int) -> None:
    from django.utils import timezone

    from contactcenter.tenancy import tenant_context
    from conversations.models import Message

    with tenant_context(conversation.tenant_id):
        now = timezone.now()
        Message.objects.bulk_create(
            Message(tenant_id=conversation.tenant_id, conversation=conversation, direction="inbound",
                    body=f"Message {i}: where is my parcel? It was due on Tuesday.", delivery_status="received",
                    created_at=now)
            for i in range(count)
        )  # fmt: skip


def _push_times(agent, conversation, runs: int) -> list[float]:
    from contactcenter.tenancy import tenant_context
    from conversations.models import Message
    from desktop import fragments

    with tenant_context(agent.tenant_id):
        message = Message.objects.filter(conversation=conversation).latest("created_at")
        data = {"conversation": conversation.public_id, "message": message.public_id}
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            fragments.for_event(agent, "message.new", data)
            times.append((time.perf_counter() - started) * 1000)
    return times


def _raw_fetch_ms(agent, conversation, runs: int) -> float:
    import psycopg

    best = float("inf")
    with psycopg.connect(plain_conninfo()) as raw:
        for _ in range(runs):
            started = time.perf_counter()
            raw.execute(
                "SELECT m.*, u.username FROM conversations_message m LEFT JOIN contactcenter_membership a"
                " ON a.id = m.author_id LEFT JOIN auth_user u ON u.id = a.user_id"
                " WHERE m.conversation_id = %s ORDER BY m.created_at, m.id",
                [conversation.pk],
            ).fetchall()
            raw.execute(
                "SELECT t.*, c.*, (SELECT body FROM conversations_message WHERE conversation_id = t.conversation_id"
                " ORDER BY created_at DESC, id DESC LIMIT 1) FROM tasks_task t JOIN conversations_conversation v"
                " ON v.id = t.conversation_id JOIN conversations_contact c ON c.id = v.contact_id"
                " WHERE t.assignee_id = %s AND t.status IN ('assigned', 'wrapping')",
                [agent.pk],
            ).fetchall()
            best = min(best, (time.perf_counter() - started) * 1000)
    return best


if __name__ == "__main__":
    raise SystemExit(harness.main("workspace", "Agent workspace", measure, add_arguments))
