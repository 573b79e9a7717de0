"""Seed data for the benchmarks, built in bulk (bulk_create, one statement per table and batch).

Thousands of agents through the services would take minutes (each writes its status period, pushes,
hashes a password); the benchmarks measure the product, not their own set-up, so rows are written
directly, as the services would leave them. Call after Django is set up (bench.harness.Stage does it).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlencode

from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.backends.cached_db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone
from twilio.request_validator import RequestValidator

from channels_inbound.models import Channel, ChannelEndpoint, Provider
from contactcenter.middleware import SESSION_TENANT_KEY
from contactcenter.models import Membership, Role, Tenant
from contactcenter.tenancy import dangerously_all_tenants, tenant_context
from tasks.models import AgentState, AgentStatus, AgentStatusPeriod, Queue

MESSAGING_PATH = "/webhooks/twilio/messaging"
BATCH = 2000


@dataclass
class BenchTenant:
    tenant: Tenant
    queue: Queue
    endpoint: ChannelEndpoint
    number: str
    account_sid: str
    auth_token: str
    agents: list[Membership] = field(default_factory=list)


def tenants_with_sms(count: int, **queue_settings) -> list[BenchTenant]:
    """`count` tenants, each with one queue (taking every channel) and a Twilio SMS number on it."""
    made = []
    for n in range(count):
        tenant = Tenant.objects.create(name=f"Bench {n}", slug=f"bench-{n}")
        with tenant_context(tenant):
            queue = Queue.objects.create(tenant=tenant, name="Support", **queue_settings)
            number, sid, token = f"+1500{n:07d}", "AC" + f"{n:032x}", f"bench-token-{n}-{secrets.token_hex(8)}"
            endpoint = ChannelEndpoint(
                tenant=tenant, provider=Provider.TWILIO, channel=Channel.SMS, address=number, account_sid=sid,
                default_queue=queue,
            )  # fmt: skip
            endpoint.set_auth_token(token)
            endpoint.save()
        made.append(BenchTenant(tenant, queue, endpoint, number, sid, token))
    return made


def agents_available(
    tenants: list[BenchTenant], per_tenant: int, *, status: str = AgentStatus.AVAILABLE
) -> list[Membership]:
    """`per_tenant` agents in each tenant, available (or `status`) and serving its queue (default capacity)."""
    User = get_user_model()
    unusable = make_password(None)  # no password: they are signed in through sessions we write
    users = User.objects.bulk_create(
        [User(username=f"bench-{t.tenant.slug}-agent{i}", password=unusable, first_name=f"Agent{i}")
         for t in tenants for i in range(per_tenant)],
        batch_size=BATCH,
    )  # fmt: skip
    now = timezone.now()
    memberships: list[Membership] = []
    with dangerously_all_tenants():  # seeding many tenants at once; every row names its own tenant
        for k, t in enumerate(tenants):
            t.agents = Membership.objects.bulk_create(
                [Membership(tenant=t.tenant, user=user, role=Role.AGENT)
                 for user in users[k * per_tenant:(k + 1) * per_tenant]]
            )  # fmt: skip
            memberships += t.agents
        states = AgentState.objects.bulk_create(
            [AgentState(tenant_id=m.tenant_id, membership=m, status=status, status_since=now)
             for m in memberships],
            batch_size=BATCH,
        )  # fmt: skip
        AgentStatusPeriod.objects.bulk_create(
            [AgentStatusPeriod(tenant_id=m.tenant_id, membership=m, status=status, started_at=now)
             for m in memberships],
            batch_size=BATCH,
        )  # fmt: skip
        queue_of_tenant = {t.tenant.pk: t.queue.pk for t in tenants}
        for through in (AgentState.served_queues.through, AgentState.allowed_queues.through):
            through.objects.bulk_create(
                [through(agentstate_id=s.pk, queue_id=queue_of_tenant[s.tenant_id]) for s in states], batch_size=BATCH
            )
    return memberships


def session_cookies(memberships: list[Membership]) -> list[str]:
    """A signed-in session per membership (in its tenant), written in bulk; their session keys.

    The cached_db engine reads a session missing from the cache from the database, so rows are enough.
    """
    store = SessionStore()
    expires = timezone.now() + timedelta(days=1)
    rows, keys = [], []
    for membership in memberships:
        user = membership.user
        key = secrets.token_hex(16)
        data = {
            SESSION_KEY: str(user.pk),
            BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
            HASH_SESSION_KEY: user.get_session_auth_hash(),
            SESSION_TENANT_KEY: membership.tenant_id,
        }
        rows.append(Session(session_key=key, session_data=store.encode(data), expire_date=expires))
        keys.append(key)
    Session.objects.bulk_create(rows, batch_size=BATCH)
    return keys


def signed_sms(t: BenchTenant, *, base_url: str, sender: str, body: str, sid: str | None = None) -> dict:
    """A Twilio inbound SMS to `t`'s number, form-encoded and signed for `base_url`: {"body", "headers"}."""
    fields = {"MessageSid": sid or "SM" + secrets.token_hex(16), "AccountSid": t.account_sid, "From": sender,
              "To": t.number, "Body": body, "NumMedia": "0"}  # fmt: skip
    signature = RequestValidator(t.auth_token).compute_signature(base_url + MESSAGING_PATH, fields)
    return {"body": urlencode(fields), "headers": {"X-Twilio-Signature": signature}, "fields": fields}


QUEUED_CHANNELS = (Channel.SMS, Channel.WHATSAPP, Channel.WEBCHAT, Channel.EMAIL)


def queued_conversation_tasks(tenants: list[BenchTenant], count: int, *, start: int = 0, **task_fields) -> list:
    """`count` customers waiting, spread evenly over `tenants`: a contact, an open conversation and a
    pending conversation task in the tenant's queue each, written in bulk. Returns the task ids.

    `start` numbers the customers, so calls can add more without clashing. `task_fields` override the
    tasks' columns (status, first_response_due_at, ...). Returns the tasks (with ids).
    """
    from conversations.models import Contact, Conversation
    from tasks.models import Task, TaskKind, TaskStatus

    now = timezone.now()
    made: list = []
    task_fields = {"status": TaskStatus.PENDING, **task_fields}
    with dangerously_all_tenants():  # seeding many tenants at once; every row names its own tenant
        for first in range(start, start + count, BATCH):
            numbers = range(first, min(first + BATCH, start + count))
            owners = [tenants[n % len(tenants)] for n in numbers]
            contacts = Contact.objects.bulk_create(
                [Contact(tenant=t.tenant, name=f"Customer {n}") for n, t in zip(numbers, owners, strict=True)]
            )
            channels = [QUEUED_CHANNELS[n % len(QUEUED_CHANNELS)] for n in numbers]
            waited = [now - timedelta(seconds=len(numbers) - k) for k in range(len(numbers))]
            conversations = Conversation.objects.bulk_create(
                [Conversation(tenant=t.tenant, contact=c, channel=ch, waiting_since=w, last_customer_message_at=w)
                 for t, c, ch, w in zip(owners, contacts, channels, waited, strict=True)]
            )  # fmt: skip
            tasks = Task.objects.bulk_create(
                [Task(tenant=t.tenant, kind=TaskKind.CONVERSATION, title=f"Customer {n}", channel=ch,
                      queue=t.queue, conversation=conv, created_at=w, status_changed_at=w,
                      **task_fields)
                 for n, t, conv, ch, w in zip(numbers, owners, conversations, channels, waited, strict=True)]
            )  # fmt: skip
            made += tasks
    return made
