"""A small HTTP load client, run in a process of its own: pre-built POSTs at fixed rates, open loop.

    python -m bench.http_load --url http://127.0.0.1:8000/path --requests FILE --rates 100,200 --seconds 5 --out OUT

FILE holds one JSON object per line, {"body": "<form-encoded>", "headers": {...}, "key": "..."}, used in
order (and wrapped around if a run needs more). Each rate is one step: request i of the step is due at
start + i / rate whatever happened to the previous ones (open loop), and goes out on an idle keep-alive
connection (a new one when none is idle, up to --connections). Latency is measured from the time it
was due, so a server that falls behind shows it in full (no coordinated omission); `service` latency
is from the moment it was written. A step ends when every answer is in. The client is raw asyncio on
uvloop, its requests built before the clock starts, so it costs the server's two cores little.

OUT receives the figures of every step as JSON; with --record, also (key, due, sent, done, status) of
every request, for callers that match requests with what they caused (bench.inbound_to_screen).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from urllib.parse import urlsplit

STEP_TIMEOUT_SECONDS = 60


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> int:
        """Write one request, read its whole response; return the status code."""
        self.writer.write(request)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed by the server")
        status = int(status_line.split()[1])
        length, chunked, keep_alive = 0, False, True
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                keep_alive = False
        if chunked:
            while size := int((await self.reader.readline()).split(b";")[0], 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readline()
        elif length:
            await self.reader.readexactly(length)
        if not keep_alive:
            raise ConnectionResetError(status)  # the answer counts; the connection does not
        return status

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Keep-alive connections: an idle one if any, else a new one up to `size`, else wait for one."""

    def __init__(self, host: str, port: int, size: int):
        self.host, self.port, self.size = host, port, size
        self.idle: asyncio.Queue[Connection] = asyncio.Queue()
        self.opened = 0
        self.most_open = 0

    async def get(self) -> Connection:
        if not self.idle.empty() or self.opened >= self.size:
            return await self.idle.get()
        self.opened += 1
        self.most_open = max(self.most_open, self.opened)
        try:
            return Connection(*await asyncio.open_connection(self.host, self.port))
        except OSError:
            self.opened -= 1
            raise

    def put(self, connection: Connection) -> None:
        self.idle.put_nowait(connection)

    def discard(self, connection: Connection) -> None:
        connection.close()
        self.opened -= 1


def build_requests(path_lines: list[dict], host: str, port: int, path: str) -> list[tuple[str, bytes]]:
    built = []
    for item in path_lines:
        body = item["body"].encode()
        head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in item.get("headers", {}).items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        built.append((item.get("key", ""), head.encode() + body))
    return built


async def run_step(
    pool: Pool, requests: list[tuple[str, bytes]], cursor: int, rate: float, seconds: float, record: list | None
) -> dict:
    count = max(1, round(rate * seconds))
    latencies: list[float] = []
    service: list[float] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []

    async def one(due: float, key: str, request: bytes) -> None:
        try:
            connection = await pool.get()
        except OSError as error:
            errors.append(f"connect: {error}")
            return
        sent = time.monotonic()
        try:
            status = await connection.exchange(request)
        except ConnectionResetError as closed:
            pool.discard(connection)
            status = closed.args[0] if closed.args and isinstance(closed.args[0], int) else None
            if status is None:
                errors.append("connection reset")
                return
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as error:
            pool.discard(connection)
            errors.append(f"{type(error).__name__}: {error}")
            return
        else:
            pool.put(connection)
        done = time.monotonic()
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        latencies.append(done - due)
        service.append(done - sent)
        if record is not None:
            record.append((key, due, sent, done, status))

    start = time.monotonic() + 0.05
    in_flight = []
    behind = 0.0
    for i in range(count):
        due = start + i / rate
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        else:
            behind = max(behind, now - due)
        key, request = requests[(cursor + i) % len(requests)]
        in_flight.append(asyncio.create_task(one(due, key, request)))
    sent_by = time.monotonic()
    await asyncio.wait(in_flight, timeout=STEP_TIMEOUT_SECONDS)
    finished = time.monotonic()
    unanswered = sum(1 for task in in_flight if not task.done())
    for task in in_flight:
        task.cancel()
    ok = sum(n for status, n in statuses.items() if status.startswith("2"))
    latencies.sort()
    service.sort()

    def pct(values: list[float], p: float) -> float | None:
        return values[min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))] if values else None

    return {
        "rate": rate, "count": count, "ok": ok, "statuses": statuses, "errors": len(errors) + unanswered,
        "error_samples": errors[:5], "unanswered": unanswered,
        "seconds": finished - start, "sending_seconds": sent_by - start, "client_behind_s": behind,
        "achieved_per_s": ok / (finished - start) if finished > start else 0.0,
        "p50_ms": (pct(latencies, 50) or 0) * 1e3, "p99_ms": (pct(latencies, 99) or 0) * 1e3,
        "max_ms": (latencies[-1] if latencies else 0) * 1e3,
        "service_p50_ms": (pct(service, 50) or 0) * 1e3, "service_p99_ms": (pct(service, 99) or 0) * 1e3,
        "connections": pool.most_open,
    }  # fmt: skip


async def run(options: argparse.Namespace, lines: list[dict]) -> dict:
    url = urlsplit(options.url)
    requests = build_requests(lines, url.hostname, url.port or 80, url.path)
    pool = Pool(url.hostname, url.port or 80, options.connections)
    record: list | None = [] if options.record else None
    steps, cursor = [], 0
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    for rate in (float(r) for r in options.rates.split(",")):
        step = await run_step(pool, requests, cursor, rate, options.seconds, record)
        cursor += step["count"]
        steps.append(step)
        print(json.dumps(step), flush=True)
        if options.stop_when_behind and (step["errors"] or step["achieved_per_s"] < 0.95 * rate):
            break
        await asyncio.sleep(options.pause)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    result = {"steps": steps, "client_cpu_s": cpu, "clock": "monotonic"}
    if record is not None:
        result["record"] = record
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--requests", required=True, help="JSON lines of pre-built requests")
    parser.add_argument("--rates", required=True, help="requests/s of each step, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each step")
    parser.add_argument("--connections", type=int, default=64, help="most keep-alive connections open at once")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between steps")
    parser.add_argument("--stop-when-behind", action="store_true", help="stop after the first step that fails")
    parser.add_argument("--record", action="store_true", help="keep every request's times in OUT")
    parser.add_argument("--out", required=True)
    options = parser.parse_args()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # uvloop comes with uvicorn[standard]; plain asyncio works, a little slower
        runner = asyncio.run
    with open(options.requests) as file:
        lines = [json.loads(line) for line in file if line.strip()]
    started = time.monotonic()
    result = runner(run(options, lines))
    result["wall_s"] = time.monotonic() - started
    with open(options.out, "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main()
