"""What every benchmark stands on: its own database, the product's processes, figures with their limits.

A benchmark is one function, `measure(stage, options) -> list[Figure]`, handed to `main()`:

- `main` gives it a `Stage`: a database of its own (`sb_bench_<name>_<run id>` on the server DATABASE_URL names,
  created, migrated, dropped at the end), Redis keys under a prefix of its own (deleted at the end), a
  Celery queue of its own, production settings (DEBUG off), and the product's processes started exactly
  as `./switchboard run` starts them (`contactcenter.launcher.run_processes`), on request;
- the function seeds, measures, and returns `Figure`s: each a value printed next to a limit measured in
  the same run on the same machine, their ratio, and the issue's target with a verdict;
- `main` prints them with a line describing the machine, and appends them to $BENCH_SUMMARY (a JSON
  lines file) when the runner (`python -m bench`) asks for a summary.

Run a benchmark through `./switchboard bench NAME` (which finds PostgreSQL and Redis as the test command
does) or `.venv/bin/python -m bench.NAME` with DATABASE_URL and REDIS_URL set.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python bench/x.py`
    sys.path.insert(0, str(REPO_ROOT))

from contactcenter.launcher import die_with_parent, run_processes  # imports only the standard library

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # our own servers: never via a proxy


# --- figures ----------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured value, next to the limit measured in the same run and the issue's target.

    `ratio` is value / limit. A target is met when the value is at least it (`higher_is_better`) or at
    most it; `ratio_target` is a target on the ratio instead (at least).
    """

    what: str
    value: float
    unit: str
    limit: float | None = None
    limit_what: str = ""
    target: float | None = None
    higher_is_better: bool = True
    ratio_target: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.value / self.limit if self.limit else None

    @property
    def met(self) -> bool | None:
        verdicts = []
        if self.target is not None:
            verdicts.append(self.value >= self.target if self.higher_is_better else self.value <= self.target)
        if self.ratio_target is not None and self.ratio is not None:
            verdicts.append(self.ratio >= self.ratio_target)
        return all(verdicts) if verdicts else None

    def line(self) -> str:
        text = f"  {self.what:<44} {number(self.value):>10} {self.unit:<9}"
        if self.ratio is not None:
            text += f" | limit {number(self.limit):>9} {self.unit:<9} {self.ratio:6.2f}x  ({self.limit_what})"
        targets = []
        if self.target is not None:
            targets.append(f"{'>=' if self.higher_is_better else '<='} {number(self.target)} {self.unit}")
        if self.ratio_target is not None:
            targets.append(f">= {self.ratio_target:.0%} of the limit")
        if targets:
            text += f"\n  {'':<44} target {' and '.join(targets)}: {'met' if self.met else 'MISSED'}"
        if self.note:
            text += f"\n  {'':<44} {self.note}"
        return text


