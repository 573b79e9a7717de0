"""Merge and split keep every message exactly once, whatever is chosen (hypothesis)."""

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations.models import Conversation, Message
from conversations.services import conversation_merge, conversation_split
from tests.conversations.conftest import add_messages, make_contact, make_conversation

pytestmark = pytest.mark.usefixtures("in_acme")

# Each step: (which conversation to split, which of its messages to move), as fractions/indexes
# resolved against the current state, so every drawn plan is valid.
steps = st.lists(st.tuples(st.integers(0, 50), st.lists(st.booleans(), min_size=1, max_size=12)), max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(2, 12), plan=steps, merge_back=st.booleans())
def test_splits_and_merges_keep_every_message_exactly_once(size, plan, merge_back):
    contact = make_contact()
    original = make_conversation(contact)
    expected = Counter(m.pk for m in add_messages(original, size, prefix=f"p{original.pk}-"))
    family = [original]
    for which, choices in plan:
        source = family[which % len(family)]
        ids = list(Message.objects.filter(conversation=source).order_by("pk").values_list("public_id", flat=True))
        chosen = [public_id for public_id, take in zip(ids, choices * len(ids)) if take]
        if not chosen or len(chosen) == len(ids):
            continue
        family.append(conversation_split(conversation=source, message_ids=chosen))
    if merge_back:
        for other in family[1:]:
            survivor = Conversation.objects.get(pk=original.pk)
            conversation_merge(duplicate=Conversation.objects.get(pk=other.pk), survivor=survivor)
    found = Counter(Message.objects.filter(conversation__in=family).values_list("pk", flat=True))
    assert found == expected  # every message once, none lost, none duplicated
    assert Message.objects.filter(pk__in=expected).count() == size
    for conversation in family:
        conversation.refresh_from_db()
        count = Message.objects.filter(conversation=conversation).count()
        if merge_back and conversation != original:
            assert count == 0 and conversation.status == "closed" and conversation.merged_into_id == original.pk
        else:
            assert count >= 1


RANK = {"queued": 0, "sent": 1, "delivered": 2, "undelivered": 2, "failed": 2, "read": 3}
FINAL = {"undelivered", "failed"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(callbacks=st.lists(st.sampled_from(["sent", "delivered", "undelivered", "failed", "read"]), max_size=8))
def test_delivery_status_only_moves_forward_whatever_order_callbacks_arrive_in(acme_agent, callbacks):
    from conversations.services import message_delivery_update, message_send_reply

    conversation = make_conversation(status="assigned", assignee=acme_agent)
    message = message_send_reply(conversation=conversation, author=acme_agent, body="hello")
    current = "queued"
    for status in callbacks:
        applied = message_delivery_update(message=message, status=status)
        stored = Message.objects.get(pk=message.pk).delivery_status
        moves_forward = RANK[status] > RANK[current] and current not in FINAL
        assert applied == moves_forward
        assert stored == (status if moves_forward else current)
        current = stored
