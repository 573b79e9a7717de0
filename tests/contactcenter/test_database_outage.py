"""PostgreSQL going away and coming back (issue 9), seen by a connection pool of the test's own.

The shared Django pool is left alone: these tests build their own DatabaseWrapper (own alias, so own
pool) with the project's pool settings, reaching PostgreSQL through a TCP doorway the test can shut
(every connection through it cut, new ones refused) and open again, as a restart looks to a client.
Nothing here terminates a backend of the test database. bench/drill_database.py stops the real server.
"""

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings
from django.db import connections

from contactcenter.health import check_postgres

pytestmark = pytest.mark.django_db


class Doorway:
    """A TCP forwarder on 127.0.0.1 to the test database's server, which can be shut and opened again
    on the same port."""

    def __init__(self, upstream: dict):
        host, port = upstream["HOST"] or "/var/run/postgresql", int(upstream["PORT"] or 5432)
        self._upstream = (
            (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}") if host.startswith("/") else (socket.AF_INET, (host, port))
        )
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self.port = 0
        self.open()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._start(self._accept, listener)

    def shut(self) -> None:
        """Refuse new connections and cut every open one, as PostgreSQL stopping does."""
        with self._lock:
            doomed, self._sockets = [*self._sockets, self._listener], []
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(5)

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # shut
            family, address = self._upstream
            server = socket.socket(family, socket.SOCK_STREAM)
            server.connect(address)
            with self._lock:
                self._sockets += [client, server]
            self._start(self._pump, client, server)
            self._start(self._pump, server, client)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def own_pool(*, host: str, port: int, max_size: int):
    """A Django connection with a pool of its own (the project's pool settings but `max_size`)."""
    default = connections["default"]
    options = {**default.settings_dict["OPTIONS"], "pool": {**settings.DATABASES["default"]["OPTIONS"]["pool"],
                                                            "max_size": max_size}}  # fmt: skip
    wrapper = type(default)({**default.settings_dict, "HOST": host, "PORT": str(port), "OPTIONS": options},
                            alias=f"outage-test-{port}")  # fmt: skip
    try:
        yield wrapper
    finally:
        wrapper.close_pool()  # stops the pool's worker threads and closes its connections


@pytest.fixture
def doorway():
    door = Doorway(connections["default"].settings_dict)
    yield door
    door.shut()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens on it once the probe is closed


def test_readiness_says_postgres_is_down_within_two_seconds():
    with own_pool(host="127.0.0.1", port=closed_port(), max_size=2) as unreachable:
        started = time.monotonic()
        problem = check_postgres(unreachable)
        took = time.monotonic() - started
    assert problem is not None and "PoolTimeout" in problem
    assert took < 2.0  # the check alone; /readyz adds the Redis ping (milliseconds when Redis is up)


def test_readiness_is_ok_through_a_pool_of_its_own(doorway):
    with own_pool(host="127.0.0.1", port=doorway.port, max_size=1) as reachable:
        assert check_postgres(reachable) is None


def test_the_pool_serves_again_at_once_when_postgresql_comes_back(doorway):
    # One connection slot, as when all of a busy pool's connections were cut at once. With psycopg_pool's
    # default reconnect_timeout (5 minutes), the slot's background retries back off (1 s, then 2 s, then
    # 4 s): back after 3.5 s, the next retry would come only at 7 s.
    with own_pool(host="127.0.0.1", port=doorway.port, max_size=1) as database:
        assert check_postgres(database) is None
        doorway.shut()
        assert check_postgres(database) is not None  # the cut connection fails and goes back to the pool
        time.sleep(3.5)
        doorway.open()
        started = time.monotonic()
        with database.pool.connection(timeout=10) as raw:
            assert raw.execute("SELECT 1").fetchone() == (1,)
        assert time.monotonic() - started < 1.5


def test_the_default_pool_leaves_room_for_the_other_processes():
    # Read in a fresh interpreter: this process's settings carry the test command's 100 (50-thread tests).
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_POOL_MAX_SIZE"}
    script = "from django.conf import settings as s; print(s.DATABASE_POOL_MAX_SIZE, s.DATABASES['default']['OPTIONS']['pool'])"
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {script}"],
        env={**environment, "DJANGO_SETTINGS_MODULE": "contactcenter.settings"}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    size, pool = result.stdout.split(" ", 1)
    assert int(size) == 20
    assert "'max_size': 20" in pool and "'reconnect_timeout': 2.0" in pool
