"""The right column of a conversation pane and the contact page, over HTTP as htmx calls them: each
quick action changes what it should and logs it, outsiders get 404, teammates not handling the
conversation get 403, and the column's cost does not grow with what the conversation holds."""

from datetime import UTC, datetime

import pytest
from django.template.loader import render_to_string

from contactcenter.tenancy import tenant_context
from conversations.models import Activity, Conversation, ConversationStatus, Message
from conversations.services import conversation_set_tags, note_add
from desktop import fragments, selectors
from tasks.models import Task, TaskKind, TaskStatus, Team
from tests.conftest import signed_in_client
from tests.conversations.conftest import add_messages, make_contact, make_conversation, make_queue
from tests.desktop.test_workspace import HTMX, accepted_conversation, queries_of
from tests.tasks.routing_helpers import waiting_task


def url(conversation: Conversation, action: str) -> str:
    return f"/desktop/conversations/{conversation.public_id}/{action}/"


def activity(conversation: Conversation, kind: str) -> Activity:
    return Activity.objects.filter(conversation=conversation, kind=kind).latest("created_at", "pk")


@pytest.fixture
def client(agent):
    return signed_in_client(agent)


@pytest.fixture
def held(client, acme, support) -> Conversation:
    """A conversation acme-agent1 accepted (customer wrote "Hello?" by SMS), with its contact loaded."""
    accepted = accepted_conversation(client, acme, support)
    with tenant_context(acme):
        return Conversation.objects.select_related("contact").get(pk=accepted.pk)


def test_the_pane_shows_the_contact_card_with_its_page_and_the_quick_actions(client, held):
    page = client.get(f"/desktop/conversations/{held.public_id}/", **HTMX).content.decode()
    assert f'id="conv-{held.public_id}-context"' in page
    assert f'href="/desktop/contacts/{held.contact.public_id}/"' in page
    for label in ("Change priority", "Edit tags", "Create follow-up task", "Assign to staff", "Transfer", "Merge"):
        assert f"<summary>{label}</summary>" in page, label
    assert "<summary>Split</summary>" in page and "<summary>Schedule a message</summary>" in page
    assert "<summary>Start an outbound message</summary>" in page and "Preview" in page
    assert "hx-on" not in page and "<script" not in page


# --- priority, tags, note preview ------------------------------------------------------------------------------


