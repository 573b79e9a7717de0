"""Simulated agents for the realtime drill: one member socket each, behaving as static/desktop/desktop.js.

What each agent does, as the page's script does:
- on every (re)connect it sends `{"resume": <last number>, "open": [its panes], "shown": {pane: newest
  message id}}`, and again every 10 s
  while the socket is open (never queued while it is closed);
- it keeps the number of the last push it saw (`data-desktop-seq`; a number of another epoch always
  counts as newer: the server redrew everything);
- after a close it reconnects with htmx's back-off (250 ms doubling, capped at 4 s, jittered; a failed
  handshake counts as a close);
- it keeps "the screen": for each open conversation, the message ids its history shows. A redrawn
  history (`id="conv-<id>-history"`, out of band) replaces them; an appended message
  (`hx-swap-oob="beforeend:#conv-<id>-history"`) adds one.

Starts with the number "0:0", which names no epoch: the first resume redraws the screen, as a page load
renders it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
from dataclasses import dataclass, field

HEARTBEAT_SECONDS = 10.0
MAX_RECONNECT_SECONDS = 4.0
SEQ = re.compile(r'data-desktop-seq="([^"]*)"')
HISTORY = re.compile(r'<div id="conv-([A-Za-z0-9_-]+)-history"[^>]*hx-swap-oob="true"')
APPEND = re.compile(r'<div hx-swap-oob="beforeend:#conv-([A-Za-z0-9_-]+)-history">')
MESSAGE_ID = re.compile(r'<article id="msg-([A-Za-z0-9_-]+)"')
OOB = re.compile(r'hx-swap-oob="')


def newer(last: str, seq: str) -> bool:
    """desktop.js `newer`: another epoch counts as newer (the server redrew everything)."""
    if not seq:
        return False
    if not last:
        return True
    a, b = last.split(":"), seq.split(":")
    if a[0] != b[0]:
        return True
    return int(b[1]) > int(a[1])


@dataclass
class SimulatedAgent:
    index: int
    session_key: str
    conversations: list[str]  # its open panes (public ids), the first one in front
    last_seq: str = "0:0"
    screen: dict[str, set[str]] = field(default_factory=dict)
    newest: dict[str, str] = field(default_factory=dict)  # the last message each history shows
    connected: bool = False
    connects: int = 0
    redraws: int = 0
    frames: int = 0
    resumes_sent: int = 0
    closes: dict[int, int] = field(default_factory=dict)
    socket: object = None

    def apply(self, text: str) -> None:
        """Apply one frame to the screen, as htmx and desktop.js would."""
        self.frames += 1
        for seq in SEQ.findall(text):
            if newer(self.last_seq, seq):
                self.last_seq = seq
        histories = list(HISTORY.finditer(text))
        if histories:
            self.redraws += 1
        for match in histories:
            conversation = match.group(1)
            if conversation not in self.screen:
                continue  # no such pane: htmx finds no target
            # The history block ends where the next out-of-band fragment begins (its messages are
            # rendered without hx-swap-oob).
            following = OOB.search(text, match.end())
            block = text[match.end() : following.start() if following else len(text)]
            shown = MESSAGE_ID.findall(block)
            self.screen[conversation] = set(shown)
            self.newest[conversation] = shown[-1] if shown else ""
        for match in APPEND.finditer(text):
            conversation = match.group(1)
            shown = self.screen.get(conversation)
            found = MESSAGE_ID.search(text, match.end())
            if shown is not None and found and found.group(1) not in shown:  # desktop.js drops one it shows
                shown.add(found.group(1))
                self.newest[conversation] = found.group(1)

    def resume_request(self) -> str:
        self.resumes_sent += 1
        shown = {c: self.newest.get(c, "") for c in self.conversations}
        return json.dumps({"resume": self.last_seq, "open": self.conversations, "shown": shown})


async def run_agent(agent: SimulatedAgent, url: str, origin: str, stop: asyncio.Event) -> None:
    """Keep the agent connected until `stop`, as desktop.js keeps its socket (see module docstring)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, WebSocketException

    agent.screen = {conversation: set() for conversation in agent.conversations}
    retries = 0
    rng = random.Random(agent.index)
    heartbeat = asyncio.create_task(_heartbeat(agent, rng.random() * HEARTBEAT_SECONDS))
    while not stop.is_set():
        code = 1006
        try:  # a browser waits long for the handshake: a short timeout would retry onto a busy server
            socket = await connect(
                url, additional_headers={"Origin": origin, "Cookie": f"sessionid={agent.session_key}"},
                ping_interval=None, open_timeout=60, max_queue=None, compression=None, max_size=None,
            )  # fmt: skip
        except (OSError, TimeoutError, WebSocketException):
            socket = None
        if socket is not None:
            retries = 0
            agent.connects += 1
            agent.connected, agent.socket = True, socket
            try:
                await socket.send(agent.resume_request())
                await socket.send(json.dumps({"viewing": agent.conversations[0], "typing": False}))
                async for message in socket:
                    agent.apply(message if isinstance(message, str) else message.decode())
            except ConnectionClosed:
                pass
            finally:
                agent.connected, agent.socket = False, None
                code = socket.close_code or 1006
                agent.closes[code] = agent.closes.get(code, 0) + 1
                with contextlib.suppress(Exception):
                    await socket.close()
        if stop.is_set():
            break
        if code in (1006, 1011, 1012, 1013):  # htmx's own reconnect, with its back-off
            delay = min(MAX_RECONNECT_SECONDS, 0.25 * 2**retries) * (0.5 + rng.random() / 2)
        else:  # desktop.js retries any other close itself
            delay = 0.5 + rng.random() * 1.5
        retries += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
    heartbeat.cancel()


async def _heartbeat(agent: SimulatedAgent, phase: float) -> None:
    """desktop.js: every 10 s from page load, on an open socket only, ask for anything missed and say
    what it views."""
    from websockets.exceptions import ConnectionClosed

    await asyncio.sleep(phase)
    while True:
        socket = agent.socket
        if socket is not None:
            with contextlib.suppress(ConnectionClosed):
                await socket.send(agent.resume_request())
                await socket.send(json.dumps({"viewing": agent.conversations[0], "typing": False}))
        await asyncio.sleep(HEARTBEAT_SECONDS)
