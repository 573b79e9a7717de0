"""Many agents' websockets in one client process, and a bare websocket server for the limit.

Client (`python -m bench.ws_agents --url ws://host:port/ws/member/ --sessions FILE --out OUT`): opens
one socket per session key in FILE (as the agent's browser would: `sessionid` cookie, an allowed
Origin), at most --connect-concurrency handshakes at a time, and keeps every frame it receives with its
arrival time (time.monotonic(), the same clock in every process of this machine). It prints
`READY <connected> <failed> <seconds>` once every socket is open (or refused), then waits: a line
`DONE` on its standard input makes it write OUT ({"connected", "failed", "frames": [[t, index, text]]})
and exit. Socket i is the i-th session of FILE.

Bare server (`python -m bench.ws_agents --serve PORT`): the `websockets` library alone, holding every
socket it is given; a socket on /control that sends a text makes it send that text to every other
socket. What any Python websocket server must pay to hold sockets and fan a message out, without
Django, Channels or Redis: the limit next to the product's figures (bench.websocket_scale).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time


async def hold_sockets(options: argparse.Namespace, keys: list[str]) -> dict:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, WebSocketException

    frames: list[tuple[float, int, str]] = []
    sockets: list = []
    failures: list[str] = []
    gate = asyncio.Semaphore(options.connect_concurrency)
    opened = asyncio.Event()
    remaining = [len(keys)]

    async def agent(index: int, key: str) -> None:
        headers = {"Origin": options.origin}
        if key != "-":
            headers["Cookie"] = f"sessionid={key}"
        try:
            async with gate:
                socket = await connect(options.url, additional_headers=headers, ping_interval=None,
                                       open_timeout=60, max_queue=None, compression=None)  # fmt: skip
            sockets.append(socket)
        except (OSError, TimeoutError, WebSocketException) as error:  # refused handshakes are counted, not fatal
            failures.append(f"{type(error).__name__}: {error}")
            return
        finally:
            remaining[0] -= 1
            if not remaining[0]:
                opened.set()
        with contextlib.suppress(ConnectionClosed):  # closed at the end, or by the server: what arrived is kept
            async for message in socket:
                frames.append((time.monotonic(), index, message if isinstance(message, str) else message.decode()))

    started = time.monotonic()
    tasks = [asyncio.create_task(agent(i, key)) for i, key in enumerate(keys)]
    if not keys:
        opened.set()
    await opened.wait()
    print(f"READY {len(sockets)} {len(failures)} {time.monotonic() - started:.2f}", flush=True)
    loop = asyncio.get_running_loop()
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip() not in ("DONE", ""):
        pass
    for socket in sockets:
        socket.transport.abort()
    for task in tasks:
        task.cancel()
    return {"connected": len(sockets), "failed": len(failures), "failure_samples": failures[:5], "frames": frames}


async def serve_bare(port: int) -> None:
    from websockets.asyncio.server import broadcast, serve

    held: set = set()

    async def handler(socket) -> None:
        if socket.request.path == "/control":
            async for text in socket:
                broadcast(held, text)
            return
        held.add(socket)
        try:
            await socket.wait_closed()
        finally:
            held.discard(socket)

    async with serve(handler, "127.0.0.1", port, ping_interval=None, compression=None, max_queue=None):
        print("LISTENING", flush=True)
        await asyncio.Future()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="ws:// URL of the member socket")
    parser.add_argument("--sessions", help="session keys, one a line ('-': no cookie)")
    parser.add_argument("--origin", default="http://127.0.0.1")
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--serve", type=int, help="run the bare server on this port instead")
    parser.add_argument("--out")
    options = parser.parse_args()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    if options.serve:
        runner(serve_bare(options.serve))
        return
    with open(options.sessions) as file:
        keys = [line.strip() for line in file if line.strip()]
    result = runner(hold_sockets(options, keys))
    with open(options.out, "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main()


class AgentSockets:
    """The parent's side of the client: start it, wait until every socket is open, collect the frames.

    Used by the benchmarks in the stage's process: `AgentSockets(stage, url, keys)`, `.frames()` at the end.
    """

    def __init__(self, stage, url: str, session_keys: list[str], *, origin: str = "http://127.0.0.1"):
        import subprocess

        from contactcenter.launcher import die_with_parent

        sessions = stage.workdir / f"sessions-{len(session_keys)}-{time.monotonic_ns()}.txt"
        sessions.write_text("\n".join(session_keys) + "\n")
        self.out = sessions.with_suffix(".json")
        self.log = sessions.with_suffix(".log")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.ws_agents", "--url", url, "--sessions", str(sessions), "--origin", origin,
             "--out", str(self.out)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log, "wb"), text=True,  # noqa: SIM115
            env=stage.product_env(), start_new_session=True, preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl
        )  # fmt: skip
        line = self.process.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"the websocket client did not get ready:\n{self.log.read_text()[-3000:]}")
        self.connected, self.failed, self.connect_seconds = int(line[1]), int(line[2]), float(line[3])

    def frames(self) -> dict:
        """Close every socket; {"connected", "failed", "frames": [[arrival, socket index, text], ...]}."""
        self.process.stdin.write("DONE\n")
        self.process.stdin.flush()
        self.process.wait(300)
        return json.loads(self.out.read_text())
