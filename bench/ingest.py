"""Benchmark 1, webhook ingest: signed Twilio inbound SMS at rising rates through the production server.

    ./switchboard bench ingest                      # or: .venv/bin/python -m bench.ingest
    ./switchboard bench ingest --quick              # a smoke run
    .venv/bin/python -m bench.ingest --web-args="--workers 2"   # try another server configuration

Seeds 10 tenants, each with a queue and a Twilio SMS number. A load client in a process of its own
(bench.http_load) posts pre-signed webhooks at rising rates, each rate a step of --seconds: most from new
senders (a new contact, conversation and task each), a quarter from senders who wrote before (a message
in their open conversation), 1 % the same request again (Twilio retrying: a duplicate). The web process
is the one `./switchboard run` starts (uvicorn serving contactcenter.asgi), with --web-args appended,
next to the Celery worker and beat: the webhook answers once it has logged the message, and the
worker's job stores it (channels_inbound.twilio.intake), so both sides are reported.

Figures: the highest rate sustained with 0 errors (every answer 2xx, p99 under a second from when
each request was due, so a server falling behind fails the step) and its p50/p99, next to the limit:
the same rows inserted with plain psycopg, one transaction per message, with the same mix (the INSERT
statements are captured from a real webhook request and its job, and replayed with fresh keys). Then,
once the load is over, the worker's side: messages stored per second (first logged to last stored),
the wait of each from logged to stored (p50/p99), and how long the backlog took to drain. Targets
(issue 8): >= 1,000 msgs/s, p99 <= 50 ms, >= 25 % of the raw insert rate.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import threading
import time

from bench import harness
from bench.harness import Figure, Stage, all_tenants_cursor, plain_conninfo, say

TENANTS = 10
REPEAT_SHARE = 0.25  # messages from a sender who wrote before
DUPLICATE_SHARE = 0.01  # the same request again, as Twilio retries
KEPT_UP_P99_MS = 1000.0
TARGET_PER_S, TARGET_P99_MS, TARGET_SHARE_OF_RAW = 1000, 50.0, 0.25
BODIES = ("Where is my order?", "Can I change the delivery address?", "My card was charged twice 😕",
          "Do you ship to Canada?", "The app keeps logging me out.", "Please cancel my subscription.")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rates", default="100,200,300,400,500,600,800,1000,1200,1500",
                        help="messages/s of each step, rising; the run stops after the first failed step")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each step")
    parser.add_argument("--connections", type=int, default=32, help="most keep-alive connections of the client")
    parser.add_argument("--raw-seconds", type=float, default=10.0, help="length of each raw-insert measurement")
    parser.add_argument("--web-args", default="", help="extra arguments for the web server (uvicorn)")
    parser.add_argument("--drain-timeout", type=float, default=600.0,
                        help="most seconds to wait, after the load, for the worker to store every logged message")  # fmt: skip
    parser.add_argument("--rls-rounds", type=int, default=0,
                        help="instead of the rising rates: N rounds alternating row-level security on (the app role) "
                             "and off (DATABASE_APP_ROLE='': the superuser, whom no policy binds); per-webhook time "
                             "at a light rate and capacity under a flood, 'off' as the limit")  # fmt: skip
    parser.add_argument("--rls-seconds", type=float, default=10.0, help="length of each light-rate measurement")
    parser.add_argument("--flood-rate", type=float, default=150.0, help="offered msgs/s of the flood (4 s of it)")


def measure(stage: Stage, options: argparse.Namespace) -> list[Figure]:
    from bench.fixtures import tenants_with_sms

    if options.quick:
        options.rates, options.seconds, options.raw_seconds = "50,100,200", 3.0, 3.0
    tenants = tenants_with_sms(TENANTS)
    if options.rls_rounds:
        return rls_overhead(stage, tenants, options)
    mix = capture_webhook_inserts(tenants[0])
    say(f"a webhook from a new sender inserts into {', '.join(mix['new']['tables'])}; "
        f"from a returning sender into {', '.join(mix['repeat']['tables'])}")  # fmt: skip

    raw = {writers: raw_insert_rate(mix, writers=writers, seconds=options.raw_seconds) for writers in (1, 2)}
    for writers, rate in raw.items():
        say(f"raw limit: plain psycopg, {writers} connection(s), one transaction per message: {rate:,.0f} msgs/s")
    raw_limit = max(raw.values())
    with all_tenants_cursor() as cursor:  # the limit's event rows are not for the worker to store
        cursor.execute("UPDATE channels_inbound_inboundevent SET outcome = 'stored' WHERE outcome = 'received'")

    web = stage.start_web(options.web_args.split())
    stage.start_worker_and_beat()  # stores what the webhooks log (channels_inbound.twilio.intake)
    rates = [float(r) for r in options.rates.split(",")]
    count = int(sum(rates) * options.seconds * 1.05) + 1000
    requests_file = stage.workdir / "requests.jsonl"
    write_requests(requests_file, tenants, web.url, count)
    say(f"web: {' '.join(web.argv[1:])}")
    with all_tenants_cursor() as cursor:  # the database's clock, as received_at is written
        cursor.execute("SELECT now()")
        (load_started_at,) = cursor.fetchone()
    result = stage.run_client("bench.http_load", [
        "--url", web.url + "/webhooks/twilio/messaging", "--requests", str(requests_file), "--rates", options.rates,
        "--seconds", str(options.seconds), "--connections", str(options.connections), "--stop-when-behind",
    ])  # fmt: skip
    best = None
    for step in result["steps"]:
        passed = kept_up(step)
        say(f"{step['rate']:6.0f}/s offered: {step['achieved_per_s']:7.1f}/s answered 2xx, statuses {step['statuses']}, "
            f"errors {step['errors']}, p50 {step['p50_ms']:.1f} ms, p99 {step['p99_ms']:.1f} ms, max {step['max_ms']:.0f} ms, "
            f"{step['connections']} connections {'' if passed else ' <- not sustained'}")  # fmt: skip
        if step["errors"]:
            say(f"    errors: {step['error_samples']}")
        if passed:
            best = step
    say(f"load client used {result['client_cpu_s']:.1f} s of CPU in {result['wall_s']:.0f} s")
    web.check_alive()
    errors_in_log = re.findall(r"^(?:ERROR|CRITICAL).*$", web.log(), re.MULTILINE)
    if errors_in_log:
        say(f"the web server logged {len(errors_in_log)} errors, first: {errors_in_log[0][:300]}")

    drain = backlog_drain(since=load_started_at, timeout=options.drain_timeout)
    sustained = best["rate"] if best else 0.0
    nan = float("nan")
    return [
        Figure("ingest: sustained msgs/s with 0 errors", sustained, "msgs/s", raw_limit,
               "same rows, plain psycopg, 1 txn/msg", target=TARGET_PER_S, ratio_target=TARGET_SHARE_OF_RAW),
        Figure("ingest: p50 at the sustained rate", best["p50_ms"] if best else nan, "ms"),
        Figure("ingest: p99 at the sustained rate", best["p99_ms"] if best else nan, "ms",
               target=TARGET_P99_MS, higher_is_better=False),
        Figure("ingest: peak msgs/s answered (any step)", max(s["achieved_per_s"] for s in result["steps"]), "msgs/s",
               raw_limit, "same rows, plain psycopg, 1 txn/msg"),
        Figure("ingest: msgs/s stored by the worker (first logged to last stored)", drain["stored_per_s"], "msgs/s",
               raw_limit, "same rows, plain psycopg, 1 txn/msg"),
        Figure("ingest: logged -> stored, p50", drain["lag_p50_ms"], "ms"),
        Figure("ingest: logged -> stored, p99", drain["lag_p99_ms"], "ms"),
        Figure("ingest: backlog left after the load, drained in", drain["drained_after_s"], "s", higher_is_better=False),
    ]  # fmt: skip


def backlog_drain(*, since, timeout: float) -> dict:
    """Wait until the worker has stored every logged message (none `received`), then read how fast
    it stored the ones logged from `since` on (the load's, not the raw limit's rows) and how long
    each waited: message created_at - event received_at."""
    from bench.harness import percentile, until_inbound_stored

    drained_after, waiting = until_inbound_stored(timeout)
    with all_tenants_cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM m.created_at - e.received_at) * 1000, e.received_at, m.created_at"
            " FROM channels_inbound_inboundevent e JOIN conversations_message m"
            " ON m.provider_message_id = e.body->>'MessageSid' AND m.tenant_id = e.tenant_id"
            " WHERE e.outcome = 'stored' AND e.received_at >= %s",
            [since],
        )
        rows = cursor.fetchall()
        cursor.execute(
            "SELECT outcome, count(*) FROM channels_inbound_inboundevent WHERE received_at >= %s GROUP BY 1 ORDER BY 1",
            [since],
        )
        outcomes = dict(cursor.fetchall())
    lags = sorted(float(lag) for lag, _, _ in rows)
    span = (max(r[2] for r in rows) - min(r[1] for r in rows)).total_seconds() if rows else float("nan")
    result = {
        "stored_per_s": len(rows) / span if rows and span else float("nan"),
        "lag_p50_ms": percentile(lags, 50) if lags else float("nan"),
        "lag_p99_ms": percentile(lags, 99) if lags else float("nan"),
        "drained_after_s": drained_after if not waiting else float("nan"),
    }
    say(f"events by outcome: {outcomes}; {len(rows)} messages stored at {result['stored_per_s']:.1f}/s, "
        f"logged -> stored p50 {result['lag_p50_ms']:.0f} ms, p99 {result['lag_p99_ms']:.0f} ms; "
        + (f"backlog drained {drained_after:.1f} s after the load" if not waiting else f"{waiting} still waiting after {timeout:.0f} s"))  # fmt: skip
    return result


def kept_up(step: dict) -> bool:
    """0 errors, every answer 2xx, and p99 within a second of when requests were due (no growing backlog)."""
    return (
        step["errors"] == 0
        and step["ok"] == step["count"]
        and step["p99_ms"] <= KEPT_UP_P99_MS
        and step["achieved_per_s"] >= 0.9 * step["rate"]
    )


def write_requests(path, tenants, base_url: str, count: int, seed: int = 8, sender_prefix: str = "555") -> None:
    """`count` signed webhooks: new senders, returning senders (REPEAT_SHARE) and retries (DUPLICATE_SHARE).
    New senders are +1<sender_prefix><n>: another prefix, other people."""
    from bench.fixtures import signed_sms

    rng = random.Random(seed)
    seen: list[tuple[int, str]] = []
    sent: list[dict] = []
    with open(path, "w") as file:
        for n in range(count):
            roll = rng.random()
            if sent and roll < DUPLICATE_SHARE:
                item = rng.choice(sent[-200:])
            else:
                if seen and roll < DUPLICATE_SHARE + REPEAT_SHARE:
                    k, sender = rng.choice(seen[-5000:])
                else:
                    k, sender = rng.randrange(len(tenants)), f"+1{sender_prefix}{n:07d}"
                    seen.append((k, sender))
                item = signed_sms(tenants[k], base_url=base_url, sender=sender, body=rng.choice(BODIES))
                sent.append(item)
            file.write(
                json.dumps({"body": item["body"], "headers": item["headers"], "key": item["fields"]["From"]}) + "\n"
            )


# --- row-level security: its cost, measured against the same server with the policies out of force ----

LIGHT_RATE = 10.0
FLOOD_SECONDS = 4.0


def rls_overhead(stage: Stage, tenants, options: argparse.Namespace) -> list[Figure]:
    """Rounds of the same traffic through a web process with row-level security in force (the app role,
    as deployed) and one without (DATABASE_APP_ROLE="": it stays the login superuser, whom no policy
    binds; the backend still sends the tenant settings, so only the policies' own cost differs). The
    order flips every round, so drift on a shared box falls on both sides alike."""
    from statistics import median

    if options.quick:
        options.rls_rounds, options.rls_seconds, options.flood_rate = 1, 4.0, 60.0
    port = harness.free_port()  # one URL for every web process, so requests are signed once per round
    base_url = f"http://127.0.0.1:{port}"
    results: dict[str, dict[str, list[float]]] = {
        mode: {"p50": [], "p99": [], "capacity": []} for mode in ("on", "off")
    }
    prefixes = itertools.count(600)
    for round_number in range(options.rls_rounds):
        for mode in ("on", "off") if round_number % 2 == 0 else ("off", "on"):
            env = {"DATABASE_POOL_MAX_SIZE": "10"} | ({"DATABASE_APP_ROLE": ""} if mode == "off" else {})
            web = stage.start_web(options.web_args.split(), port=port, **env)
            light, flood = stage.workdir / "light.jsonl", stage.workdir / "flood.jsonl"
            write_requests(light, tenants, base_url, int(2 * LIGHT_RATE * options.rls_seconds) + 50,
                           seed=round_number, sender_prefix=str(next(prefixes)))  # fmt: skip
            write_requests(flood, tenants, base_url, int(options.flood_rate * FLOOD_SECONDS) + 50,
                           seed=round_number, sender_prefix=str(next(prefixes)))  # fmt: skip
            url = web.url + "/webhooks/twilio/messaging"
            # Two light steps: the first warms the process up (imports, the pool's connections), the second counts.
            calm = stage.run_client("bench.http_load", ["--url", url, "--requests", str(light), "--rates",
                                    f"{LIGHT_RATE},{LIGHT_RATE}", "--seconds", str(options.rls_seconds),
                                    "--connections", "8"])["steps"][-1]  # fmt: skip
            storm = stage.run_client("bench.http_load", ["--url", url, "--requests", str(flood), "--rates",
                                     str(options.flood_rate), "--seconds", str(FLOOD_SECONDS),
                                     "--connections", "16"])["steps"][-1]  # fmt: skip
            stage.stop(web)
            results[mode]["p50"].append(calm["p50_ms"])
            results[mode]["p99"].append(calm["p99_ms"])
            results[mode]["capacity"].append(storm["achieved_per_s"])
            say(f"round {round_number + 1}, RLS {mode:<3}: at {LIGHT_RATE:g}/s p50 {calm['p50_ms']:.1f} ms, "
                f"p99 {calm['p99_ms']:.1f} ms (errors {calm['errors']}, statuses {calm['statuses']}); flood of "
                f"{options.flood_rate:g}/s answered {storm['achieved_per_s']:.1f}/s 2xx (statuses {storm['statuses']}, "
                f"errors {storm['errors']}); load {os.getloadavg()[0]:.1f}")  # fmt: skip
    on, off = ({k: median(v) for k, v in results[m].items()} for m in ("on", "off"))
    rounds = f"median of {options.rls_rounds} round(s)"
    return [
        Figure(f"ingest, RLS on: p50 at {LIGHT_RATE:g} msgs/s", on["p50"], "ms", off["p50"], "RLS off (superuser)",
               note=f"{rounds}; p99 {on['p99']:.1f} ms on, {off['p99']:.1f} ms off"),
        Figure("ingest, RLS on: msgs/s answered under a flood", on["capacity"], "msgs/s", off["capacity"],
               "RLS off (superuser)", note=f"{rounds}; {options.flood_rate:g} msgs/s offered for {FLOOD_SECONDS:g} s"),
    ]  # fmt: skip


# --- the raw limit: the same INSERTs with plain psycopg -------------------------------------------------


def capture_webhook_inserts(t) -> dict:
    """Post one webhook from a new sender and one from a returning sender through Django's test client
    (in this process, same code and settings), then store it as the worker's job does, capturing the
    INSERT statements of both: every row a message costs, not only the webhook's event row."""
    from django.db import connection
    from django.test import Client

    from bench.fixtures import signed_sms
    from channels_inbound.twilio.intake import twilio_events_process

    client = Client(HTTP_HOST="127.0.0.1")
    mix = {}
    sender = "+15559990000"
    for kind in ("new", "repeat"):
        request = signed_sms(t, base_url="http://127.0.0.1", sender=sender, body="Where is my order?")
        statements: list[tuple[str, tuple]] = []

        def capture(execute, sql, params, many, context, statements=statements):
            if sql.lstrip().upper().startswith("INSERT"):
                statements.append((sql, tuple(params or ())))
            return execute(sql, params, many, context)

        with connection.execute_wrapper(capture):
            response = client.post(
                "/webhooks/twilio/messaging", request["body"], content_type="application/x-www-form-urlencoded",
                headers=request["headers"],
            )  # fmt: skip
            twilio_events_process(tenant_id=t.tenant.pk)  # what the worker's job then stores
        if response.status_code != 200:
            raise RuntimeError(f"the captured webhook answered {response.status_code}: {response.content[:300]!r}")
        mix[kind] = {
            "statements": statements,
            "tables": [re.search(r'INSERT INTO "(\w+)"', sql).group(1) for sql, _ in statements],
            "sender": sender,
            "sid": request["fields"]["MessageSid"],
        }
    return mix


def _foreign_keys() -> dict[str, dict[str, str]]:
    """table → {column → the table it references}, from the models."""
    from django.apps import apps

    keys: dict[str, dict[str, str]] = {}
    for model in apps.get_models():
        for f in model._meta.concrete_fields:
            if f.is_relation and f.related_model is not None:
                keys.setdefault(model._meta.db_table, {})[f.column] = f.related_model._meta.db_table
    return keys


def _columns(sql: str) -> list[str]:
    return re.findall(r'"(\w+)"', sql.split("VALUES")[0])[1:]


def raw_insert_rate(mix: dict, *, writers: int, seconds: float) -> float:
    """Messages/s when each message's INSERTs (as captured, keys made fresh) run with plain psycopg, one
    transaction per message, on `writers` connections at once; the same new/returning mix as the load."""
    import psycopg
    from psycopg.types.json import Jsonb

    conninfo = plain_conninfo()
    references = _foreign_keys()
    run = random.randrange(36**3)  # keeps this call's keys apart from an earlier call's
    counts = [0] * writers
    stop = threading.Event()

    def fresh(value, replacements: dict[str, str]):
        if isinstance(value, str):
            for old, new in replacements.items():
                value = value.replace(old, new)
            return value
        if isinstance(value, Jsonb):
            return Jsonb(json.loads(fresh(json.dumps(value.obj), replacements)))
        return value

    failures: list[Exception] = []

    def write(index: int) -> None:
        try:
            write_until_stopped(index)
        except Exception as error:  # noqa: BLE001 - re-raised in the caller's thread below
            failures.append(error)
            stop.set()

    def write_until_stopped(index: int) -> None:
        rng = random.Random(index)
        unique = itertools.count()
        with psycopg.connect(conninfo) as connection:
            n = 0
            while not stop.is_set():
                kind = "repeat" if rng.random() < REPEAT_SHARE else "new"
                captured = mix[kind]
                n += 1
                replacements = {
                    captured["sender"]: f"+16{run:06d}{index}{n:06d}",
                    captured["sid"]: f"SM{run:06x}{index:02d}{n:024x}",
                }
                new_ids: dict[str, int] = {}
                with connection.transaction():
                    for sql, params in captured["statements"]:
                        table = re.search(r'INSERT INTO "(\w+)"', sql).group(1)
                        values = []
                        for column, value in zip(_columns(sql), params, strict=True):
                            if column == "public_id":
                                value = f"r{run:05x}{index}{next(unique):09x}"
                            elif (target := references.get(table, {}).get(column)) in new_ids:
                                value = new_ids[target]
                            values.append(fresh(value, replacements))
                        row = connection.execute(sql, values).fetchone() if "RETURNING" in sql else None
                        if row:
                            new_ids[table] = row[0]
                counts[index] += 1

    threads = [threading.Thread(target=write, args=(i,), daemon=True) for i in range(writers)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # warm up, then count
    before, started = sum(counts), time.monotonic()
    time.sleep(seconds)
    rate = (sum(counts) - before) / (time.monotonic() - started)
    stop.set()
    for thread in threads:
        thread.join(30)
    if failures:
        raise RuntimeError("a raw writer failed") from failures[0]
    return rate


if __name__ == "__main__":
    raise SystemExit(harness.main("ingest", "Webhook ingest: signed Twilio SMS through the production server",
                                  measure, add_arguments))  # fmt: skip
