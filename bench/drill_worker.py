"""Drill (issue 9): `kill -9` the Celery worker mid-sweep and mid-send.

    ./switchboard drills worker                  # or: .venv/bin/python -m bench.drill_worker
    ./switchboard drills worker --quick

Starts the product's worker and beat exactly as `./switchboard run` does, then breaks the worker twice,
each time killing its whole process group (the main process and its pool) with SIGKILL and starting
a new worker, as a supervisor would:

(a) Mid-sweep. --timers timers (half pending offers, half first-response deadlines, seeded as the
    timers benchmark seeds them) are made due at once; while `tasks.jobs.sweep_due_timers` is acting
    on them (some fired, not all) the worker is killed. Every timer must still fire once: counted
    from the offers timed out and the tasks breached, duplicates from the activity rows (one
    "offer timed out" row per offer, one SLA and one escalation row per task).
(b) Mid-send. --messages agents' SMS replies are queued, to a fake Twilio (tests/fakes/twilio_api.py,
    served from a thread of this process) that takes each message and answers --send-delay seconds
    later, so sends are in flight; the worker is killed mid-send. Every message must reach Twilio
    once and be marked sent: sends the dead worker had claimed are in doubt until
    `conversations.jobs.recover_outbound_messages` asks Twilio's Messages list (found: marked sent;
    not found: sent again) and jobs the dead worker held are re-enqueued by the same sweep.

Figures: sent / fired, duplicated (target 0), lost (target 0), time to recover (from the kill to the
last timer fired or message sent), and how the in-doubt sends were resolved.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from datetime import timedelta

from bench import harness
from bench.harness import Figure, Process, Stage, all_tenants_cursor, say

TENANTS = 10
KILL_WHEN_FIRED = 0.1  # kill once this share of the timers fired (the sweep is acting)
KILL_WHEN_SENT = 0.25  # kill once this share of the messages reached Twilio


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timers", type=int, default=1000, help="timers due at once (half offers, half SLA)")
    parser.add_argument("--messages", type=int, default=200, help="queued outbound SMS")
    parser.add_argument("--send-delay", type=float, default=0.25, help="seconds the fake Twilio takes to answer")
    parser.add_argument("--patience", type=float, default=240.0, help="seconds to wait for recovery, each part")


def measure(stage: Stage, options: argparse.Namespace) -> list[Figure]:
    from bench.fixtures import agents_available, tenants_with_sms
    from tasks.models import AgentStatus
    from tests.fakes.twilio_api import FakeTwilioApi

    if options.quick:
        options.timers, options.messages = 200, 40
    tenants = tenants_with_sms(TENANTS, missed_offers_before_unavailable=0)
    agents_available(tenants, 4, status=AgentStatus.UNAVAILABLE)  # nobody to re-offer timed-out work to
    twilio = FakeTwilioApi({t.account_sid: t.auth_token for t in tenants}, answer_delay=options.send_delay).start()
    os.environ["TWILIO_API_BASE_URL"] = twilio.base_url  # the product processes' environment (Stage.product_env)
    try:
        worker, _beat = stage.start_worker_and_beat()
        worker, sweep_figures = _mid_sweep(stage, worker, tenants, options)
        _worker, send_figures = _mid_send(stage, worker, tenants, twilio, options)
    finally:
        twilio.stop()
    return sweep_figures + send_figures


# --- the worker -------------------------------------------------------------------------------------


def _kill_group(worker: Process) -> None:
    """kill -9 the worker's whole process group: the main process and its pool die at once."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.process.wait(10)


def _replace_worker(stage: Stage, worker: Process) -> tuple[Process, float]:
    """Kill the worker; start a new one. Returns it and when the kill happened (monotonic)."""
    _kill_group(worker)
    killed_at = time.monotonic()
    stage.stop(worker)  # only closes its log: the group is gone
    say("worker killed (SIGKILL to its process group); starting a new one")
    new = stage.start_worker(f"worker-{time.monotonic_ns()}")
    say(f"new worker ready {time.monotonic() - killed_at:.1f} s after the kill")
    return new, killed_at


# --- (a) mid-sweep ----------------------------------------------------------------------------------


