"""Phone calls through Twilio: the caller is greeted and waits in a Twilio queue named after their
task while it is routed; the agent who accepts it is connected by redirecting the live call to
<Dial> their phone.

Who wins when the caller hangs up just as an agent accepts: the hang-up locks the task, then the
call row; bridging claims the call row with a compare-and-set, and is called from offer acceptance,
which holds the task. So the locks are always taken task → call (no deadlock) and whichever commits
first decides: a call bridged first is left to the agent's wrap-up; a call that ended first cancels
its waiting task and is never dialled.
"""

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from twilio.base.exceptions import TwilioRestException
from twilio.twiml.voice_response import VoiceResponse

from channels_inbound.models import CallStatus, Channel, ChannelEndpoint, VoiceCall
from channels_inbound.services import inbound_conversation_route
from channels_inbound.twilio.rest import twilio_client
from contactcenter.errors import AlreadyTaken, DomainError
from conversations.errors import ensure_same_tenant
from conversations.models import IdentityKind, Via
from conversations.services import (
    contact_find_or_create,
    conversation_find_or_start,
    conversation_start,
    message_append_inbound,
)
from tasks.models import Task, TaskStatus
from tasks.services import task_transition

# ChannelEndpoint allows one endpoint per address, and one Twilio number takes both messages and
# calls: a number set up for SMS answers calls too.
CALL_CHANNELS = (Channel.VOICE, Channel.SMS)
FINAL_CALL_STATUSES = frozenset(
    {CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.CANCELED, CallStatus.FAILED}
)
# A call's status only moves up these steps; once final it never changes (callbacks arrive late or twice).
CALL_STATUS_STEP = {
    CallStatus.QUEUED: 0, CallStatus.INITIATED: 0, CallStatus.RINGING: 1, CallStatus.IN_PROGRESS: 2,
    **dict.fromkeys(FINAL_CALL_STATUSES, 3),
}  # fmt: skip
OPEN_TASK_STATUSES = (TaskStatus.PENDING, TaskStatus.RESERVED, TaskStatus.ASSIGNED)
HUNG_UP_REASON = "The caller hung up before an agent answered."


class NoQueueForChannel(DomainError):
    """Nothing can be routed: the organisation has no queue taking this channel."""


class ChannelNotServed(DomainError):
    """The endpoint the provider called is set up for another channel."""


class NoPhoneNumber(DomainError):
    """The agent has no phone number to connect calls to."""


class CallNotBridged(DomainError):
    """The call could not be connected. `temporary`: trying again may work (Twilio unreachable,
    5xx, 429), sorted as channels_inbound.twilio.sender sorts message sends."""

    def __init__(self, reason: str, *, temporary: bool = False, code: str = ""):
        super().__init__(reason)
        self.temporary, self.code = temporary, code


def voice_call_arrive(*, endpoint: ChannelEndpoint, fields: dict) -> tuple[VoiceCall, bool]:
    """An inbound call: the caller's contact, a voice conversation with an "Incoming call" message,
    its task (inbound_conversation_route, as for every channel) and the VoiceCall row. Returns
    (call, created). Without a queue taking calls, NoQueueForChannel: nobody could ever answer.

    Runs in the webhook's transaction, inside the endpoint's tenant. Idempotent on CallSid: Twilio
    retries; concurrent retries queue up on the contact's lock (conversation_find_or_start holds it
    until commit), after which the call is looked up again. A task carries one call: when the
    conversation's open task is already another call's (the customer calls again while on hold, or
    before the agent has wrapped up), this call starts a conversation of its own.
    """
    if (call := _call_by_sid(fields["CallSid"])) is not None:
        return call, False
    if endpoint.channel not in CALL_CHANNELS:
        raise ChannelNotServed(f"{endpoint.address} is set up for {endpoint.get_channel_display()}, not for calls.")
    caller_name = fields.get("CallerName") or ""
    contact, _ = contact_find_or_create(kind=IdentityKind.PHONE, value=fields["From"], name=caller_name)
    conversation, _ = conversation_find_or_start(contact=contact, channel=Channel.VOICE, via=Via.WEBHOOK)
    if (call := _call_by_sid(fields["CallSid"])) is not None:
        return call, False
    if VoiceCall.objects.filter(conversation=conversation, task__status__in=OPEN_TASK_STATUSES).exists():
        conversation = conversation_start(contact=contact, channel=Channel.VOICE, via=Via.WEBHOOK)
    message_append_inbound(conversation=conversation, body="Incoming call", provider_message_id=fields["CallSid"])
    task = inbound_conversation_route(endpoint=endpoint, conversation=conversation)
    if task is None:
        raise NoQueueForChannel("No queue takes Voice work; add one in the admin.")
    call = VoiceCall.objects.create(
        tenant_id=endpoint.tenant_id, endpoint=endpoint, conversation=conversation, task=task,
        call_sid=fields["CallSid"], from_number=fields["From"], to_number=fields["To"], status=fields["CallStatus"],
    )  # fmt: skip
    return call, True


def _call_by_sid(call_sid: str) -> VoiceCall | None:
    return VoiceCall.objects.select_related("task").filter(call_sid=call_sid).first()


