"""Signed inbound SMS for the realtime drill: customers writing at a steady rate, through the webhook.

Each message is a Twilio inbound SMS (signed for the web server's URL) from one of the customers, sent
open loop at `rate` per second. A message the server does not take (connection refused while it is
down, any non-2xx answer) is sent again with the same MessageSid every 0.5 s until it is taken, as a
gateway that retries would: the product stores a MessageSid once, so a retry that was in fact stored
must not show up twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from dataclasses import dataclass, field

RETRY_SECONDS = 0.5


@dataclass
class Customer:
    phone: str
    tenant: object  # bench.fixtures.BenchTenant


@dataclass
class Traffic:
    customers: list[Customer]
    base_url: str
    rate: float
    sent: dict[str, float] = field(default_factory=dict)  # MessageSid -> first sent (monotonic)
    taken: dict[str, float] = field(default_factory=dict)  # MessageSid -> answered 2xx (monotonic)
    attempts: int = 0
    refused: int = 0  # attempts not taken (no answer, or not 2xx)
    statuses: dict[str, int] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        """Send until `stop`, then wait for every message in flight to be taken (or 30 s)."""
        import aiohttp

        rng = random.Random(9)
        pending: set[asyncio.Task] = set()
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=32, force_close=False),
            timeout=aiohttp.ClientTimeout(total=10),
        ) as session:
            started, n = time.monotonic(), 0
            while not stop.is_set():
                due = started + n / self.rate
                if due > time.monotonic():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), due - time.monotonic())
                    continue
                task = asyncio.create_task(self._deliver(session, rng.choice(self.customers), n))
                pending.add(task)
                task.add_done_callback(pending.discard)
                n += 1
            if pending:
                await asyncio.wait(pending, timeout=30)
            for task in pending:
                task.cancel()

    async def _deliver(self, session, customer: Customer, n: int) -> None:
        import aiohttp

        from bench.fixtures import MESSAGING_PATH, signed_sms

        sid = "SM" + secrets.token_hex(16)
        item = signed_sms(customer.tenant, base_url=self.base_url, sender=customer.phone, body=f"drill {n}", sid=sid)
        headers = {**item["headers"], "Content-Type": "application/x-www-form-urlencoded"}
        self.sent[sid] = time.monotonic()
        while True:
            self.attempts += 1
            status = "no answer"
            try:
                async with session.post(self.base_url + MESSAGING_PATH, data=item["body"], headers=headers) as answer:
                    await answer.read()
                    status = str(answer.status)
                    if 200 <= answer.status < 300:
                        self.taken[sid] = time.monotonic()
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            self.refused += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            await asyncio.sleep(RETRY_SECONDS)