def _mid_sweep(stage: Stage, worker: Process, tenants, options) -> tuple[Process, list[Figure]]:
    from django.utils import timezone

    from bench.fixtures import queued_conversation_tasks
    from bench.timers import _lateness, _left
    from contactcenter.tenancy import dangerously_all_tenants
    from tasks.models import Offer, TaskStatus

    far = timezone.now() + timedelta(days=30)
    half = options.timers // 2
    offered = queued_conversation_tasks(tenants, half, status=TaskStatus.RESERVED)
    agents_of = {t.tenant.pk: t.agents for t in tenants}
    with dangerously_all_tenants():  # seeding many tenants at once; every row names its own tenant
        Offer.objects.bulk_create(
            [Offer(tenant_id=task.tenant_id, task=task, agent=agents_of[task.tenant_id][n % len(agents_of[task.tenant_id])],
                   expires_at=far) for n, task in enumerate(offered)],
            batch_size=2000,
        )  # fmt: skip
    queued_conversation_tasks(tenants, options.timers - half, start=half, first_response_due_at=far)
    say(f"mid-sweep: {half:,} pending offers and {options.timers - half:,} response deadlines, all due now")
    with all_tenants_cursor() as cursor:
        cursor.execute("UPDATE tasks_offer SET expires_at = now() WHERE status = 'pending'")
        cursor.execute("UPDATE tasks_task SET first_response_due_at = now() WHERE first_response_due_at IS NOT NULL")
    due_at = time.monotonic()
    fired_at_kill = 0
    while time.monotonic() < due_at + 60:
        offers_left, deadlines_left = _left()
        fired_at_kill = options.timers - offers_left - deadlines_left
        if fired_at_kill >= KILL_WHEN_FIRED * options.timers:
            break
        time.sleep(0.02)
    say(f"mid-sweep: {fired_at_kill:,} of {options.timers:,} fired {time.monotonic() - due_at:.1f} s after due; kill")
    worker, killed_at = _replace_worker(stage, worker)
    recovered_at = float("nan")
    while time.monotonic() < killed_at + options.patience:
        offers_left, deadlines_left = _left()
        if not offers_left and not deadlines_left:
            recovered_at = time.monotonic()
            break
        time.sleep(0.2)
    offer_lateness, sla_lateness, duplicates, _rate = _lateness()
    fired = len(offer_lateness) + len(sla_lateness)
    recovery = recovered_at - killed_at
    say(f"mid-sweep: {fired:,} fired, {duplicates} duplicated, {options.timers - fired:,} lost; "
        f"all fired {recovery:.1f} s after the kill")  # fmt: skip
    return worker, [
        Figure("mid-sweep: timers due", options.timers, "timers"),
        Figure("mid-sweep: fired once", fired, "timers", target=options.timers,
               note=f"{fired_at_kill:,} had fired when the worker was killed"),
        Figure("mid-sweep: duplicated", duplicates, "rows", target=0, higher_is_better=False),
        Figure("mid-sweep: lost", options.timers - fired, "timers", target=0, higher_is_better=False),
        Figure("mid-sweep: time to recover", recovery, "s",
               note="from the kill to the last timer fired (includes starting the new worker)"),
    ]  # fmt: skip


# --- (b) mid-send -----------------------------------------------------------------------------------


