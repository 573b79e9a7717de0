"""The desktop's pages and actions over HTTP, as htmx calls them: what an agent sees and can do,
what they cannot see of another tenant, and how many queries each costs."""

import re
from datetime import timedelta
from functools import partial

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contactcenter.tenancy import tenant_context
from conversations.models import Activity, Conversation, Message
from conversations.services import attachment_add, conversation_assign
from desktop import fragments, selectors
from tasks.models import AgentState, Disposition, Offer, OfferStatus, TaskKind, TaskStatus
from tasks.services import agent_choose_queues, routing_run, task_create
from tests.conftest import signed_in_client
from tests.conversations.conftest import add_messages, make_contact, make_queue
from tests.tasks.routing_helpers import only_offer, waiting_task

HTMX = {"HTTP_HX_REQUEST": "true"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


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


def test_a_history_of_replies_notes_and_changes_costs_the_same_queries_short_or_long(acme, support, agent):
    """The history reads only the columns it shows (selectors.MESSAGE_FIELDS and the like): one it
    showed without reading would be fetched row by row."""
    client = signed_in_client(agent)
    [conversation] = hold_conversations(acme, support, agent, 1)
    url = f"/desktop/conversations/{conversation.public_id}/"

    def talk(start: int, count: int) -> None:
        for i in range(start, start + count):
            client.post(f"{url}reply/", {"body": f"Reply {i}"}, **HTMX)
            client.post(f"{url}notes/", {"body": f"**Note {i}**"}, **HTMX)
            client.post(f"{url}tags/", {"tags": f"tag{i}"}, **HTMX)
        with tenant_context(acme):
            Message.objects.filter(conversation=conversation, direction="outbound").update(
                delivery_status="failed", error_reason="Unreachable", error_code="30003"
            )

    talk(0, 1)
    client.get(url)
    short = queries_of(lambda: client.get(url))
    talk(1, 5)
    long = queries_of(lambda: client.get(url))
    pane = client.get(url).content.decode()
    assert long == short, (short, long)
    assert pane.count('aria-label="Agent1 at') == 6 and pane.count("Not delivered: Unreachable (code 30003)") == 6
    assert "<strong>Note 5</strong>" in pane and 'aria-label="Internal note by Agent1"' in pane
    assert "Agent1: tags → tag5" in pane


def test_the_task_list_costs_the_same_queries_for_few_and_many_offers_picks_and_to_dos(acme, support, agent):
    """Task lines load only the columns they show (selectors.TASK_LINE_FIELDS): a line showing one
    more than is loaded would fetch it row by row."""
    with tenant_context(acme):
        offered_in = make_queue("Callbacks", channels=["sms"])  # not served: offers here are made by hand
        picked_in = make_queue("Pick", channels=["sms"], pick_mode=True)
        agent_choose_queues(membership=agent, queues=[support, picked_in])

    def add(count: int) -> None:
        with tenant_context(acme):
            for _ in range(count):
                expires = timezone.now() + timedelta(minutes=5)
                Offer.objects.create(tenant=acme, task=waiting_task(offered_in), agent=agent, expires_at=expires)
                waiting_task(picked_in)
                task_create(kind=TaskKind.INTERNAL, title="Call the courier", assignee=agent)

    client = signed_in_client(agent)

    def listed() -> list[tuple[int, str]]:
        """The task list pushed to the agent's socket, and the workspace page (which knows from the
        status bar which pick-mode queues the agent serves)."""
        with tenant_context(acme), CaptureQueriesContext(connection) as captured:
            pushed = fragments.task_list(agent)
        pushed_queries = len(captured)
        with CaptureQueriesContext(connection) as captured:
            page = client.get("/").content.decode()
        return [(pushed_queries, pushed), (len(captured), page)]

    hold_conversations(acme, support, agent, 1)
    add(1)
    client.get("/")  # warm the session and the content types
    few = listed()
    add(4)
    many = listed()
    for (at_few, html_few), (at_many, html_many) in zip(few, many, strict=True):
        assert at_many == at_few, (at_few, at_many)
        for html, count in ((html_few, 1), (html_many, 5)):
            assert html.count("data-offer>") == count and html.count('id="pick-') == count
            assert html.count("Call the courier") == count


def test_a_contact_without_a_name_is_listed_by_how_they_reached_us_whatever_their_number(acme, support, agent):
    client = signed_in_client(agent)
    phones = [f"+1555770{i:04d}" for i in range(5)]

    def hold_nameless(numbers) -> None:
        with tenant_context(acme):
            for phone in numbers:
                task = waiting_task(support, contact=make_contact(phone=phone, name=""))
                conversation = Conversation.objects.get(pk=task.conversation_id)
                conversation_assign(conversation=conversation, agent=agent, actor=agent)

    hold_nameless(phones[:1])
    client.get("/")
    few = queries_of(lambda: client.get("/"))
    hold_nameless(phones[1:])
    many = queries_of(lambda: client.get("/"))
    page = client.get("/").content.decode()
    assert many == few, (few, many)
    assert all(f'<span class="who">{phone}</span>' in page for phone in phones)


def test_a_workspace_without_pick_mode_queues_does_not_look_for_picks(acme, support, agent):
    client = signed_in_client(agent)
    hold_conversations(acme, support, agent, 1)
    client.get("/")
    without = queries_of(lambda: client.get("/"))
    with tenant_context(acme):
        agent_choose_queues(membership=agent, queues=[support, make_queue("Pick", channels=["sms"], pick_mode=True)])
    assert queries_of(lambda: client.get("/")) == without + 1


def test_a_pane_shows_its_files_and_reads_them_only_when_a_message_has_some(acme, support, agent):
    client = signed_in_client(agent)
    [conversation] = hold_conversations(acme, support, agent, 1)
    url = f"/desktop/conversations/{conversation.public_id}/"
    with tenant_context(acme):
        first, second = add_messages(conversation, 2, prefix="photo")
    client.get(url)
    text_only = queries_of(lambda: client.get(url))
    with tenant_context(acme):
        for message, name in ((first, "receipt.png"), (second, "label.png"), (second, "box.png")):
            attachment_add(message=message, filename=name, content=PNG, content_type="image/png")
    with_files = queries_of(lambda: client.get(url))
    pane = client.get(url).content.decode()
    assert with_files == text_only + 1
    for message, names in ((first, ["receipt.png"]), (second, ["label.png", "box.png"])):
        shown = pane.split(f'id="msg-{message.public_id}"')[1].split("</article>")[0]
        assert [name for name in ("receipt.png", "label.png", "box.png") if f"📎 {name}" in shown] == names


def test_the_status_bar_offers_the_allowed_queues_with_those_served_ticked(acme, support, agent):
    with tenant_context(acme):
        billing, hidden = make_queue("Billing", channels=["sms"]), make_queue("Hidden", channels=["sms"])
        AgentState.objects.get(membership=agent).allowed_queues.set([support, billing])
    bar = signed_in_client(agent).get("/").content.decode().split('id="agent-bar"')[1].split("</section>")[0]
    assert f'value="{support.public_id}" checked>' in bar and f'value="{billing.public_id}">' in bar
    assert hidden.public_id not in bar and "Queues (1 served)" in bar


def test_the_wrap_up_form_offers_the_dispositions(acme, support, agent):
    client = signed_in_client(agent)
    conversation = accepted_conversation(client, acme, support)
    with tenant_context(acme):
        Disposition.objects.create(tenant=acme, name="Refund issued")
    assert "Refund issued" not in client.get(f"/desktop/conversations/{conversation.public_id}/").content.decode()
    ended = client.post(f"/desktop/conversations/{conversation.public_id}/end/", **HTMX).content.decode()
    assert "Refund issued" in ended
    assert "Refund issued" in client.get(f"/desktop/conversations/{conversation.public_id}/").content.decode()


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


# What each push costs the server holding the socket (task list + status bar: 9); a change here is
# a change to review, not to paste. (One less each when the task list stopped reading identities of
# contacts that have a name, and the pane the dispositions outside the agent's wrap-up.)
PINNED_FRAGMENT_QUERIES = {"offer.new": 9, "message.new": 11, "message.status": 2, "conversation.status": 2}


def earlier_url(html: str) -> str:
    """The "Show earlier messages" request in a pane or history fragment."""
    return re.search(r'hx-get="([^"]*/history/\?before=[^"]+)"', html).group(1).replace("&amp;", "&")


def test_a_long_history_opens_at_its_newest_messages_and_shows_the_earlier_ones_on_request(acme, support, agent):
    window = selectors.HISTORY_WINDOW
    client = signed_in_client(agent)
    [conversation] = hold_conversations(acme, support, agent, 1)
    with tenant_context(acme):
        add_messages(conversation, 2 * window - 1, prefix="old")  # two windows with the customer's "Hello?"
    pane = client.get(f"/desktop/conversations/{conversation.public_id}/").content.decode()
    newest, oldest_shown = f"old{2 * window - 2} ✓", f"old{window - 1} ✓"
    assert pane.count('class="msg msg-inbound') == window and newest in pane and oldest_shown in pane
    assert f"old{window - 2} ✓" not in pane and "Show earlier messages" in pane

    earlier = client.get(earlier_url(pane)).content.decode()
    assert earlier.count('class="msg msg-inbound') == window and f"old{window - 2} ✓" in earlier
    assert "Hello?" in earlier and oldest_shown not in earlier and "Show earlier messages" not in earlier


def test_messages_of_the_same_instant_page_back_without_gaps_or_repeats(acme, support, agent):
    window = selectors.HISTORY_WINDOW
    client = signed_in_client(agent)
    [conversation] = hold_conversations(acme, support, agent, 1)
    with tenant_context(acme):
        burst = add_messages(conversation, 2 * window + 5, prefix="burst")
        Message.objects.filter(pk__in=[m.pk for m in burst]).update(created_at=burst[0].created_at)
    html = client.get(f"/desktop/conversations/{conversation.public_id}/").content.decode()
    shown = re.findall(r"burst(\d+) ✓", html)
    while "Show earlier messages" in html:
        html = client.get(earlier_url(html)).content.decode()
        shown += re.findall(r"burst(\d+) ✓", html)
    assert sorted(map(int, shown)) == list(range(2 * window + 5)) and "Hello?" in html


def test_the_earlier_history_is_a_keyboard_button_and_stays_inside_the_conversation_and_tenant(
    acme, support, agent, globex_agent
):
    client = signed_in_client(agent)
    [conversation, other] = hold_conversations(acme, support, agent, 2)
    with tenant_context(acme):
        add_messages(conversation, 2 * selectors.HISTORY_WINDOW + 1, prefix="long")
        [elsewhere] = add_messages(other, 1, prefix="elsewhere")
    pane = client.get(f"/desktop/conversations/{conversation.public_id}/").content.decode()
    url = earlier_url(pane)
    button = re.search(r"<button[^>]*data-history-earlier[^>]*>", pane).group(0)
    assert 'type="button"' in button and "tabindex" not in button  # reached and pressed like any button
    earlier = client.get(url).content.decode()
    assert earlier.count("data-history-earlier") == 1  # the next stretch has its own button

    assert signed_in_client(globex_agent).get(url).status_code == 404
    other_message = url.split("?")[0] + f"?before={elsewhere.public_id}"
    assert client.get(other_message).status_code == 404
    assert client.get(url.split("?")[0]).status_code == 400


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