def number(value: float) -> str:
    if math.isnan(value):  # nothing was measured
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile by nearest rank (NaN for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def machine_description() -> str:
    """One line: CPU model and count, memory, Python, load average (other work on the box shows there)."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} x {model}{memory}; {platform.system()} {platform.release()}; "
        f"{platform.python_implementation()} {platform.python_version()}; load average {load}"
    )


# --- the product's processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Process:
    """A product process (or a load client) in its own session, its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str]):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.log_file = open(log_path, "ab")  # noqa: SIM115 - the child writes to it until it stops
        self.process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, before exec
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with code {self.process.returncode}:\n{self.log()[-4000:]}")

    def stop(self, grace: float = 10) -> None:
        """SIGTERM the whole process group (uvicorn's workers, Celery's pool), then SIGKILL what is left."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stragglers of the group, if any
        self.log_file.close()


class WebServer(Process):
    """The web process of `./switchboard run` (uvicorn serving contactcenter.asgi), on a free port."""

    def __init__(self, stage: Stage, extra_args: Sequence[str] = (), port: int | None = None, **env: str):
        self.port = port or free_port()  # a restart drill brings a web server back on the same port
        self.url = f"http://127.0.0.1:{self.port}"
        argv = dict(run_processes(state=stage.workdir, host="127.0.0.1", port=self.port))["web"]
        super().__init__("web", [*argv, *extra_args], stage.workdir / f"web-{self.port}.log", stage.product_env(**env))

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError), DIRECT.open(f"{self.url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the web server did not answer /readyz within {timeout} s:\n{self.log()[-4000:]}")


# --- the stage --------------------------------------------------------------------------------------


class Stage:
    """One benchmark's world (see the module docstring). Use as a context manager; `main` does."""

    def __init__(self, name: str):
        self.name = name
        self.run_id = secrets.token_hex(3)
        self.prefix = f"sb-bench-{self.run_id}"
        self.database = f"sb_bench_{re.sub(r'\W', '_', name)}_{self.run_id}"  # two runs at once never share one
        self.workdir = Path(tempfile.mkdtemp(prefix=f"sb-bench-{name}-"))
        self.processes: list[Process] = []
        self.server_url = _required("DATABASE_URL")
        self.redis_url = _required("REDIS_URL")
        self.database_url = _with_database(self.server_url, self.database)
        self.celery_queue = os.environ.get("CELERY_QUEUE") or self.prefix

    # The environment of this process (set before Django is configured) and of every product process.
    def product_env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "contactcenter.settings",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": os.environ.get("SECRET_KEY") or self._secret_key,
            "DEBUG": "false",
            "CACHE_KEY_PREFIX": self.prefix,
            "CHANNEL_LAYER_PREFIX": self.prefix,
            "CELERY_QUEUE": self.celery_queue,
            "MEDIA_ROOT": str(self.workdir / "media"),
            "PYTHONUNBUFFERED": "1",
            "DEMO_TRAFFIC": "0",
            **extra,
        }
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        return env

    @property
    def _secret_key(self) -> str:
        if not hasattr(self, "_generated_key"):
            self._generated_key = secrets.token_urlsafe(48)
        return self._generated_key

    def __enter__(self) -> Self:
        _raise_open_files_limit()
        os.environ.update(self.product_env())
        self._forget_redis_keys()
        _recreate_database(self.server_url, self.database)
        import django

        django.setup()
        from django.core.management import call_command

        started = time.monotonic()
        call_command("migrate", verbosity=0)
        say(f"database {self.database} created and migrated in {time.monotonic() - started:.1f} s")
        return self

    def __exit__(self, *exc_info) -> None:
        for process in reversed(self.processes):
            process.stop()
        from django.db import connections

        connections.close_all()
        if os.environ.get("BENCH_KEEP") != "1":
            _drop_database(self.server_url, self.database)
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            say(f"kept database {self.database} and {self.workdir} (BENCH_KEEP=1)")
        self._forget_redis_keys()

    # Processes.
    def start_web(self, extra_args: Sequence[str] = (), port: int | None = None, **env: str) -> WebServer:
        """Start a web process (extra uvicorn arguments and environment variables as given) and wait
        until it is ready."""
        web = WebServer(self, extra_args, port, **env)
        self.processes.append(web)
        web.wait_ready()
        return web

    def start_worker_and_beat(self, timeout: float = 90, **env: str) -> tuple[Process, Process]:
        worker = self.start_worker(timeout=timeout, **env)
        beat_argv = dict(run_processes(state=self.workdir, host="127.0.0.1", port=0))["beat"]
        return worker, self.start_process("beat", beat_argv, **env)

    def start_worker(self, name: str = "worker", timeout: float = 90, **env: str) -> Process:
        """A Celery worker as `./switchboard run` starts it (environment variables as given), once it
        says it is ready. A drill that replaces a killed worker gives each a name of its own (its
        Celery node name and log file)."""
        argv = dict(run_processes(state=self.workdir, host="127.0.0.1", port=0))["worker"]
        worker = self.start_process(
            name, [*argv, "-n", f"{self.prefix}-{name}@%h", "--without-gossip", "--without-mingle"], **env
        )
        deadline = time.monotonic() + timeout
        while " ready." not in worker.log():
            worker.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker was not ready within {timeout} s:\n{worker.log()[-4000:]}")
            time.sleep(0.1)
        return worker

    def start_process(self, name: str, argv: list[str], **env: str) -> Process:
        process = Process(name, argv, self.workdir / f"{name}-{len(self.processes)}.log", self.product_env(**env))
        self.processes.append(process)
        return process

    def stop(self, process: Process) -> None:
        process.stop()
        self.processes.remove(process)

    def run_client(self, module: str, args: Iterable[str], *, timeout: float = 3600) -> dict:
        """Run a load client (`python -m bench.<module> ARGS`) in a process of its own; return the JSON
        it prints last."""
        out = self.workdir / f"{module.rsplit('.', 1)[-1]}-{secrets.token_hex(2)}.json"
        argv = [sys.executable, "-m", module, *args, "--out", str(out)]
        client = Process(module, argv, out.with_suffix(".log"), self.product_env())
        try:
            client.process.wait(timeout)
        except subprocess.TimeoutExpired:
            client.stop()
            raise RuntimeError(f"{module} did not finish within {timeout} s:\n{client.log()[-4000:]}") from None
        client.stop()
        if client.process.returncode != 0 or not out.exists():
            raise RuntimeError(f"{module} failed (exit code {client.process.returncode}):\n{client.log()[-4000:]}")
        return json.loads(out.read_text())

    def _forget_redis_keys(self) -> None:
        """Delete this run's cache entries and channel groups, and its Celery queue when it is a bench one."""
        import redis

        patterns = [f"*{self.prefix}*"]
        if "bench" in self.celery_queue:
            patterns.append(f"*{self.celery_queue}*")
        with redis.Redis.from_url(self.redis_url, socket_timeout=10) as client:
            for pattern in patterns:
                keys = list(client.scan_iter(match=pattern, count=1000))
                for start in range(0, len(keys), 500):
                    client.delete(*keys[start : start + 500])


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"bench: {name} is not set; run `./switchboard bench`, which finds PostgreSQL and Redis")
    return value


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _recreate_database(server_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(_with_database(server_url, "postgres"), autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop_database(server_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(_with_database(server_url, "postgres"), autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def all_tenants_cursor():
    """A cursor on the stage's Django connection that sees every tenant's rows, for set-up, resets
    and read-backs in plain SQL (row-level security filters tenant tables otherwise)."""
    from django.db import connection

    from contactcenter.tenancy import dangerously_all_tenants

    with dangerously_all_tenants(), connection.cursor() as cursor:  # the benchmark's own bookkeeping
        yield cursor


def until_inbound_stored(timeout: float, *, offered: bool = False) -> tuple[float, int]:
    """Poll until no message the webhook logged waits for the worker to store it (the webhook answers
    before; channels_inbound.twilio.intake) and, with `offered`, no task waits for routing to offer
    it. Returns (seconds waited, how many still waited at the end: 0 unless `timeout` passed)."""
    sql = "SELECT count(*) FROM channels_inbound_inboundevent WHERE outcome = 'received'"
    if offered:
        sql = f"SELECT ({sql}) + (SELECT count(*) FROM tasks_task WHERE status = 'pending')"
    started, waiting = time.monotonic(), None
    while time.monotonic() - started < timeout:
        with all_tenants_cursor() as cursor:
            cursor.execute(sql)
            (waiting,) = cursor.fetchone()
        if not waiting:
            break
        time.sleep(0.2)
    return time.monotonic() - started, waiting or 0


def plain_conninfo() -> str:
    """A libpq connection string for the stage's database, for limits measured with plain psycopg."""
    from django.db import connection
    from psycopg.conninfo import make_conninfo

    params = connection.get_connection_params()
    return make_conninfo(
        **{k: v for k, v in params.items() if k in ("dbname", "user", "password", "host", "port") and v}
    )


def _raise_open_files_limit() -> None:
    """Thousands of sockets need thousands of file descriptors; children inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def open_files_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def say(text: str) -> None:
    print(f"  . {text}", flush=True)


# --- entry point ------------------------------------------------------------------------------------

Measure = Callable[[Stage, argparse.Namespace], list[Figure]]


def main(
    name: str,
    title: str,
    measure: Measure,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    *,
    fail_on_missed: bool = False,
) -> int:
    """Parse the benchmark's options, run `measure` on a fresh Stage, print and record its figures.

    Benchmarks report a missed target and exit 0 (the figure is the result); a fault drill passes
    `fail_on_missed`, so that anything lost or duplicated makes its exit code 1.
    """
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=title)
    parser.add_argument("--quick", action="store_true", help="small sizes and short steps: a smoke run, not figures")
    if add_arguments:
        add_arguments(parser)
    options = parser.parse_args()
    print(f"\n=== {title} ===\nmachine: {machine_description()}", flush=True)
    started = time.monotonic()
    with Stage(name) as stage:
        figures = measure(stage, options)
    print(
        f"\n--- {title}: figures (took {time.monotonic() - started:.0f} s; load average now "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}) ---"
    )
    for figure in figures:
        print(figure.line())
    summary = os.environ.get("BENCH_SUMMARY")
    if summary:
        with open(summary, "a") as file:
            for figure in figures:
                file.write(
                    json.dumps({"benchmark": name, **asdict(figure), "ratio": figure.ratio, "met": figure.met}) + "\n"
                )
    return 1 if fail_on_missed and any(figure.met is False for figure in figures) else 0
