"""The run command end to end, as a new user meets it.

`python -m contactcenter.launcher run` (what ./switchboard run executes) is started for real, with
DATABASE_URL and REDIS_URL removed so it starts embedded PostgreSQL and Redis in a temporary state
folder. A demo agent signs in through the real login form; Ctrl-C must stop every process it
started; a second run must reuse the data of the first. No `db` fixture: it runs its own engines.
"""

import contextlib
import http.cookiejar
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

from contactcenter.demo import DEMO_PASSWORD
from contactcenter.launcher import die_with_parent

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 180
STOP_TIMEOUT_SECONDS = 30

pytestmark = pytest.mark.slow


def _vanished():
    return contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _opener(*handlers) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), *handlers)


def _status(url: str) -> int | None:
    try:
        with _opener().open(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


class Launch:
    """One run of the launcher in its own session, its output going to a file.

    Remembers every process it saw the launcher start, so the test can tell afterwards whether any
    of them survived, and can kill them all should an assertion fail half-way.
    """

    def __init__(self, state: Path, port: int, log_path: Path):
        self.state = state
        self.base_url = f"http://127.0.0.1:{port}/"
        self.log_path = log_path
        environment = {
            name: value
            for name, value in os.environ.items()
            if name not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "MEDIA_ROOT")
        }
        environment.update(SWITCHBOARD_STATE_DIR=str(state), HOST="127.0.0.1", PORT=str(port))
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "contactcenter.launcher", "run"],
                cwd=REPO_ROOT,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # should pytest itself be killed outright
            )
        self.seen: set[psutil.Process] = set()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _remember_descendants(self) -> None:
        try:
            self.seen.update(psutil.Process(self.process.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            pass

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            code = self.process.poll()
            assert code is None, f"the launcher exited with {code} before it was ready:\n{self.output()}"
            self._remember_descendants()
            if _status(self.base_url + "readyz") == 200:
                self._remember_descendants()
                return
            time.sleep(1)
        pytest.fail(f"/readyz did not answer 200 within {READY_TIMEOUT_SECONDS} s:\n{self.output()}")

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal delivers it to the launcher; return its exit code."""
        self._remember_descendants()
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the launcher did not exit within {STOP_TIMEOUT_SECONDS} s of Ctrl-C:\n{self.output()}")

    def leftovers(self) -> list[psutil.Process]:
        """Processes of ours still running: any the launcher started, and any (with their children)
        whose command line names the state folder — the embedded PostgreSQL, which pg_ctl detaches."""
        found = {proc for proc in self.seen if proc.is_running()}
        for proc in psutil.process_iter(["cmdline"]):
            if proc.pid != os.getpid() and any(str(self.state) in part for part in proc.info["cmdline"] or ()):
                found.add(proc)
                with _vanished():
                    found.update(proc.children(recursive=True))
        alive = []
        for proc in found:
            with _vanished():
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:  # a zombie has already exited
                    alive.append(proc)
        return alive

    def kill_everything(self) -> None:
        """Clean-up when a test failed half-way: nothing of ours may outlive the test run."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        leftovers = self.leftovers()
        for proc in leftovers:
            with _vanished():
                proc.terminate()
        _, still_alive = psutil.wait_procs(leftovers, timeout=5)
        for proc in still_alive:
            with _vanished():
                proc.kill()


def sign_in(base_url: str, username: str, password: str) -> tuple[str, str]:
    """Sign in through the real login form; return the URL landed on and its page."""
    cookies = http.cookiejar.CookieJar()
    browser = _opener(urllib.request.HTTPCookieProcessor(cookies))
    with browser.open(base_url + "accounts/login/", timeout=10) as response:
        assert response.status == 200
    csrf_token = next(cookie.value for cookie in cookies if cookie.name == "csrftoken")
    form = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": csrf_token})
    with browser.open(base_url + "accounts/login/", data=form.encode(), timeout=10) as response:
        return response.geturl(), response.read().decode()


@pytest.fixture
def state():
    """A state folder outside pytest's temp root: as root, the embedded PostgreSQL runs as an OS user
    of its own, who must be able to traverse every folder above its data, and pytest makes its temp
    root private (0700) again whenever any pytest session starts."""
    folder = Path(tempfile.mkdtemp(prefix="switchboard-run-test-"))
    yield folder / "state"
    shutil.rmtree(folder, ignore_errors=True)


def test_run_serves_the_demo_stops_on_ctrl_c_and_reuses_its_data(state, tmp_path):
    port = _free_port()

    first = Launch(state, port, tmp_path / "first-run.log")
    try:
        first.wait_until_ready()
        landed_on, page = sign_in(first.base_url, "acme-agent1", DEMO_PASSWORD)
        assert landed_on == first.base_url, page
        assert "Acme Support" in page
        assert first.interrupt() == 0, first.output()
        assert first.leftovers() == [], first.output()
    finally:
        first.kill_everything()
    assert "Creating embedded PostgreSQL" in first.output()
    assert "created tenant acme" in first.output()
    secret_key = (state / "secret_key").read_text()
    assert (state / "secret_key").stat().st_mode & 0o777 == 0o600

    second = Launch(state, port, tmp_path / "second-run.log")
    try:
        second.wait_until_ready()
        assert _status(second.base_url + "readyz") == 200
        assert second.interrupt() == 0, second.output()
        assert second.leftovers() == [], second.output()
    finally:
        second.kill_everything()
    assert "Starting embedded PostgreSQL" in second.output()  # not "Creating": no new initdb
    assert "demo data already present; nothing changed" in second.output()
    assert "No migrations to apply." in second.output()
    assert (state / "secret_key").read_text() == secret_key
