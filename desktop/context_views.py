"""The right column of a conversation pane ("context") and the contact page: priority, tags, the
note preview and the quick actions (follow-up, assign, transfer, merge, split, schedule, write first).

Each action parses, calls one service, and answers with the conversation redrawn in place
(fragments.conversation_refresh: history, actions and this column, out of band, so the forms use
hx-swap="none" and the reply box keeps its draft) plus a line saying what was done. A rule a service
refuses is a DomainError: 409 and the #domain-error message, the screen untouched. So is a form
that lacks what the action needs (FormIncomplete).

The forms that need lists (staff, queues, the contact's conversations, messages) are fetched when
their disclosure is opened (GET on the action's URL), so opening a pane reads none of them.

Who may do what: any member of the tenant may preview a note, create a follow-up task or write to
the contact first; what changes the conversation itself (priority, tags, assign, transfer, merge,
split, schedule) takes the agent handling it or a supervisor (desktop.views._conversation_for_reply).
"""

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from channels_inbound.models import Channel
from contactcenter.access import member_required
from contactcenter.errors import DomainError
from contactcenter.models import Membership
from contactcenter.tenancy import get_in_tenant_or_404
from conversations.markup import mentioned_usernames, render_note_html
from conversations.models import Conversation, ConversationPriority
from conversations.services import (
    conversation_assign,
    conversation_merge,
    conversation_set_priority,
    conversation_set_tags,
    conversation_split,
    conversation_start_outbound,
    conversation_transfer,
    message_schedule,
)
from desktop import fragments, selectors
from desktop.views import _conversation_for_reply, _opened
from tasks.models import Queue, TaskKind, TaskPriority, Team
from tasks.services import task_claim, task_create_follow_up

GET_OR_POST = ["GET", "POST"]


class FormIncomplete(DomainError):
    """The form lacks something the action needs, or it cannot be read; shown like a refused action."""


# --- helpers ----------------------------------------------------------------------------------


def _form(request, name: str, conversation: Conversation, **context) -> HttpResponse:
    """A quick action's form, fetched when its disclosure opens."""
    return render(request, f"desktop/partials/context_{name}.html", {"c": conversation, **context})


def _redrawn(
    request,
    public_id: str,
    done: str,
    *,
    held_before: bool | None = None,
    task_list: bool = False,
    opened: Conversation | None = None,
) -> HttpResponse:
    """The conversation redrawn after an action, with `done` in the column's status line.

    `held_before`: whether the agent held the conversation before; when that changed, the reply box
    is redrawn too (it appears or goes). `task_list`: the action changed the agent's tasks.
    `opened`: a new conversation to open as a pane (and bring to the front).
    """
    membership = request.membership
    found = selectors.conversation_for_pane(public_id)
    parts = [
        fragments.conversation_refresh(found, membership),
        render_to_string("desktop/partials/context_status.html", {"c": found, "done": done}),
    ]
    holds = found.assignee_id == membership.pk
    if held_before is not None and held_before != holds:
        can_reply = holds and found.status in selectors.REPLYABLE_STATUSES
        templates = selectors.reply_templates() if can_reply else []
        parts.append(fragments.composer(found, membership, can_reply=can_reply, templates=templates, oob=True))
    if task_list or opened is not None:
        parts.append(fragments.task_list(membership, oob=True))
    if opened is None:
        return HttpResponse("".join(parts))
    pane = fragments.conversation_pane(selectors.conversation_for_pane(opened.public_id), membership)
    parts.append(f'<div hx-swap-oob="beforeend:#panes">{pane}</div>')
    return _opened(HttpResponse("".join(parts)), opened.public_id)


def _choice(value: str, kinds: dict, what: str):
    """("agent" | "team" | "queue", the row) from a select offering several kinds ("agent:<public id>")."""
    kind, _, public_id = value.partition(":")
    if kind not in kinds or not public_id:
        raise FormIncomplete(f"Choose {what}.")
    return kind, get_in_tenant_or_404(kinds[kind], public_id=public_id)


STAFF = {"agent": Membership.objects.select_related("user"), "team": Team}


