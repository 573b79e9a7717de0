"""The agent desktop's pages and actions. Each parses, calls one service, and answers with the
fragments that changed (the same ones a websocket push would bring).

A rule a service refuses (an offer already taken, a disposition missing) is a DomainError: the
middleware answers 409 with the message, and the desktop shows it without touching the screen.
"""

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from contactcenter import realtime
from contactcenter.access import member_required
from contactcenter.tenancy import get_in_tenant_or_404
from conversations.errors import MessageNotAllowed
from conversations.models import Conversation, Message
from conversations.selectors import (
    reply_template_render,
    reply_templates_matching,
    sensitive_spans,
)
from conversations.services import (
    conversation_end,
    message_delivery_retry,
    message_send_reply,
    note_add,
)
from desktop import fragments, selectors
from tasks.models import AgentStatus, BreakReason, Disposition, Offer, Queue, Task
from tasks.services import (
    agent_choose_queues,
    agent_set_status,
    offer_accept,
    offer_decline,
    task_claim,
    task_complete,
    task_start,
)

MAX_UPLOAD_FILES = 5


def _opened(response: HttpResponse, conversation_public_id: str) -> HttpResponse:
    """Tell desktop.js to bring a conversation to the front once the response is swapped in."""
    response["HX-Trigger-After-Settle"] = f'{{"desktop:open": "{conversation_public_id}"}}'
    return response


def _conversation_for_reply(request, public_id: str) -> Conversation:
    conversation = selectors.conversation_for_pane(public_id)
    if conversation.assignee_id != request.membership.pk and not request.membership.can_supervise:
        raise PermissionDenied("Only the agent handling this conversation can act on it.")
    return conversation


@require_GET
@member_required()
def workspace(request):
    membership = request.membership
    opened = []
    if wanted := request.GET.get("open"):
        opened.append(fragments.conversation_pane(selectors.conversation_for_pane(wanted), membership))
    bar = selectors.agent_bar(membership)
    return render(
        request,
        "desktop/workspace.html",
        {
            "bar": bar,
            "tasks": selectors.agent_task_list(membership, pick_queue_ids=bar.pick_queue_ids),
            "opened": opened,
            "position": realtime.member_event_position(membership.tenant_id, membership.pk),
        },
    )


@require_GET
@member_required()
def unassigned(request):
    return render(
        request,
        "desktop/partials/unassigned.html",
        {"unassigned": list(selectors.unassigned_tasks())},
    )


@require_GET
@member_required()
def conversation(request, public_id: str):
    found = selectors.conversation_for_pane(public_id)
    return _opened(
        HttpResponse(fragments.conversation_pane(found, request.membership)),
        found.public_id,
    )


@require_GET
@member_required()
def history_earlier(request, public_id: str):
    """The stretch of a conversation's history before the message `before` (the "Show earlier
    messages" button)."""
    found = selectors.conversation_for_pane(public_id)
    before = request.GET.get("before", "")
    if not before:
        return HttpResponse("Say which message to show the history before.", status=400)
    entries, earlier_before = selectors.conversation_history_before(found, before)
    return HttpResponse(fragments.history_earlier(found, request.membership, entries, earlier_before))


@require_POST
@member_required()
def status(request):
    wanted = request.POST.get("status", "")
    if wanted not in AgentStatus.values:
        return HttpResponse("Choose Available or Unavailable.", status=400)
    reason = None
    if wanted == AgentStatus.UNAVAILABLE:
        reason = get_in_tenant_or_404(BreakReason, public_id=request.POST.get("break_reason", ""))
    agent_set_status(
        membership=request.membership,
        status=wanted,
        break_reason=reason,
        actor=request.membership,
    )
    return HttpResponse(fragments.agent_bar(request.membership))


@require_POST
@member_required()
def queues(request):
    chosen = list(Queue.objects.filter(public_id__in=request.POST.getlist("queue")))
    agent_choose_queues(membership=request.membership, queues=chosen)
    return HttpResponse(fragments.agent_bar(request.membership))


@require_POST
@member_required()
def offer_accept_view(request, public_id: str):
    offer = get_in_tenant_or_404(Offer.objects.select_related("task"), public_id=public_id)
    task = offer_accept(offer=offer, agent=request.membership)
    return _task_opened(request, task)


@require_POST
@member_required()
def offer_decline_view(request, public_id: str):
    offer = get_in_tenant_or_404(Offer.objects.select_related("task"), public_id=public_id)
    offer_decline(offer=offer, agent=request.membership)
    return HttpResponse(fragments.task_list(request.membership))


@require_POST
@member_required()
def task_claim_view(request, public_id: str):
    task = get_in_tenant_or_404(Task, public_id=public_id)
    task_claim(task=task, agent=request.membership)
    return _task_opened(request, task)


