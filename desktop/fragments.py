"""The desktop's HTML fragments, rendered the same way for an HTTP response and a websocket push.

Every fragment has a stable id and is sent as an htmx out-of-band swap, so the browser needs no
logic to apply it. A push names what changed (`offer.new`, `message.new`, ...); `for_event` turns it
into the fragments of this agent's screen that show it, read fresh from the database, so a fragment
is always the current state and applying one twice is harmless. Messages are the one exception:
they are appended (a 500-message history is not redrawn per message), and the browser drops an
append whose message it already shows.
"""

import hashlib
import re

from django.db.models import Prefetch
from django.template.loader import render_to_string
from django.utils import timezone

from contactcenter import realtime
from contactcenter.models import Membership
from conversations.models import ContactIdentity, Conversation, InternalNote, Message
from desktop import selectors

TASK_EVENTS = ("offer.", "task.", "agent.", "tasks.", "conversations.")
TIME_TEXT = re.compile(r"(<time[^>]*>)[^<]*(</time>)")
PANE_EVENTS = (
    "conversation.status",
    "conversation.assigned",
    "conversation.transferred",
    "conversation.priority",
    "conversation.tags",
    "conversation.merged",
    "conversation.split",
    "task.status",
    "task.assigned",
)


def _shows_in_task_list(event: str) -> bool:
    """Whether the event changes the task list or the status bar (a new message changes the preview)."""
    return event.startswith(TASK_EVENTS) or event in ("message.new", "conversation.created")


def _render(template: str, membership: Membership, **context) -> str:
    # Pushes are rendered outside any request: the tenant's time zone is set here, as for pages.
    with timezone.override(membership.tenant.time_zone):
        return render_to_string(
            f"desktop/partials/{template}", {"membership": membership, "now": timezone.now(), **context}
        )


def _with_digest(html: str) -> str:
    """Stamp a fragment with a digest of what it shows (clock texts aside, desktop.js ticks those), so
    the browser can skip a push that would redraw it unchanged: a button the agent is about to click
    is not replaced under their pointer by an identical one."""
    shown = TIME_TEXT.sub(r"\1\2", html).replace(' hx-swap-oob="true"', "", 1)
    return html.replace('data-digest=""', f'data-digest="{hashlib.md5(shown.encode()).hexdigest()}"', 1)


def agent_bar(membership: Membership, *, oob: bool = False) -> str:
    return _with_digest(_render("agent_bar.html", membership, bar=selectors.agent_bar(membership), oob=oob))


def task_list(membership: Membership, *, oob: bool = False) -> str:
    tasks = selectors.agent_task_list(membership)
    return _with_digest(_render("task_list.html", membership, tasks=tasks, oob=oob))


def conversation_pane(conversation: Conversation, membership: Membership, *, oob: bool = False) -> str:
    pane = selectors.conversation_pane(conversation, membership)
    return _render("conversation.html", membership, pane=pane, c=conversation, oob=oob)


def conversation_actions(conversation: Conversation, membership: Membership, *, oob: bool = False) -> str:
    pane = selectors.conversation_pane_task(conversation, membership)  # no history, contact or templates
    return _with_digest(_render("actions.html", membership, pane=pane, c=conversation, oob=oob))


def conversation_refresh(conversation: Conversation, membership: Membership) -> str:
    """An open conversation redrawn in place (history, actions, context), leaving the reply box and
    its draft alone."""
    pane = selectors.conversation_pane(conversation, membership, with_templates=False)  # the reply box stays
    return "".join(
        _with_digest(_render(template, membership, pane=pane, c=conversation, oob=True))
        for template in ("pane_state.html", "history.html", "actions.html", "context.html")
    )


def composer(conversation: Conversation, membership: Membership, *, oob: bool = False, **context) -> str:
    """The reply box; `context` carries can_reply, templates and, after a refusal, body/spans/error."""
    return _render("composer.html", membership, c=conversation, oob=oob, **context)


def note_form(conversation: Conversation, membership: Membership) -> str:
    return _render("note_form.html", membership, c=conversation)


def history_earlier(conversation: Conversation, membership: Membership, entries, earlier_before) -> str:
    """Older history, put where the "Show earlier" button was (with a new button when more remain)."""
    button = (
        _render("history_earlier.html", membership, c=conversation, before=earlier_before) if earlier_before else ""
    )
    return button + _render("history_entries.html", membership, c=conversation, entries=entries, before=True)


def message_appended(message: Message, membership: Membership) -> str:
    _ensure_files(message)
    return _render("message_append.html", membership, message=message, c=message.conversation)


def message_replaced(message: Message, membership: Membership, *, oob: bool = True) -> str:
    _ensure_files(message)
    return _render("message.html", membership, message=message, message_oob=oob)


def note_appended(note: InternalNote, membership: Membership) -> str:
    return _render("note_append.html", membership, note=note, c=note.conversation)


def sequence_marker(seq: str) -> str:
    """The event number the browser remembers, stripped by desktop.js before htmx swaps the rest."""
    return f'<div data-desktop-seq="{seq}" hidden></div>' if seq else ""


