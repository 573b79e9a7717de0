"""The desktop's pages and actions over HTTP, as htmx calls them: what an agent sees and can do,
what they cannot see of another tenant, and how many queries each costs."""

import re
from functools import partial

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contactcenter.tenancy import tenant_context
from conversations.models import Activity, Conversation, Message
from conversations.services import conversation_assign
from desktop import fragments
from tasks.models import Disposition, OfferStatus, TaskStatus
from tasks.services import routing_run
from tests.conftest import signed_in_client
from tests.conversations.conftest import add_messages
from tests.tasks.routing_helpers import only_offer, waiting_task

HTMX = {"HTTP_HX_REQUEST": "true"}


def offered_task(acme, support):
    with tenant_context(acme):
        task = waiting_task(support)
        routing_run(tenant_id=acme.pk)
        return task, only_offer(task)


def accepted_conversation(client, acme, support) -> Conversation:
    task, offer = offered_task(acme, support)
    assert client.post(f"/desktop/offers/{offer.public_id}/accept/", **HTMX).status_code == 200
    with tenant_context(acme):
        return Conversation.objects.get(pk=task.conversation_id)


def test_the_workspace_shows_the_agents_status_and_an_offer_with_accept_and_decline(acme, support, agent):
    _, offer = offered_task(acme, support)
    page = signed_in_client(agent).get("/").content.decode()
    assert 'data-status="available"' in page and "Go Unavailable" in page
    assert f'id="offer-{offer.public_id}"' in page
    assert "✓ Accept" in page and "✗ Decline" in page and "Hello?" in page  # the preview


