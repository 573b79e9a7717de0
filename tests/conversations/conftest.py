"""Factories and fixtures for conversations (also imported by tests/tasks/conftest.py).

Factories run inside the current tenant (use the `in_acme` fixture or `tenant_context`). They go
through the services, except where a test needs a row in a given state: then columns are set
directly, which is test setup, not something the application does.
"""

import asyncio
import threading
from types import SimpleNamespace

import pytest
from channels.layers import get_channel_layer
from django.db.models import Max

from contactcenter.tenancy import current_tenant_id, dangerously_all_tenants
from conversations.models import (
    Activity,
    Attachment,
    Contact,
    ContactIdentity,
    Conversation,
    InternalNote,
    Message,
)
from conversations.services import (
    contact_find_or_create,
    conversation_assign,
    conversation_start,
    message_append_inbound,
)
from tasks.models import Disposition, Queue, Task, TaskKind
from tasks.services import dispositions_ensure_defaults, task_create


def make_contact(phone: str = "+15551230001", name: str = "Zoë Customer") -> Contact:
    contact, _ = contact_find_or_create(kind="phone", value=phone, name=name)
    return contact


def make_conversation(contact: Contact | None = None, channel: str = "sms", **columns) -> Conversation:
    conversation = conversation_start(contact=contact or make_contact(), channel=channel)
    if columns:
        Conversation.objects.filter(pk=conversation.pk).update(**columns)
        conversation.refresh_from_db()
    return conversation


def make_queue(name: str = "Support", **columns) -> Queue:
    return Queue.objects.create(tenant_id=current_tenant_id(), name=name, **columns)


def make_task(conversation: Conversation | None = None, queue: Queue | None = None, **columns) -> Task:
    kind = TaskKind.CONVERSATION if conversation is not None else TaskKind.INTERNAL
    task = task_create(kind=kind, title="Work", conversation=conversation, queue=queue)
    if columns:
        Task.objects.filter(pk=task.pk).update(**columns)
        task.refresh_from_db()
    return task


def add_messages(conversation: Conversation, count: int, prefix: str = "m") -> list[Message]:
    return [
        message_append_inbound(conversation=conversation, body=f"{prefix}{i} ✓", provider_message_id=f"{prefix}-{i}")[0]
        for i in range(count)
    ]


def activity_mark() -> int:
    """The last activity id so far; `activity_after(mark)` lists what a step then wrote."""
    with dangerously_all_tenants():
        return Activity.objects.aggregate(last=Max("pk"))["last"] or 0


def activity_after(mark: int) -> list[tuple[str, str, str]]:
    with dangerously_all_tenants():
        rows = Activity.objects.filter(pk__gt=mark).order_by("pk")
        return list(rows.values_list("kind", "old_value", "new_value"))


SNAPSHOT_MODELS = (Contact, ContactIdentity, Conversation, Message, Attachment, InternalNote, Activity, Task)


def snapshot() -> dict[str, list[dict]]:
    """Every row of the domain tables, every column: equal snapshots mean nothing changed."""
    with dangerously_all_tenants():
        return {model.__name__: list(model.objects.order_by("pk").values()) for model in SNAPSHOT_MODELS}


def race(*actions, timeout: float = 30) -> list:
    """Run `actions` in threads released together by a barrier; each result, or the exception raised.

    Each thread opens its own database connection before the barrier (so they truly race on the
    database, not on connecting) and closes it at the end.
    """
    barrier = threading.Barrier(len(actions))
    results: list = [None] * len(actions)

    def run(index, action):
        from django.db import connection as thread_connection

        try:
            thread_connection.ensure_connection()
            barrier.wait(timeout)
            results[index] = action()
        except Exception as error:  # noqa: BLE001 - the caller asserts on it
            results[index] = error
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=run, args=(i, action)) for i, action in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a racing thread hung"
    return results


class GroupListener:
    """Joins a realtime group on the real channel layer and reads what is pushed to it.

    channels-redis binds its receive buffers to an event loop, so the listener keeps one loop.
    """

    def __init__(self, group: str):
        self.group = group
        self.layer = get_channel_layer()
        self.loop = asyncio.new_event_loop()
        self.channel = self.loop.run_until_complete(self.layer.new_channel())
        self.loop.run_until_complete(self.layer.group_add(group, self.channel))

    def receive(self, timeout: float = 3) -> dict:
        return self.loop.run_until_complete(asyncio.wait_for(self.layer.receive(self.channel), timeout))

    def receive_all(self, timeout: float = 0.5) -> list[dict]:
        messages = []
        while True:
            try:
                messages.append(self.receive(timeout))
            except TimeoutError:
                return messages

    def close(self) -> None:
        self.loop.run_until_complete(self.layer.group_discard(self.group, self.channel))
        self.loop.run_until_complete(self.layer.close_pools())
        self.loop.close()


@pytest.fixture
def listen():
    """`listen(group)` → a GroupListener, closed at the end of the test."""
    listeners = []

    def start(group: str) -> GroupListener:
        listeners.append(GroupListener(group))
        return listeners[-1]

    yield start
    for listener in listeners:
        listener.close()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The fixtures create several users per test; the production hasher takes half a second each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def support(in_acme) -> Queue:
    """acme's Support queue, which requires a disposition to complete conversation tasks."""
    return make_queue("Support", disposition_required=True)


@pytest.fixture
def dispositions(in_acme) -> dict[str, Disposition]:
    dispositions_ensure_defaults(tenant=in_acme)
    return {disposition.name: disposition for disposition in Disposition.objects.all()}


@pytest.fixture
def live(in_acme, acme_agent, support) -> Conversation:
    """A conversation with one customer message, handled by acme_agent (conversation and task assigned)."""
    conversation = make_conversation()
    message_append_inbound(conversation=conversation, body="My order never arrived 📦", provider_message_id="SM-live-1")
    make_task(conversation, support)
    conversation_assign(conversation=conversation, agent=acme_agent, actor=acme_agent)
    conversation.refresh_from_db()
    return conversation


@pytest.fixture
def live_task(live) -> Task:
    return Task.objects.get(conversation=live, kind=TaskKind.CONVERSATION)


@pytest.fixture
def world(in_acme, acme_agent, acme_agent2, acme_supervisor, support, dispositions, live, live_task):
    """Everything the per-operation tests need, in one namespace."""
    duplicate = make_conversation()
    add_messages(duplicate, 2, prefix="dup")
    return SimpleNamespace(
        tenant=in_acme, agent=acme_agent, agent2=acme_agent2, supervisor=acme_supervisor, support=support,
        dispositions=dispositions, live=live, task=live_task, duplicate=duplicate,
        billing=make_queue("Billing", channels=["sms", "email"]),
    )  # fmt: skip