def _mid_send(stage: Stage, worker: Process, tenants, twilio, options) -> tuple[Process, list[Figure]]:
    from django.db import transaction

    from contactcenter.tenancy import tenant_context
    from conversations.services import contact_find_or_create, conversation_start, message_send_reply

    count = options.messages
    conversations = []
    for n in range(count):
        t = tenants[n % len(tenants)]
        with tenant_context(t.tenant):
            contact, _ = contact_find_or_create(kind="phone", value=f"+1555{n:07d}", name=f"Drill customer {n}")
            conversations.append((t, conversation_start(contact=contact, channel="sms")))
    bodies = [f"drill {stage.run_id} reply {n}" for n in range(count)]
    with transaction.atomic():  # every delivery job is enqueued at the commit, at once
        for (t, conversation), body in zip(conversations, bodies, strict=True):
            with tenant_context(t.tenant):
                message_send_reply(conversation=conversation, author=t.agents[0], body=body)
    queued_at = time.monotonic()
    say(f"mid-send: {count:,} replies queued; Twilio answers each after {options.send_delay:.2f} s")
    while len(twilio.messages) < KILL_WHEN_SENT * count and time.monotonic() < queued_at + 120:
        time.sleep(0.01)
    at_twilio_at_kill = len(twilio.messages)
    claimed_at_kill = _claimed_not_sent()
    say(f"mid-send: {at_twilio_at_kill:,} at Twilio, {claimed_at_kill} claimed and not marked sent; kill")
    worker, killed_at = _replace_worker(stage, worker)
    recovered_at = float("nan")
    while time.monotonic() < killed_at + options.patience:
        left = _not_sent()
        if not left:
            recovered_at = time.monotonic()
            break
        time.sleep(0.5)
    posts = Counter(request.field("Body") for request in twilio.messages_sent())
    sent_once, stored, not_marked_sent = _sent_and_matching(bodies, twilio)
    duplicated = sum(posts[body] - 1 for body in bodies if posts[body] > 1)
    lost = len({body for body in bodies if posts[body] == 0} | not_marked_sent)  # never at Twilio, or not sent here
    found, resent = _in_doubt_outcomes()
    recovery = recovered_at - killed_at
    say(f"mid-send: {sent_once:,} sent once, {duplicated} duplicated, {lost} lost; in doubt: {found} found at "
        f"Twilio, {resent} sent again; {len(twilio.messages_listed())} list requests; "
        f"all sent {recovery:.1f} s after the kill")  # fmt: skip
    return worker, [
        Figure("mid-send: outbound SMS queued", count, "messages"),
        Figure("mid-send: sent once", sent_once, "messages", target=count,
               note=f"marked sent with the SID Twilio gave it: {stored:,}; "
                    f"{at_twilio_at_kill:,} had reached Twilio when the worker was killed"),
        Figure("mid-send: duplicated (at fake Twilio)", duplicated, "messages", target=0, higher_is_better=False),
        Figure("mid-send: lost", lost, "messages", target=0, higher_is_better=False),
        Figure("mid-send: in doubt, found via the list API", found, "messages",
               note=f"{resent} in doubt and not at Twilio: sent again; {claimed_at_kill} claimed at the kill"),
        Figure("mid-send: time to recover", recovery, "s",
               note="from the kill to the last message sent; a claim is in doubt after 60 s, swept every 10 s"),
    ]  # fmt: skip


def _claimed_not_sent() -> int:
    with all_tenants_cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM conversations_message WHERE direction = 'outbound' AND delivery_status = 'queued' "
            "AND send_claimed_at IS NOT NULL"
        )
        return cursor.fetchone()[0]


def _not_sent() -> int:
    with all_tenants_cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM conversations_message WHERE direction = 'outbound' AND delivery_status <> 'sent'"
        )
        return cursor.fetchone()[0]


def _sent_and_matching(bodies: list[str], twilio) -> tuple[int, int, set[str]]:
    """(messages sent and at Twilio exactly once, of those: stored with the SID Twilio gave that body,
    the bodies not marked sent here)."""
    sids = {}
    for resource in list(twilio.messages):
        sids.setdefault(resource["body"], []).append(resource["sid"])
    with all_tenants_cursor() as cursor:
        cursor.execute(
            "SELECT body, provider_message_id FROM conversations_message WHERE direction = 'outbound' "
            "AND delivery_status = 'sent'"
        )
        stored = dict(cursor.fetchall())
    once = [body for body in bodies if body in stored and len(sids.get(body, [])) == 1]
    return len(once), sum(1 for body in once if stored[body] == sids[body][0]), set(bodies) - set(stored)


def _in_doubt_outcomes() -> tuple[int, int]:
    """How recovery resolved the sends in doubt, from its activity rows: (found at Twilio, sent again)."""
    with all_tenants_cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE new_value = 'sent'), count(*) FILTER (WHERE new_value = 'queued') "
            "FROM conversations_activity WHERE kind = 'delivery'"
        )
        found, resent = cursor.fetchone()
    return found, resent


if __name__ == "__main__":
    sys.exit(harness.main("drill_worker", "Drill: kill -9 the Celery worker mid-sweep and mid-send", measure,
                          add_arguments, fail_on_missed=True))  # fmt: skip
