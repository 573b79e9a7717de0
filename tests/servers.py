"""Real product processes for tests: the ASGI server (uvicorn) and a Celery worker with beat.

They run as subprocesses against the test database, exactly as the run command starts them, so
tests that use them need `transactional_db` (rows must be committed to be seen). Each starts in its
own session and is stopped as a whole process group, Celery's pool included.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings

from contactcenter.launcher import die_with_parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_url_of_test_database() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    if db["HOST"].startswith("/"):
        return f"postgres://{auth}@/{db['NAME']}?host={db['HOST']}"
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}{port}/{db['NAME']}"


def product_environment(**extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url_of_test_database(), "DATABASE_CONN_MAX_AGE": "0", **extra}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


class ProductProcess:
    """One subprocess of the product, its output in a log file, stoppable as a process group."""

    def __init__(self, argv: list[str], log_path: Path, **env: str):
        self.argv, self.log_path, self.env = argv, log_path, env
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it until it stops
        self.process = subprocess.Popen(
            self.argv, env=product_environment(**self.env), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent,  # even a killed test run leaves none behind
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"{self.argv[2:5]} exited:\n{self.log()[-4000:]}")

    def signal_group(self, signum: int) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()


class AsgiServer(ProductProcess):
    """uvicorn serving contactcenter.asgi on a free port; can be killed and restarted mid-test."""

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [sys.executable, "-m", "uvicorn", "contactcenter.asgi:application", "--host", "127.0.0.1", "--port",
             str(self.port), "--lifespan", "off"],
            log_path,
        )  # fmt: skip

    def start(self, timeout: float = 30) -> None:
        super().start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"uvicorn did not answer within {timeout}s:\n{self.log()}")


class CeleryWorkerAndBeat:
    """A Celery worker and Celery beat, as the run command starts them, on the test database."""

    def __init__(self, directory: Path):
        python = sys.executable
        self.worker = ProductProcess(
            [python, "-m", "celery", "-A", "contactcenter", "worker", "-l", "INFO", "--concurrency", "2",
             "--without-gossip", "--without-mingle", "-n", f"test-{os.getpid()}@%h"],
            directory / "worker.log",
        )  # fmt: skip
        self.beat = ProductProcess(
            [python, "-m", "celery", "-A", "contactcenter", "beat", "-l", "INFO", "-s", str(directory / "beat-schedule")],
            directory / "beat.log",
        )

    def start(self, timeout: float = 60) -> None:
        self.worker.start()
        deadline = time.monotonic() + timeout
        while " ready." not in self.worker.log():
            self.worker.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker was not ready within {timeout}s:\n{self.worker.log()}")
            time.sleep(0.1)
        self.beat.start()

    def stop(self) -> None:
        self.beat.stop()
        self.worker.stop()
