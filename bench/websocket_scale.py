"""Benchmark 4, websocket scale: agents held by one ASGI process, its memory, and one event fanned out to all.

    ./switchboard bench websockets                  # or: .venv/bin/python -m bench.websocket_scale
    ./switchboard bench websockets --quick

Seeds --agents agents (in --tenants tenants) with a signed-in session each, starts the web process of
`./switchboard run` (one uvicorn process), and opens every agent's member socket (/ws/member/) from a
client process of its own (bench.ws_agents), as their browsers would. Then measures the web process's
memory (RSS) against the same process before any socket, and --events times pushes one event to every
tenant at once through contactcenter.realtime.push_to_tenant (on commit, through the Redis channel
layer): the fan-out latency is from the commit to each socket's next frame (JSON or an HTML fragment alike).

The limit, in the same run: the `websockets` library alone (bench.ws_agents --serve) holding the same
number of sockets from the same client and broadcasting one message to all; its RSS and fan-out
latency. Targets (issue 8): >= 5,000 agents at <= 1 GiB RSS, fan-out p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time

from bench import harness
from bench.harness import Figure, Stage, free_port, percentile, say

TARGET_AGENTS, TARGET_RSS_MIB, TARGET_P99_MS = 5000, 1024, 100.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--tenants", type=int, default=5)
    parser.add_argument("--events", type=int, default=5, help="fan-outs measured")


def measure(stage: Stage, options: argparse.Namespace) -> list[Figure]:
    from bench.fixtures import agents_available, session_cookies, tenants_with_sms
    from bench.ws_agents import AgentSockets

    if options.quick:
        options.agents, options.tenants, options.events = 200, 2, 3
    per_tenant = options.agents // options.tenants
    tenants = tenants_with_sms(options.tenants)
    agents = agents_available(tenants, per_tenant)
    keys = session_cookies(agents)
    say(f"{len(agents):,} agents with sessions in {options.tenants} tenants")

    web = stage.start_web()
    before = rss_mib(web.pid)
    sockets = AgentSockets(stage, web.url.replace("http", "ws") + "/ws/member/", keys, origin=web.url)
    time.sleep(2)
    held = rss_mib(web.pid)
    say(f"web: {sockets.connected:,} sockets open, {sockets.failed} refused, in {sockets.connect_seconds:.1f} s; "
        f"RSS {before:.0f} MiB before, {held:.0f} MiB holding them")  # fmt: skip
    sent = []
    for _ in range(options.events):
        marker = secrets.token_hex(8)
        sent.append((marker, fan_out([t.tenant.pk for t in tenants], marker)))
        time.sleep(2)
    web.check_alive()
    product = fan_out_latencies(sockets.frames(), sent)

    bare_rss_before, bare_rss, bare, bare_connected = bare_server_limit(stage, len(keys), options.events)
    say(f"product fan-out: {len(product['latencies']):,} frames of {len(sent) * sockets.connected:,} expected; "
        f"bare websockets: {bare_connected:,} sockets, RSS {bare_rss_before:.0f} -> {bare_rss:.0f} MiB, "
        f"fan-out p99 {percentile(bare, 99):.1f} ms")  # fmt: skip
    lat = product["latencies"]
    per_socket_kib = (held - before) * 1024 / max(sockets.connected, 1)
    bare_per_socket_kib = (bare_rss - bare_rss_before) * 1024 / max(bare_connected, 1)
    return [
        Figure("websockets: agents held by one process", sockets.connected, "sockets", bare_connected,
               "bare websockets server, same client", target=TARGET_AGENTS,
               note=f"{sockets.failed} refused; opened in {sockets.connect_seconds:.1f} s"),
        Figure("websockets: RSS of the web process holding them", held, "MiB", bare_rss, "bare websockets server",
               target=TARGET_RSS_MIB, higher_is_better=False,
               note=f"{per_socket_kib:.0f} KiB per socket (bare: {bare_per_socket_kib:.0f} KiB); {before:.0f} MiB idle"),
        Figure("websockets: fan-out p50", percentile(lat, 50), "ms", percentile(bare, 50), "bare broadcast p50"),
        Figure("websockets: fan-out p99", percentile(lat, 99), "ms", percentile(bare, 99), "bare broadcast p99",
               target=TARGET_P99_MS, higher_is_better=False,
               note=f"max {max(lat, default=float('nan')):.0f} ms; {product['missing']:,} of "
                    f"{len(sent) * sockets.connected:,} frames never arrived"),
    ]  # fmt: skip


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children, MiB."""
    import psutil

    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def fan_out(tenant_ids: list[int], marker: str) -> float:
    """One event to every member of these tenants, pushed as the product pushes (on commit); the commit time."""
    from django.db import transaction

    from contactcenter import realtime

    with transaction.atomic():
        for tenant_id in tenant_ids:
            realtime.push_to_tenant(tenant_id, event="bench.fanout", data={"marker": marker})
        committed = time.monotonic()
    return committed


def fan_out_latencies(result: dict, sent: list[tuple[str, float]]) -> dict:
    """ms from each event's send to its frame on each socket: the socket's first frame after the send and
    before the next event (the sockets are otherwise quiet; the frame's form, JSON or an HTML fragment, is
    the product's business). Frames that never came are `missing`."""
    latencies = []
    times = [at for _, at in sent] + [float("inf")]
    for k, at in enumerate(times[:-1]):
        first: dict[int, float] = {}
        for arrival, index, _text in result["frames"]:
            if at <= arrival < times[k + 1] and index not in first:
                first[index] = arrival
        latencies += [(arrival - at) * 1e3 for arrival in first.values()]
    return {"latencies": latencies, "missing": len(sent) * result["connected"] - len(latencies)}


def bare_server_limit(stage: Stage, sockets: int, events: int) -> tuple[float, float, list[float], int]:
    """The `websockets` library alone: (RSS idle, RSS holding, fan-out latencies in ms, sockets held)."""
    from websockets.sync.client import connect

    from bench.ws_agents import AgentSockets

    port = free_port()
    server = stage.start_process("bare-websockets", [sys.executable, "-m", "bench.ws_agents", "--serve", str(port)])
    deadline = time.monotonic() + 30
    while "LISTENING" not in server.log():
        server.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError("the bare websocket server did not start")
        time.sleep(0.1)
    before = rss_mib(server.pid)
    client = AgentSockets(stage, f"ws://127.0.0.1:{port}/agent", ["-"] * sockets)
    time.sleep(2)
    held = rss_mib(server.pid)
    sent = []
    with connect(f"ws://127.0.0.1:{port}/control") as control:
        for _ in range(events):
            marker = secrets.token_hex(8)
            at = time.monotonic()
            control.send(json.dumps({"event": "bench.fanout", "data": {"marker": marker}}))
            sent.append((marker, at))
            time.sleep(2)
    result = fan_out_latencies(client.frames(), sent)
    stage.stop(server)
    return before, held, result["latencies"], client.connected


if __name__ == "__main__":
    raise SystemExit(harness.main("websockets", "Websocket scale: agents held by one ASGI process, and fan-out",
                                  measure, add_arguments))  # fmt: skip