def voice_call_twiml(*, call: VoiceCall, organisation: str) -> str:
    """What Twilio does with the caller: greet them and hold them in the queue named after their task
    (the same for every retry of the call's webhook), with TWILIO_HOLD_MUSIC_URL as the music."""
    response = VoiceResponse()
    response.say(f"Thank you for calling {organisation}. Please hold for the next available agent.")
    queue_name = call.task.public_id if call.task_id else call.call_sid
    if settings.TWILIO_HOLD_MUSIC_URL:
        response.enqueue(queue_name, wait_url=settings.TWILIO_HOLD_MUSIC_URL, wait_url_method="GET")
    else:
        response.enqueue(queue_name)
    return str(response)


def voice_call_status_update(endpoint: ChannelEndpoint, fields: dict) -> bool:
    """Twilio's call status callback: move the call's status forward; when the call ends before an
    agent was bridged, cancel its task if still waiting (pending or reserved; its offers are
    withdrawn by task_transition, which writes the `status` row with HUNG_UP_REASON).

    Locks the task, then the call (see the module docstring). A late, repeated or backward status
    changes nothing and returns False; so does a call we do not know (the event log keeps it).
    """
    known = VoiceCall.objects.filter(call_sid=fields["CallSid"]).values_list("pk", "task_id").first()
    if known is None:
        return False
    call_id, task_id = known
    new_status = fields["CallStatus"]
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(pk=task_id).first() if task_id else None
        call = VoiceCall.objects.select_for_update().get(pk=call_id)
        if CALL_STATUS_STEP[new_status] <= CALL_STATUS_STEP[call.status]:
            return False
        now = timezone.now()
        ended = new_status in FINAL_CALL_STATUSES
        VoiceCall.objects.filter(pk=call.pk).update(status=new_status, updated_at=now, ended_at=now if ended else None)
        waiting = task is not None and task.status in (TaskStatus.PENDING, TaskStatus.RESERVED)
        if ended and waiting and call.bridged_to_id is None:
            task_transition(task=task, to_status=TaskStatus.CANCELED, via=Via.WEBHOOK, reason=HUNG_UP_REASON)
    return True


def voice_call_bridge(*, task, agent) -> None:
    """Connect the caller waiting for `task` to `agent`: Twilio's REST API is told to take the live
    call out of the queue and <Dial> the agent's phone number.

    Call it when the agent accepts the offer (inside or after that transaction; inside, a refusal
    rolls the acceptance back). Raises NoPhoneNumber before anything changes when the agent has no
    number. Bridges once: the call row is claimed with a compare-and-set (nobody bridged yet, call
    not over), so calling it again for the same agent returns, for another agent raises
    AlreadyTaken, and a caller who has hung up is never dialled (CallNotBridged). The REST call runs
    after the claim; when Twilio refuses or cannot be reached the claim is released and
    CallNotBridged carries Twilio's reason and whether retrying may help.
    """
    ensure_same_tenant(task, agent)
    if not agent.phone_number:
        raise NoPhoneNumber("Set your phone number to take calls.")
    call = VoiceCall.objects.select_related("endpoint").filter(task=task).first()
    if call is None:
        raise CallNotBridged("This task has no phone call to connect.")
    if call.endpoint is None:
        raise CallNotBridged("The number this call came in on is no longer set up.")
    now = timezone.now()
    claimed = (
        VoiceCall.objects.filter(pk=call.pk, bridged_to=None)
        .exclude(status__in=FINAL_CALL_STATUSES)
        .update(bridged_to=agent, bridged_at=now, updated_at=now)
    )
    if not claimed:
        call.refresh_from_db(fields=["bridged_to", "status"])
        if call.bridged_to_id == agent.pk:
            return
        if call.bridged_to_id is not None:
            raise AlreadyTaken("This call is already connected to another agent.")
        raise CallNotBridged("The caller has already hung up.")
    endpoint = call.endpoint
    dial = VoiceResponse()
    dial.dial(agent.phone_number)
    try:
        twilio_client(endpoint.account_sid, endpoint.auth_token()).calls(call.call_sid).update(twiml=str(dial))
    except TwilioRestException as error:
        _bridge_release(call, agent)
        temporary = error.status >= 500 or error.status == 429
        code = str(error.code or error.status)
        raise CallNotBridged(f"Twilio {code}: {error.msg}", temporary=temporary, code=code) from error
    except requests.RequestException as error:
        _bridge_release(call, agent)
        raise CallNotBridged(f"Twilio could not be reached: {type(error).__name__}", temporary=True) from error


def voice_call_bridge_on_acceptance(*, task, agent) -> None:
    """The acceptance hook (tasks.acceptance): an agent who takes a voice task with a caller
    waiting is connected to them. A voice task with no call behind it (a callback to make, say)
    is taken like any other task."""
    if VoiceCall.objects.filter(task=task).exists():
        voice_call_bridge(task=task, agent=agent)


def _bridge_release(call: VoiceCall, agent) -> None:
    VoiceCall.objects.filter(pk=call.pk, bridged_to=agent).update(bridged_to=None, bridged_at=None)
