"""What a channel does the moment an agent takes a task on it.

Most channels need nothing: the conversation is simply theirs. A phone call is different: the
caller waits in the provider's queue until the call is connected to the agent's phone. The channel
registers that step here (voice: channels_inbound.twilio.voice.voice_call_bridge), so the routing
services stay free of provider code, as conversations.delivery does for outbound messages.

Hooks run inside the acceptance's transaction, after the task is the agent's: a hook that raises a
DomainError (no phone number set, the call could not be connected) rolls the acceptance back and the
agent is told why. A hook must be idempotent: the same agent taking the same task twice acts once.
"""

from collections.abc import Callable

AcceptanceHook = Callable[..., None]  # called as hook(task=..., agent=...)

HOOKS: dict[str, AcceptanceHook] = {}


def register_acceptance_hook(channel: str, hook: AcceptanceHook) -> None:
    HOOKS[channel] = hook


def acceptance_hooks_run(*, task, agent) -> None:
    hook = HOOKS.get(task.channel)
    if hook is not None:
        hook(task=task, agent=agent)