def _local_time(request, value: str, what: str) -> datetime:
    """A datetime-local input, read in the tenant's time zone (what the form says it is)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise FormIncomplete(f"Choose {what} (date and time).") from None
    if timezone.is_aware(moment):
        return moment
    return timezone.make_aware(moment, ZoneInfo(request.membership.tenant.time_zone))


def _holder(agent: Membership | None, team: Team | None) -> str:
    if agent is not None:
        return agent.display_name
    return f"team {team.name}" if team is not None else "nobody in particular"


# --- the contact page -------------------------------------------------------------------------


@require_GET
@member_required()
def contact(request, public_id: str):
    return render(request, "desktop/contact.html", {"page": selectors.contact_page(public_id)})


# --- priority, tags and the note preview ------------------------------------------------------


@require_POST
@member_required()
def priority(request, public_id: str):
    found = _conversation_for_reply(request, public_id)
    wanted = request.POST.get("priority", "")
    if wanted not in ConversationPriority.values:
        raise FormIncomplete("Choose a priority.")
    conversation_set_priority(
        conversation=found, priority=wanted, actor=request.membership, reason=request.POST.get("reason", "").strip()
    )
    # The task list shows the priority too, and its push (conversation.priority) redraws only the pane.
    return _redrawn(request, public_id, f"Priority is now {ConversationPriority(wanted).label}.", task_list=True)


@require_POST
@member_required()
def tags(request, public_id: str):
    found = _conversation_for_reply(request, public_id)
    wanted = re.split(r"[,\n]", request.POST.get("tags", ""))
    conversation_set_tags(conversation=found, tags=wanted, actor=request.membership)
    return _redrawn(request, public_id, "Tags saved.")


@require_POST
@member_required()
def note_preview(request, public_id: str):
    """What a note will look like (the same sanitised rendering note_add stores) and whom its
    @mentions will notify; writes nothing."""
    found = get_in_tenant_or_404(Conversation, public_id=public_id)
    body = request.POST.get("body", "")
    usernames = mentioned_usernames(body)
    mentioned = selectors.members_named(usernames)
    known = {member.user.username for member in mentioned}
    return render(
        request,
        "desktop/partials/context_note_preview.html",
        {
            "c": found,
            "html": render_note_html(body) if body.strip() else "",
            "mentioned": mentioned,
            "unknown": [name for name in usernames if name not in known],
        },
    )


# --- quick actions ----------------------------------------------------------------------------


@require_http_methods(GET_OR_POST)
@member_required()
def follow_up(request, public_id: str):
    found = selectors.conversation_for_pane(public_id)
    if request.method == "GET":
        members, teams = selectors.staff_to_choose()
        return _form(request, "follow_up", found, members=members, teams=teams, channels=Channel.choices)
    kind = request.POST.get("kind", TaskKind.FOLLOW_UP)
    channel = request.POST.get("channel", "")
    priority = request.POST.get("priority", "")
    if kind not in (TaskKind.FOLLOW_UP, TaskKind.INTERNAL):
        raise FormIncomplete("Choose the type of task.")
    if channel and channel not in Channel.values:
        raise FormIncomplete("Choose a channel.")
    if priority and priority not in TaskPriority.values:
        raise FormIncomplete("Choose a priority.")
    agent = team = None
    if who := request.POST.get("assignee", ""):
        picked, chosen = _choice(who, STAFF, "an agent or a team")
        agent, team = (chosen, None) if picked == "agent" else (None, chosen)
    due = request.POST.get("due_at", "")
    task = task_create_follow_up(
        conversation=found,
        actor=request.membership,
        title=request.POST.get("title", "").strip() or "Follow up",
        description=request.POST.get("description", "").strip(),
        due_at=_local_time(request, due, "when it is due") if due.strip() else None,
        priority=priority,
        assignee=agent,
        team=team,
        kind=kind,
        channel=channel,
    )
    return _redrawn(request, public_id, f"Task “{task.title}” created for {_holder(agent, team)}.", task_list=True)


@require_http_methods(GET_OR_POST)
@member_required()
def assign(request, public_id: str):
    """Assign to staff with a note. A conversation waiting for an agent is claimed for them
    (task_claim: only a supervisor may give it to someone else); one already held is handed over
    by its agent or a supervisor (conversation_assign), to an agent or a team."""
    found = _conversation_for_reply(request, public_id)
    if request.method == "GET":
        members, teams = selectors.staff_to_choose()
        return _form(request, "assign", found, members=members, teams=teams)
    picked, chosen = _choice(request.POST.get("to", ""), STAFF, "an agent or a team")
    note = request.POST.get("note", "").strip()
    held_before = found.assignee_id == request.membership.pk
    waiting = selectors.conversation_waiting_task(found) if found.assignee_id is None else None
    if picked == "agent" and waiting is not None:
        task_claim(task=waiting, agent=chosen, actor=request.membership, note=note)
    elif picked == "agent":
        conversation_assign(conversation=found, agent=chosen, actor=request.membership, note=note)
    else:
        conversation_assign(conversation=found, team=chosen, actor=request.membership, note=note)
    holder = chosen.display_name if picked == "agent" else f"team {chosen.name}"
    return _redrawn(request, public_id, f"Assigned to {holder}.", held_before=held_before, task_list=True)


@require_http_methods(GET_OR_POST)
@member_required()
def transfer(request, public_id: str):
    """Transfer to a queue (the agent lets go and the conversation waits there) or to an agent
    (handed over directly), with a note."""
    found = _conversation_for_reply(request, public_id)
    if request.method == "GET":
        members, _ = selectors.staff_to_choose()
        return _form(request, "transfer", found, members=members, queues=selectors.queues_to_choose())
    kinds = {"queue": Queue, "agent": STAFF["agent"]}
    picked, chosen = _choice(request.POST.get("to", ""), kinds, "a queue or an agent")
    note = request.POST.get("note", "").strip()
    held_before = found.assignee_id == request.membership.pk
    if picked == "queue":
        conversation_transfer(conversation=found, queue=chosen, actor=request.membership, note=note)
        done = f"Transferred to the {chosen.name} queue."
    else:
        conversation_assign(conversation=found, agent=chosen, actor=request.membership, note=note)
        done = f"Transferred to {chosen.display_name}."
    return _redrawn(request, public_id, done, held_before=held_before, task_list=True)


@require_http_methods(GET_OR_POST)
@member_required()
def merge(request, public_id: str):
    """Merge another conversation of the same contact into this one (this one stays)."""
    found = _conversation_for_reply(request, public_id)
    if request.method == "GET":
        return _form(request, "merge", found, candidates=selectors.merge_candidates(found))
    chosen = request.POST.get("duplicate", "")
    if not chosen:
        raise FormIncomplete("Choose the conversation to merge into this one.")
    others = Conversation.objects.filter(contact_id=found.contact_id).exclude(pk=found.pk)
    duplicate = get_in_tenant_or_404(others.select_related("assignee__user"), public_id=chosen)
    if duplicate.assignee_id not in (None, request.membership.pk) and not request.membership.can_supervise:
        raise PermissionDenied(f"{duplicate.assignee.display_name} is handling the other conversation.")
    conversation_merge(
        duplicate=duplicate, survivor=found, actor=request.membership, reason=request.POST.get("reason", "").strip()
    )
    return _redrawn(request, public_id, "The other conversation was merged into this one.", task_list=True)


@require_http_methods(GET_OR_POST)
@member_required()
def split(request, public_id: str):
    """Move the chosen messages to a new conversation (routed like this one's)."""
    found = _conversation_for_reply(request, public_id)
    if request.method == "GET":
        return _form(request, "split", found, split_messages=selectors.split_candidates(found))
    new = conversation_split(
        conversation=found,
        message_ids=request.POST.getlist("message"),
        actor=request.membership,
        reason=request.POST.get("reason", "").strip(),
    )
    return _redrawn(request, public_id, f"The chosen messages now make conversation {new.public_id}.")


@require_POST
@member_required()
def schedule(request, public_id: str):
    found = _conversation_for_reply(request, public_id)
    send_at = _local_time(request, request.POST.get("send_at", ""), "when to send it")
    message_schedule(conversation=found, author=request.membership, body=request.POST.get("body", ""), send_at=send_at)
    zone = ZoneInfo(request.membership.tenant.time_zone)
    return _redrawn(request, public_id, f"Message scheduled for {send_at.astimezone(zone):%a %d %b %H:%M} ({zone}).")


@require_http_methods(GET_OR_POST)
@member_required()
def outbound(request, public_id: str):
    """Write to this conversation's contact first, on a channel one of their identities reaches: a new
    conversation, held by the agent, opened as a pane."""
    found = selectors.conversation_for_pane(public_id)
    if request.method == "GET":
        return _form(
            request,
            "outbound",
            found,
            channels=selectors.outbound_channels(found.contact),
            queues=selectors.queues_to_choose(),
            current_queue_id=selectors.conversation_queue_id(found),
        )
    channel = request.POST.get("channel", "")
    if channel not in Channel.values:
        raise FormIncomplete("Choose the channel to write on.")
    chosen = request.POST.get("queue", "")
    queue = get_in_tenant_or_404(Queue, public_id=chosen) if chosen else None
    started = conversation_start_outbound(
        contact=found.contact,
        channel=channel,
        author=request.membership,
        body=request.POST.get("body", ""),
        queue=queue,
    )
    done = f"Started a {started.get_channel_display()} conversation with {found.contact}."
    return _redrawn(request, public_id, done, opened=started)