def _task_opened(request, task: Task) -> HttpResponse:
    """The task list, plus the task's conversation appended to the open panes."""
    html = fragments.task_list(request.membership)
    if task.conversation_id is None:
        return HttpResponse(html)
    found = selectors.conversation_for_pane(task.conversation.public_id)
    response = HttpResponse(html + fragments.pane_appended(found, request.membership))
    return _opened(response, found.public_id)


@require_POST
@member_required()
def task_start_view(request, public_id: str):
    task_start(task=get_in_tenant_or_404(Task, public_id=public_id), actor=request.membership)
    return HttpResponse(fragments.task_list(request.membership))


@require_POST
@member_required()
def task_complete_view(request, public_id: str):
    """A To Do item resolved from the task list (conversation tasks complete through wrap-up)."""
    task_complete(task=get_in_tenant_or_404(Task, public_id=public_id), actor=request.membership)
    return HttpResponse(fragments.task_list(request.membership))


@require_POST
@member_required()
def task_wrap_up(request, public_id: str):
    task = get_in_tenant_or_404(Task.objects.select_related("queue", "conversation"), public_id=public_id)
    if task.assignee_id != request.membership.pk:
        raise PermissionDenied("Only the agent who handled this task can wrap it up.")
    chosen = request.POST.get("disposition", "")
    disposition = get_in_tenant_or_404(Disposition, public_id=chosen) if chosen else None
    task_complete(
        task=task,
        actor=request.membership,
        disposition=disposition,
        notes=request.POST.get("notes", ""),
    )
    conversation = selectors.conversation_for_pane(task.conversation.public_id)
    return HttpResponse(
        fragments.conversation_actions(conversation, request.membership)
        + fragments.task_list(request.membership, oob=True)
    )


@require_POST
@member_required()
def conversation_end_view(request, public_id: str):
    found = _conversation_for_reply(request, public_id)
    conversation_end(conversation=found, actor=request.membership, reason="The agent ended the chat.")
    found = selectors.conversation_for_pane(public_id)
    return HttpResponse(
        fragments.conversation_actions(found, request.membership)
        + fragments.composer(found, request.membership, can_reply=False, oob=True)
    )


@require_POST
@member_required()
def reply(request, public_id: str):
    """Send a reply; text that looks like card numbers or ID numbers comes back with a warning
    first, and goes out only when the agent chooses "Send anyway" (logged by the service)."""
    found = _conversation_for_reply(request, public_id)
    body = request.POST.get("body", "")
    uploads = request.FILES.getlist("files")
    context = {"can_reply": True, "templates": selectors.reply_templates()}
    if len(uploads) > MAX_UPLOAD_FILES:
        error = f"Send at most {MAX_UPLOAD_FILES} files with one message."
        return HttpResponse(fragments.composer(found, request.membership, body=body, error=error, **context))
    files = [(upload.name, upload.read()) for upload in uploads]
    spans = sensitive_spans(body)
    send_anyway = request.POST.get("send_anyway") == "1"
    if spans and not send_anyway:
        return HttpResponse(fragments.composer(found, request.membership, body=body, spans=spans, **context))
    try:
        message = message_send_reply(
            conversation=found, author=request.membership, body=body, files=files,
            sensitive_data_sent=[span.label for span in spans] if send_anyway else (),
        )  # fmt: skip
    except MessageNotAllowed as refused:
        return HttpResponse(fragments.composer(found, request.membership, body=body, error=str(refused), **context))
    return HttpResponse(
        fragments.composer(found, request.membership, **context)
        + fragments.message_appended(message, request.membership)
    )


@require_POST
@member_required()
def note(request, public_id: str):
    found = selectors.conversation_for_pane(public_id)
    created = note_add(conversation=found, author=request.membership, body=request.POST.get("body", ""))
    form = fragments.note_form(found, request.membership)
    return HttpResponse(form + fragments.note_appended(created, request.membership))


@require_POST
@member_required()
def message_retry(request, public_id: str):
    message = get_in_tenant_or_404(Message.objects.select_related("conversation"), public_id=public_id)
    _conversation_for_reply(request, message.conversation.public_id)
    message_delivery_retry(message=message, actor=request.membership)
    return HttpResponse(fragments.message_replaced(message, request.membership, oob=False))


@require_GET
@member_required()
def template_text(request, public_id: str):
    """The reply template a /shortcut names, filled in for this conversation, as plain text (404: none)."""
    found = selectors.conversation_for_pane(public_id)
    template = reply_templates_matching(request.GET.get("shortcut", "")).order_by("shortcut").first()
    if template is None:
        return HttpResponse(
            "No template has that shortcut.",
            status=404,
            content_type="text/plain; charset=utf-8",
        )
    text = reply_template_render(template=template, contact=found.contact, agent=request.membership)
    return HttpResponse(text, content_type="text/plain; charset=utf-8")