def test_accepting_opens_the_conversation_and_a_reply_is_queued_for_delivery(acme, support, agent):
    client = signed_in_client(agent)
    task, offer = offered_task(acme, support)
    response = client.post(f"/desktop/offers/{offer.public_id}/accept/", **HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and "desktop:open" in response["HX-Trigger-After-Settle"]
    with tenant_context(acme):
        conversation = Conversation.objects.get(pk=task.conversation_id)
        task.refresh_from_db()
    assert task.status == TaskStatus.ASSIGNED and f'id="conv-{conversation.public_id}"' in body

    response = client.post(f"/desktop/conversations/{conversation.public_id}/reply/", {"body": "On it!"}, **HTMX)
    assert response.status_code == 200
    with tenant_context(acme):
        reply = Message.objects.get(conversation=conversation, direction="outbound")
    assert reply.body == "On it!" and f'id="msg-{reply.public_id}"' in response.content.decode()


def test_a_card_number_is_held_back_until_the_agent_sends_anyway_and_that_choice_is_logged(acme, support, agent):
    client = signed_in_client(agent)
    conversation = accepted_conversation(client, acme, support)
    url = f"/desktop/conversations/{conversation.public_id}/reply/"
    text = "Your card 4111 1111 1111 1111 is on file"

    warned = client.post(url, {"body": text}, **HTMX).content.decode()
    assert "<mark>4111 1111 1111 1111</mark>" in warned and "Send anyway" in warned
    with tenant_context(acme):
        assert not Message.objects.filter(direction="outbound").exists()

    client.post(url, {"body": text, "send_anyway": "1"}, **HTMX)
    with tenant_context(acme):
        assert Message.objects.get(direction="outbound").body == text
        logged = Activity.objects.get(conversation=conversation, kind="sensitive")
    assert logged.actor_id == agent.pk and "Card number" in logged.reason


def test_end_chat_then_wrap_up_with_a_disposition_completes_the_task(acme, support, agent):
    client = signed_in_client(agent)
    conversation = accepted_conversation(client, acme, support)
    ended = client.post(f"/desktop/conversations/{conversation.public_id}/end/", **HTMX).content.decode()
    assert "Wrap-up" in ended and "Complete" in ended
    with tenant_context(acme):
        task = conversation.tasks.get()
        disposition = Disposition.objects.create(tenant=acme, name="Resolved")
    assert task.status == TaskStatus.WRAPPING
    done = client.post(
        f"/desktop/tasks/{task.public_id}/wrap-up/", {"disposition": disposition.public_id, "notes": "Sorted"}, **HTMX
    ).content.decode()
    with tenant_context(acme):
        task.refresh_from_db()
    assert "Handled" in done and task.status == TaskStatus.COMPLETED and task.disposition_id == disposition.pk


def test_a_refused_action_answers_409_with_the_reason_and_leaves_the_screen_alone(acme, support, agent, teammate):
    _, offer = offered_task(acme, support)
    signed_in_client(agent).post(f"/desktop/offers/{offer.public_id}/decline/", **HTMX)
    response = signed_in_client(agent).post(f"/desktop/offers/{offer.public_id}/accept/", **HTMX)
    assert response.status_code == 409 and response["HX-Reswap"] == "none"
    assert 'id="domain-error"' in response.content.decode()
    with tenant_context(acme):
        offer.refresh_from_db()
    assert offer.status == OfferStatus.DECLINED


def test_a_template_shortcut_is_filled_in_for_the_conversation(acme, support, agent):
    from conversations.models import ReplyTemplate

    client = signed_in_client(agent)
    conversation = accepted_conversation(client, acme, support)
    with tenant_context(acme):
        ReplyTemplate.objects.create(tenant=acme, name="Thanks", shortcut="/thanks", body="Thanks {{contact.name}}!")
    response = client.get(f"/desktop/conversations/{conversation.public_id}/template/?shortcut=thanks")
    assert response.content.decode() == "Thanks Customer!"
    assert client.get(f"/desktop/conversations/{conversation.public_id}/template/?shortcut=nope").status_code == 404


def test_another_tenants_conversation_offer_and_task_are_not_found(acme, support, agent, globex_agent):
    client = signed_in_client(agent)
    conversation = accepted_conversation(client, acme, support)
    outsider = signed_in_client(globex_agent)
    with tenant_context(acme):
        task = conversation.tasks.get()
        offer = task.offers.get()
    assert outsider.get(f"/desktop/conversations/{conversation.public_id}/").status_code == 404
    assert outsider.post(f"/desktop/conversations/{conversation.public_id}/reply/", {"body": "x"}).status_code == 404
    assert outsider.post(f"/desktop/offers/{offer.public_id}/accept/").status_code == 404
    assert outsider.post(f"/desktop/tasks/{task.public_id}/wrap-up/").status_code == 404
    assert conversation.public_id not in outsider.get("/").content.decode()


def test_a_teammate_cannot_reply_in_a_conversation_someone_else_handles(acme, support, agent, teammate):
    conversation = accepted_conversation(signed_in_client(agent), acme, support)
    response = signed_in_client(teammate).post(f"/desktop/conversations/{conversation.public_id}/reply/", {"body": "x"})
    assert response.status_code == 403


# --- query counts: they must not grow with what the agent holds -------------------------------------------------


def queries_of(action) -> int:
    with CaptureQueriesContext(connection) as captured:
        action()
    return len(captured)


def hold_conversations(acme, support, agent, count: int) -> list[Conversation]:
    with tenant_context(acme):
        held = []
        for _ in range(count):
            task = waiting_task(support)
            conversation = Conversation.objects.get(pk=task.conversation_id)
            conversation_assign(conversation=conversation, agent=agent, actor=agent)
            held.append(conversation)
        return held


@pytest.mark.parametrize("few, many", [(2, 12)])
def test_the_workspace_costs_the_same_queries_for_few_and_many_conversations(acme, support, agent, few, many):
    client = signed_in_client(agent)
    hold_conversations(acme, support, agent, few)
    client.get("/")  # warm the session and the content types
    at_few = queries_of(lambda: client.get("/"))
    hold_conversations(acme, support, agent, many - few)
    at_many = queries_of(lambda: client.get("/"))
    assert at_many == at_few, (at_few, at_many)


def test_a_conversation_pane_costs_the_same_queries_for_a_short_and_a_long_history(acme, support, agent):
    client = signed_in_client(agent)
    [conversation] = hold_conversations(acme, support, agent, 1)
    url = f"/desktop/conversations/{conversation.public_id}/"
    with tenant_context(acme):
        add_messages(conversation, 3, prefix="a")
    client.get(url)
    short = queries_of(lambda: client.get(url))
    with tenant_context(acme):
        add_messages(conversation, 60, prefix="b")
    long = queries_of(lambda: client.get(url))
    assert long == short, (short, long)


def test_each_pushed_fragment_has_a_fixed_query_count(acme, support, agent):
    [conversation] = hold_conversations(acme, support, agent, 1)
    with tenant_context(acme):
        [message] = add_messages(conversation, 1)
        pushes = {
            "offer.new": {},
            "message.new": {"conversation": conversation.public_id, "message": message.public_id},
            "message.status": {"conversation": conversation.public_id, "message": message.public_id},
            "conversation.status": {"conversation": conversation.public_id},
        }

        def count_each() -> dict[str, int]:
            return {
                event: queries_of(partial(fragments.for_event, agent, event, data)) for event, data in pushes.items()
            }

        counts = count_each()
        hold_conversations(acme, support, agent, 5)
        add_messages(conversation, 20, prefix="more")
        assert count_each() == counts
    assert counts == PINNED_FRAGMENT_QUERIES, counts


# What each push costs the server holding the socket (task list + status bar: 10); a change here is
# a change to review, not to paste.
PINNED_FRAGMENT_QUERIES = {"offer.new": 10, "message.new": 12, "message.status": 2, "conversation.status": 3}


def test_a_long_history_opens_at_its_newest_messages_and_shows_the_earlier_ones_on_request(acme, support, agent):
    client = signed_in_client(agent)
    [conversation] = hold_conversations(acme, support, agent, 1)
    with tenant_context(acme):
        add_messages(conversation, 130, prefix="old")  # 131 with the customer's first "Hello?"
    pane = client.get(f"/desktop/conversations/{conversation.public_id}/").content.decode()
    assert pane.count('class="msg msg-inbound') == 100 and "old129 ✓" in pane and "old30 ✓" in pane
    assert "old29 ✓" not in pane and "Show earlier messages" in pane

    earlier_url = re.search(r'hx-get="([^"]*/history/\?before=[^"]+)"', pane).group(1).replace("&amp;", "&")
    earlier = client.get(earlier_url).content.decode()
    assert earlier.count('class="msg msg-inbound') == 31 and "old29 ✓" in earlier and "Hello?" in earlier
    assert "old30 ✓" not in earlier and "Show earlier messages" not in earlier


def test_too_many_files_at_once_are_refused_with_the_draft_kept(acme, support, agent):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = signed_in_client(agent)
    conversation = accepted_conversation(client, acme, support)
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    files = [SimpleUploadedFile(f"p{i}.png", png, content_type="image/png") for i in range(6)]
    response = client.post(
        f"/desktop/conversations/{conversation.public_id}/reply/", {"body": "see attached", "files": files}, **HTMX
    )
    body = response.content.decode()
    assert "Send at most 5 files" in body and "see attached" in body
    with tenant_context(acme):
        assert not Message.objects.filter(direction="outbound").exists()
