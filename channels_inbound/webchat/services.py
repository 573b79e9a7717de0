"""What the webchat widget stores, through the conversation services, and what it pushes to visitors.

Each runs inside the widget endpoint's tenant (the caller's tenant_context).
"""

from django.db import connection, transaction

from channels_inbound.models import Channel, ChannelEndpoint
from channels_inbound.services import inbound_conversation_route
from channels_inbound.webchat.protocol import message_frame, provider_message_id_of
from channels_inbound.webchat.selectors import (
    queue_line_visitors,
    queue_position,
    visitor_ids_of,
    webchat_tasks_in_line,
)
from contactcenter import realtime
from contactcenter.tenancy import current_tenant_id, tenant_context
from conversations.files import restriction_check
from conversations.models import Conversation, IdentityKind, Message, Via
from conversations.selectors import attachment_restrictions_for
from conversations.services import (
    attachment_add,
    contact_find_or_create,
    conversation_find_or_start,
    message_append_inbound,
)


def webchat_message_store(
    *, endpoint: ChannelEndpoint, visitor_id: str, client_id: str, body: str
) -> tuple[Message, bool]:
    """A visitor's message: find or create the contact (identity `webchat` = the visitor id) and their
    live webchat conversation, append the message, idempotent on the widget's client id (a resend
    returns the stored message), and queue the conversation for an agent. One transaction.
    Returns (message, created)."""
    with transaction.atomic():
        contact, _ = contact_find_or_create(kind=IdentityKind.WEBCHAT, value=visitor_id)
        conversation, _ = conversation_find_or_start(contact=contact, channel=Channel.WEBCHAT, via=Via.WEBHOOK)
        message, created = message_append_inbound(
            conversation=conversation, body=body, provider_message_id=provider_message_id_of(visitor_id, client_id)
        )
        if created:
            inbound_conversation_route(endpoint=endpoint, conversation=conversation)
        return message, created


def webchat_upload_store(
    *, endpoint: ChannelEndpoint, visitor_id: str, client_id: str, body: str, filename: str, content: bytes,
    content_type: str,
) -> tuple[Message, bool]:
    """A visitor's file (content type already sniffed by the caller) on a new inbound message, as
    webchat_message_store; a resend of the same client id stores nothing. One transaction.
    A kind of file the tenant's admins refuse on webchat (AttachmentRestriction) raises
    AttachmentNotAllowed with their reason, before anything is written."""
    restrictions = attachment_restrictions_for(channel=Channel.WEBCHAT)
    restriction_check(restrictions, filename=filename, content_type=content_type, where="here")
    with transaction.atomic():
        message, created = webchat_message_store(endpoint=endpoint, visitor_id=visitor_id, client_id=client_id, body=body)
        if created:
            attachment_add(message=message, filename=filename, content=content, content_type=content_type)
    return message, created


def webchat_reply_push(message: Message) -> int:
    """An agent's message to the browsers of the conversation's visitor, on commit. Returns how many
    visitors it was pushed to (0: the contact never wrote through the widget)."""
    frame = message_frame(message)
    visitor_ids = visitor_ids_of(message.conversation)
    for visitor_id in visitor_ids:
        realtime.push_to_webchat_visitor(message.tenant_id, visitor_id, event="message", data={"message": frame})
    return len(visitor_ids)


def webchat_queue_position_push(conversation: Conversation) -> None:
    """Tell the conversation's visitor their place in line ("You are number n in line"; null hides
    it), on commit. Routing tells a whole queue's line at once: webchat_queue_line_changed."""
    position = queue_position(conversation)
    for visitor_id in visitor_ids_of(conversation):
        realtime.push_to_webchat_visitor(conversation.tenant_id, visitor_id, event="queue", data={"position": position})


def webchat_queue_line_changed(*, tenant_id: int, queue_id: int, task_id: int) -> None:
    """The waiting line of a queue changed (`task_id` joined or left it): once the transaction
    commits, tell the webchat visitors waiting in it their place, and the task's visitor that they
    are no longer waiting (webchat_queue_line_push).

    Routing calls this from its transitions, so it does no query here: one push per queue and
    transaction is registered on commit (later changes of the same queue join it, the way
    tasks.services.routing_request gathers its requests), and that push reads the whole line at once.
    """
    key = (tenant_id, queue_id)
    if connection.in_atomic_block:
        for _, func, _ in connection.run_on_commit:
            if getattr(func, "webchat_queue_line", None) == key:
                func.task_ids.add(task_id)
                return

    def push() -> None:
        with tenant_context(tenant_id):
            webchat_queue_line_push(queue_id=queue_id, task_ids=push.task_ids)

    push.webchat_queue_line, push.task_ids = key, {task_id}
    # robust: a failed notification is logged and must not fail the change that committed.
    transaction.on_commit(push, robust=True)


def webchat_queue_line_push(*, queue_id: int, task_ids=()) -> int:
    """Push every webchat visitor waiting in the queue their place in line, and null (no longer
    waiting) to the visitors of `task_ids` that left it. Runs inside the queue's tenant; one query
    when no webchat task is in the line or leaving it, else two (then queue_line_visitors). Returns
    how many visitors it told."""
    tenant_id = current_tenant_id()
    if not webchat_tasks_in_line(queue_id=queue_id, task_ids=task_ids):
        return 0  # nobody to tell: most lines (SMS, voice, email) never pay for reading the whole queue
    line = queue_line_visitors(queue_id=queue_id, task_ids=task_ids)
    for visitor_id, position in line:
        realtime.push_to_webchat_visitor(tenant_id, visitor_id, event="queue", data={"position": position})
    return len(line)
