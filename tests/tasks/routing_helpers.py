"""Factories for routing tests: agents with a routing state, and tasks waiting in a queue.

They run inside the current tenant and go through the services (agent_set_status,
agent_choose_queues, conversation_task_ensure), except where a test needs a row in a given state.
"""

import itertools

from django.utils import timezone

from contactcenter.tenancy import current_tenant_id
from conversations.models import Conversation
from conversations.services import message_append_inbound
from tasks.models import AgentSkill, AgentState, AgentStatus, Offer, OfferStatus, Queue, Skill, Task
from tasks.services import agent_choose_queues, agent_set_status, agent_state_for, conversation_task_ensure
from tests.conftest import make_member
from tests.conversations.conftest import make_contact, make_conversation

_numbers = itertools.count(1)


def make_agent(tenant, name: str, queues, *, status=AgentStatus.AVAILABLE, capacity=None, skills=None):
    """A member of `tenant` serving `queues`, available by default (inside tenant_context(tenant))."""
    member = make_member(tenant, name)
    state = agent_state_for(member)
    if capacity:
        AgentState.objects.filter(pk=state.pk).update(capacity=capacity)
    for skill_name, level in (skills or {}).items():
        skill, _ = Skill.objects.get_or_create(tenant=tenant, name=skill_name)
        AgentSkill.objects.create(tenant=tenant, membership=member, skill=skill, level=level)
    agent_choose_queues(membership=member, queues=queues)
    if status == AgentStatus.AVAILABLE:
        agent_set_status(membership=member, status=status)
    return member


def waiting_task(queue: Queue, *, channel: str = "sms", contact=None, vip: bool = False, **conversation_columns) -> Task:
    """A customer wrote on `channel`; the conversation's task waits in `queue` (the channels' path)."""
    contact = contact or make_contact(phone=f"+1555{next(_numbers):07d}", name="Customer")
    if vip:
        type(contact).objects.filter(pk=contact.pk).update(is_vip=True)
    conversation = make_conversation(contact, channel=channel, **conversation_columns)
    message_append_inbound(conversation=conversation, body="Hello?", provider_message_id=f"in-{next(_numbers)}")
    return conversation_task_ensure(conversation=Conversation.objects.get(pk=conversation.pk), queue=queue)


def offers_of(task: Task, status=OfferStatus.PENDING) -> list[Offer]:
    return list(Offer.objects.filter(task=task, status=status).order_by("pk"))


def only_offer(task: Task) -> Offer:
    offers = offers_of(task)
    assert len(offers) == 1, offers
    return offers[0]


def expire(offer: Offer) -> Offer:
    """Test setup: the offer's time ran out."""
    Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now())
    offer.refresh_from_db()
    return offer


def tenant_id() -> int:
    return current_tenant_id()