def test_changing_the_priority_with_a_reason_moves_the_task_too_and_is_logged(client, acme, agent, held):
    response = client.post(url(held, "priority"), {"priority": "urgent", "reason": "Third time they write"}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    with tenant_context(acme):
        held.refresh_from_db()
        task = held.tasks.get()
        logged = activity(held, "priority")
    assert held.priority == "urgent" and task.priority == "critical"
    assert (logged.old_value, logged.new_value, logged.reason, logged.actor_id) == (
        "normal",
        "urgent",
        "Third time they write",
        agent.pk,
    )
    # The column and the history come back out of band, with the reason shown next to the priority.
    assert f'id="conv-{held.public_id}-context" data-digest=' in body
    assert f'id="conv-{held.public_id}-history"' in body and "Third time they write" in body
    assert "Priority is now Urgent." in body and 'id="task-list"' in body


def test_tags_are_replaced_from_a_comma_separated_list_and_logged(client, acme, held):
    client.post(url(held, "tags"), {"tags": "Refund, late delivery,refund"}, **HTMX)
    with tenant_context(acme):
        held.refresh_from_db()
        logged = activity(held, "tags")
    assert held.tags == ["refund", "late-delivery"] and logged.new_value == "refund, late-delivery"


def test_the_note_preview_renders_sanitised_markdown_and_says_whom_it_notifies(client, acme, held, teammate):
    body = "**Call back** @acme-agent2 and @nobody <script>alert(1)</script>"
    preview = client.post(url(held, "notes/preview"), {"body": body}, **HTMX).content.decode()
    assert "<strong>Call back</strong>" in preview
    assert "<script>" not in preview and "&lt;script&gt;" in preview
    assert "Notifies Agent2 (@acme-agent2)" in preview and "@nobody" in preview
    with tenant_context(acme):
        assert not held.notes.exists()  # a preview writes nothing


# --- quick actions ---------------------------------------------------------------------------------------------


def test_a_follow_up_task_takes_type_channel_priority_assignee_and_a_due_date_in_the_tenants_time(
    client, acme, agent, held, teammate
):
    with tenant_context(acme):
        Team.objects.create(tenant=acme, name="Billing")
    form = client.get(url(held, "follow-up"), **HTMX).content.decode()
    assert f'value="agent:{teammate.public_id}"' in form and "Billing" in form and 'type="datetime-local"' in form

    response = client.post(
        url(held, "follow-up"),
        {
            "title": "Refund check",
            "kind": "internal",
            "channel": "email",
            "priority": "high",
            "assignee": f"agent:{teammate.public_id}",
            "due_at": "2030-01-02T09:30",
        },
        **HTMX,
    )
    assert response.status_code == 200 and "Task “Refund check” created for Agent2." in response.content.decode()
    with tenant_context(acme):
        task = Task.objects.get(title="Refund check")
        logged = Activity.objects.get(task=task, kind="created")
    assert (task.kind, task.channel, task.priority, task.assignee_id) == (
        TaskKind.INTERNAL,
        "email",
        "high",
        teammate.pk,
    )
    assert task.due_at == datetime(2030, 1, 2, 14, 30, tzinfo=UTC)  # 09:30 in New York
    assert task.conversation_id == held.pk and logged.conversation_id == held.pk and logged.actor_id == agent.pk


def test_a_follow_up_can_go_to_a_team(client, acme, held):
    with tenant_context(acme):
        team = Team.objects.create(tenant=acme, name="Billing")
    client.post(url(held, "follow-up"), {"assignee": f"team:{team.public_id}"}, **HTMX)
    with tenant_context(acme):
        task = Task.objects.get(kind=TaskKind.FOLLOW_UP)
    assert (task.team_id, task.assignee_id, task.priority, task.channel) == (team.pk, None, "medium", "sms")


def test_the_agent_handling_a_conversation_assigns_it_to_a_teammate_with_a_note(client, acme, agent, held, teammate):
    response = client.post(url(held, "assign"), {"to": f"agent:{teammate.public_id}", "note": "Speaks Dutch"}, **HTMX)
    body = response.content.decode()
    with tenant_context(acme):
        held.refresh_from_db()
        task = held.tasks.get()
        logged = activity(held, "assignment")
    assert held.assignee_id == teammate.pk and task.assignee_id == teammate.pk
    assert (logged.new_value, logged.reason, logged.actor_id) == ("Agent2", "Speaks Dutch", agent.pk)
    # The reply box goes: the agent no longer holds the conversation.
    assert f'<div id="conv-{held.public_id}-composer" hx-swap-oob="true"></div>' in body


def test_a_supervisor_assigns_a_waiting_conversation_to_an_agent(acme, support, agent, acme_supervisor):
    with tenant_context(acme):
        task = waiting_task(support)
        conversation = Conversation.objects.get(pk=task.conversation_id)
    boss = signed_in_client(acme_supervisor)
    assert "Agent1" in boss.get(url(conversation, "assign"), **HTMX).content.decode()
    response = boss.post(url(conversation, "assign"), {"to": f"agent:{agent.public_id}", "note": "VIP"}, **HTMX)
    assert response.status_code == 200
    with tenant_context(acme):
        task.refresh_from_db()
        conversation.refresh_from_db()
        logged = activity(conversation, "assignment")
    assert task.status == TaskStatus.ASSIGNED and task.assignee_id == agent.pk and conversation.assignee_id == agent.pk
    assert (logged.actor_id, logged.reason) == (acme_supervisor.pk, "VIP")


def test_transferring_to_a_queue_lets_go_and_requeues_the_task_with_the_note(client, acme, held):
    with tenant_context(acme):
        billing = make_queue("Billing", channels=["sms"])
    form = client.get(url(held, "transfer"), **HTMX).content.decode()
    assert f'value="queue:{billing.public_id}"' in form
    response = client.post(url(held, "transfer"), {"to": f"queue:{billing.public_id}", "note": "Refund"}, **HTMX)
    assert "Transferred to the Billing queue." in response.content.decode()
    with tenant_context(acme):
        held.refresh_from_db()
        task = held.tasks.get()
        logged = activity(held, "transfer")
    assert held.assignee_id is None and held.status == ConversationStatus.OPEN
    assert (task.status, task.queue_id, task.assignee_id) == (TaskStatus.PENDING, billing.pk, None)
    assert logged.new_value == "Billing · SMS" and logged.reason == "Refund"


def test_transferring_to_an_agent_hands_the_conversation_over(client, acme, held, teammate):
    client.post(url(held, "transfer"), {"to": f"agent:{teammate.public_id}", "note": "Your customer"}, **HTMX)
    with tenant_context(acme):
        held.refresh_from_db()
        logged = activity(held, "assignment")
    assert held.assignee_id == teammate.pk and logged.reason == "Your customer"


def test_merging_another_conversation_of_the_contact_into_this_one(client, acme, held):
    with tenant_context(acme):
        other = make_conversation(held.contact)
        [moved] = add_messages(other, 1, prefix="dup")
        stranger = make_conversation(make_contact(phone="+15559990000", name="Someone else"))
    form = client.get(url(held, "merge"), **HTMX).content.decode()
    assert other.public_id in form and stranger.public_id not in form

    refused = client.post(url(held, "merge"), {"duplicate": stranger.public_id}, **HTMX)
    assert refused.status_code == 404  # not a conversation of this contact

    client.post(url(held, "merge"), {"duplicate": other.public_id, "reason": "Same order"}, **HTMX)
    with tenant_context(acme):
        other.refresh_from_db()
        moved.refresh_from_db()
        kept = activity(held, "merge")
    assert other.status == ConversationStatus.CLOSED and other.merged_into_id == held.pk
    assert moved.conversation_id == held.pk and (kept.old_value, kept.reason) == (other.public_id, "Same order")


def test_an_agent_cannot_merge_in_a_conversation_a_teammate_handles(client, acme, held, teammate):
    with tenant_context(acme):
        other = make_conversation(held.contact, assignee=teammate, status="assigned")
    assert client.post(url(held, "merge"), {"duplicate": other.public_id}, **HTMX).status_code == 403
    with tenant_context(acme):
        other.refresh_from_db()
    assert other.status == "assigned"


def test_splitting_moves_the_chosen_messages_to_a_new_conversation(client, acme, held):
    with tenant_context(acme):
        first, second = add_messages(held, 2, prefix="split")
    form = client.get(url(held, "split"), **HTMX).content.decode()
    assert first.public_id in form and "Hello?" in form
    response = client.post(url(held, "split"), {"message": [first.public_id, second.public_id]}, **HTMX)
    with tenant_context(acme):
        new = Conversation.objects.get(split_from=held)
        logged = activity(held, "split")
        assert set(new.messages.values_list("public_id", flat=True)) == {first.public_id, second.public_id}
        assert held.messages.count() == 1
    assert (logged.old_value, logged.new_value) == ("2 messages", new.public_id)
    assert new.public_id in response.content.decode()


def test_a_message_is_scheduled_in_the_tenants_time_zone(client, acme, held):
    response = client.post(
        url(held, "schedule"), {"body": "Your refund is on its way", "send_at": "2030-07-01T08:00"}, **HTMX
    )
    assert response.status_code == 200
    with tenant_context(acme):
        message = Message.objects.get(conversation=held, direction="outbound")
    assert message.send_at == datetime(2030, 7, 1, 12, 0, tzinfo=UTC)  # 08:00 in New York (summer time)
    assert message.delivery_status == "queued"
    body = response.content.decode()
    assert "Message scheduled for Mon 01 Jul 08:00 (America/New_York)." in body and f"msg-{message.public_id}" in body


def test_a_refused_action_answers_409_with_the_reason_and_changes_nothing(client, acme, held):
    past = client.post(url(held, "schedule"), {"body": "Hi", "send_at": "2001-01-01T08:00"}, **HTMX)
    unreadable = client.post(url(held, "schedule"), {"body": "Hi", "send_at": "tomorrow"}, **HTMX)
    no_one = client.post(url(held, "assign"), {"to": ""}, **HTMX)
    for response, reason in (
        (past, "Choose a time in the future"),
        (unreadable, "Choose when to send it"),
        (no_one, "Choose an agent or a team"),
    ):
        assert response.status_code == 409 and response["HX-Reswap"] == "none"
        assert 'id="domain-error"' in response.content.decode() and reason in response.content.decode()
    with tenant_context(acme):
        assert not Message.objects.filter(conversation=held, direction="outbound").exists()


def test_writing_to_the_contact_first_starts_a_conversation_held_by_the_agent(client, acme, support, agent, held):
    form = client.get(url(held, "outbound"), **HTMX).content.decode()
    assert 'value="sms"' in form and 'value="whatsapp"' in form and 'value="email"' not in form
    response = client.post(
        url(held, "outbound"), {"channel": "sms", "queue": support.public_id, "body": "About your order"}, **HTMX
    )
    with tenant_context(acme):
        started = Conversation.objects.exclude(pk=held.pk).get(contact=held.contact)
        task = started.tasks.get()
        message = started.messages.get()
        created = activity(started, "created")
    assert (started.channel, started.assignee_id, started.status) == ("sms", agent.pk, ConversationStatus.IN_PROGRESS)
    assert (task.status, task.assignee_id, task.queue_id) == (TaskStatus.ASSIGNED, agent.pk, support.pk)
    assert (message.direction, message.body, created.actor_id) == ("outbound", "About your order", agent.pk)
    assert started.public_id in response["HX-Trigger-After-Settle"]
    assert f'id="conv-{started.public_id}"' in response.content.decode()


def test_writing_first_on_a_channel_the_contact_cannot_be_reached_on_is_refused(client, acme, held):
    response = client.post(url(held, "outbound"), {"channel": "email", "body": "Hello"}, **HTMX)
    assert response.status_code == 409 and "no Email address" in response.content.decode()
    with tenant_context(acme):
        assert Conversation.objects.filter(contact=held.contact).count() == 1


# --- who may see and do what -----------------------------------------------------------------------------------

GATED_POSTS = {
    "priority": {"priority": "high"},
    "tags": {"tags": "x"},
    "assign": {"to": "team:x"},
    "transfer": {"to": "queue:x"},
    "merge": {"duplicate": "x"},
    "split": {"message": "x"},
    "schedule": {"body": "x", "send_at": "2030-01-01T00:00"},
}
OPEN_POSTS = {"notes/preview": {"body": "x"}, "follow-up": {}, "outbound": {"channel": "sms", "body": "x"}}
FORMS = ("follow-up", "assign", "transfer", "merge", "split", "outbound")


def test_a_teammate_not_handling_the_conversation_cannot_change_it(acme, held, teammate):
    other = signed_in_client(teammate)
    for action, data in GATED_POSTS.items():
        assert other.post(url(held, action), data, **HTMX).status_code == 403, action
    for action in ("assign", "transfer", "merge", "split"):
        assert other.get(url(held, action), **HTMX).status_code == 403, action
    with tenant_context(acme):
        held.refresh_from_db()
        assert (held.priority, held.tags) == ("normal", [])
    # What does not change the conversation itself stays open to the team.
    assert other.post(url(held, "notes/preview"), {"body": "x"}, **HTMX).status_code == 200
    assert other.get(url(held, "follow-up"), **HTMX).status_code == 200


def test_another_tenants_contact_and_conversation_are_not_found(held, globex_agent):
    outsider = signed_in_client(globex_agent)
    assert outsider.get(f"/desktop/contacts/{held.contact.public_id}/").status_code == 404
    for action, data in {**GATED_POSTS, **OPEN_POSTS}.items():
        assert outsider.post(url(held, action), data, **HTMX).status_code == 404, action
    for action in FORMS:
        assert outsider.get(url(held, action), **HTMX).status_code == 404, action


# --- the contact page ------------------------------------------------------------------------------------------


def test_the_contact_page_shows_details_identities_and_recent_conversations(client, acme, held):
    with tenant_context(acme):
        Conversation.objects.filter(pk=held.pk).update(created_at=datetime(2030, 3, 4, 15, 0, tzinfo=UTC))
        older = make_conversation(held.contact, channel="whatsapp", status="closed")
    page = client.get(f"/desktop/contacts/{held.contact.public_id}/").content.decode()
    assert "<h1" in page and "Phone number: +1555" in page
    assert f'id="contact-conv-{held.public_id}"' in page and f'id="contact-conv-{older.public_id}"' in page
    assert "4 Mar 2030 10:00" in page  # in the tenant's time zone
    assert "WhatsApp" in page and "Closed" in page and "Assigned" in page  # channel and status of each
    assert "Hello?" in page and f"?open={held.public_id}" in page


def test_the_contact_page_costs_the_same_queries_for_few_and_many_conversations(client, acme, held):
    contact_url = f"/desktop/contacts/{held.contact.public_id}/"
    client.get(contact_url)
    few = queries_of(lambda: client.get(contact_url))
    with tenant_context(acme):
        for i in range(6):
            add_messages(make_conversation(held.contact), 2, prefix=f"c{i}")
    assert queries_of(lambda: client.get(contact_url)) == few


# --- query counts: the column does not grow with what the conversation holds ---------------------------------


def grow(acme, agent, conversation: Conversation, size: int) -> None:
    """Give the conversation `size` more tags and notes, and its contact `size` more conversations."""
    with tenant_context(acme):
        conversation.refresh_from_db()
        tags = conversation.tags + [f"t{len(conversation.tags) + i}" for i in range(size)]
        conversation_set_tags(conversation=conversation, tags=tags, actor=agent)
        for i in range(size):
            note_add(conversation=conversation, author=agent, body=f"note {i} @acme-agent1")
            make_conversation(conversation.contact, channel="whatsapp")


def context_costs(client, acme, agent, public_id: str) -> dict[str, int]:
    """Queries of rendering the column alone (given its pane), of a conversation's refresh (which
    redraws it), and of opening the pane over HTTP."""
    with tenant_context(acme):
        found = selectors.conversation_for_pane(public_id)
        pane = selectors.conversation_pane(found, agent)
        context = {"pane": pane, "c": found, "membership": agent}
        costs = {
            "column": queries_of(lambda: render_to_string("desktop/partials/context.html", context)),
            "refresh": queries_of(
                lambda: fragments.conversation_refresh(selectors.conversation_for_pane(public_id), agent)
            ),
        }
    costs["pane"] = queries_of(lambda: client.get(f"/desktop/conversations/{public_id}/", **HTMX))
    return costs


def test_the_context_column_has_a_fixed_query_count(client, acme, agent, held):
    client.get(f"/desktop/conversations/{held.public_id}/", **HTMX)  # warm the session
    grow(acme, agent, held, 2)
    few = context_costs(client, acme, agent, held.public_id)
    grow(acme, agent, held, 12)
    many = context_costs(client, acme, agent, held.public_id)
    assert many == few, (few, many)
    assert {"column": many["column"], "refresh": many["refresh"]} == PINNED_CONTEXT_QUERIES, many
    with tenant_context(acme):
        found = selectors.conversation_for_pane(held.public_id)
        column = render_to_string(
            "desktop/partials/context.html",
            {"pane": selectors.conversation_pane(found, agent), "c": found, "membership": agent},
        )
    assert "<li>t13</li>" in column and "priority" in column  # all 14 tags shown


def test_the_quick_action_forms_have_a_fixed_query_count(client, acme, agent, held):
    def forms() -> dict[str, int]:
        return {action: queries_of(lambda a=action: client.get(url(held, a), **HTMX)) for action in FORMS}

    forms()
    few = forms()
    grow(acme, agent, held, 8)
    with tenant_context(acme):
        add_messages(held, 10, prefix="more")
    assert forms() == few


# The column itself reads nothing (the contact's identities come with the conversation, the priority
# reason from the history the pane already holds); refreshing a conversation is the pane's
# selector plus rendering. A change here is a change to review, not to paste. (Refresh 9 -> 7: the
# pane reads attachments only when a message it shows has some, and dispositions only in wrap-up.)
PINNED_CONTEXT_QUERIES = {"column": 0, "refresh": 7}