def for_event(membership: Membership, event: str, data: dict, open_conversations=frozenset()) -> str:
    """The fragments of `membership`'s screen that show `event` (see module docstring).

    `open_conversations`: the conversations the browser shows, for the bulk events a supervisor's
    action sends (`conversations.status` names many at once)."""
    parts: list[str] = []
    if _shows_in_task_list(event):
        parts += [task_list(membership, oob=True), agent_bar(membership, oob=True)]
    conversation_id = data.get("conversation")
    if event == "message.new" and data.get("message"):
        message = _message(data["message"])
        if message is not None:
            parts.append(message_appended(message, membership))
    elif event == "message.status" and data.get("message"):
        message = _message(data["message"])
        if message is not None:
            parts.append(message_replaced(message, membership))
    elif event == "note.new" and data.get("note"):
        note = (
            InternalNote.objects.select_related("author__user", "conversation").filter(public_id=data["note"]).first()
        )
        if note is not None:
            parts.append(note_appended(note, membership))
    if event in PANE_EVENTS:
        conversation = _conversation(conversation_id) if conversation_id else _conversation_of_task(data.get("task"))
        if conversation is not None:
            parts.append(conversation_actions(conversation, membership, oob=True))
            parts.append(_render("pane_state.html", membership, c=conversation, oob=True))
            if event == "conversation.assigned" and conversation.assignee_id == membership.pk:
                # Work given to this agent (auto-answer, a supervisor, another tab's accept) opens
                # by itself; desktop.js drops the pane when the screen shows it already.
                parts.append(pane_appended(conversation, membership))
    if event == "conversations.status":
        for conversation in _conversations(set(data.get("conversations", [])) & set(open_conversations)):
            parts.append(conversation_actions(conversation, membership, oob=True))
            parts.append(_render("pane_state.html", membership, c=conversation, oob=True))
    return "".join(parts)


def pane_appended(conversation: Conversation, membership: Membership) -> str:
    return f'<div hx-swap-oob="beforeend:#panes">{conversation_pane(conversation, membership)}</div>'


def for_resume(
    membership: Membership, position: str, open_conversations: list[str], newest_shown: dict[str, str] | None = None
) -> tuple[str, str]:
    """What a reconnecting browser missed since `position`: the fragments of the missed events, or,
    when the gap cannot be served, the whole screen (bar, task list and every open conversation).
    Returns (the browser's number after it applies them, the HTML; "" when nothing was missed).

    `newest_shown` (open conversation -> the newest message its pane shows) catches what the event
    log cannot: a message committed by a process killed before its push was numbered. An open
    conversation whose newest stored message is another one is redrawn too."""
    events = realtime.member_events_after(membership.tenant_id, membership.pk, position)
    if events is None:
        latest = realtime.member_event_start(membership.tenant_id, membership.pk)  # read before the rows
        parts = [agent_bar(membership, oob=True), task_list(membership, oob=True)]
        for conversation in _conversations(open_conversations[:20]):
            parts.append(conversation_refresh(conversation, membership))
        return latest, sequence_marker(latest) + "".join(parts)
    parts = []
    if any(_shows_in_task_list(e["event"]) for e in events):
        parts += [agent_bar(membership, oob=True), task_list(membership, oob=True)]
    touched = {e["data"].get("conversation") for e in events} & set(open_conversations)
    if newest_shown:
        newest = selectors.newest_messages(list(newest_shown))
        touched |= {pid for pid, shown in newest_shown.items() if newest.get(pid, "") != shown}
    for conversation in _conversations(touched):
        parts.append(conversation_refresh(conversation, membership))
    if not parts:
        return position, ""
    seq = events[-1]["seq"] if events else position
    return seq, sequence_marker(seq if events else "") + "".join(parts)


def _message(public_id: str) -> Message | None:
    message = Message.objects.select_related("author__user", "conversation").filter(public_id=public_id).first()
    return selectors.attach_files([message])[0] if message else None


def _ensure_files(message: Message) -> None:
    if not hasattr(message, "files"):
        selectors.attach_files([message])


def _with_contact():
    """Conversations with what their redrawn panes show of the contact: a contact without a name is
    shown by its first identity, several times a pane (a query each, unprefetched)."""
    return Conversation.objects.select_related("contact", "assignee__user").prefetch_related(
        Prefetch("contact__identities", queryset=ContactIdentity.objects.order_by("id"))
    )


def _conversations(public_ids) -> list[Conversation]:
    return list(_with_contact().filter(public_id__in=list(public_ids)))


def _conversation(public_id: str) -> Conversation | None:
    return Conversation.objects.select_related("contact", "assignee__user").filter(public_id=public_id).first()


def _conversation_of_task(task_public_id: str | None) -> Conversation | None:
    if not task_public_id:
        return None
    return (
        Conversation.objects.select_related("contact", "assignee__user").filter(tasks__public_id=task_public_id).first()
    )
