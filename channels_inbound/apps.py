from django.apps import AppConfig


class ChannelsInboundConfig(AppConfig):
    name = "channels_inbound"
    verbose_name = "Channels"

    def ready(self):
        # Each provider registers its outbound sender with conversations.delivery on import.
        from channels_inbound.email import outbound  # noqa: F401  email
        from channels_inbound.models import Channel
        from channels_inbound.twilio import sender  # noqa: F401  sms, whatsapp, messenger
        from channels_inbound.twilio.voice import voice_call_bridge_on_acceptance
        from channels_inbound.webchat import sender as webchat_sender  # noqa: F401  webchat
        from tasks.acceptance import register_acceptance_hook

        # A caller waits in Twilio's queue until an agent takes the call: then connect them.
        register_acceptance_hook(Channel.VOICE, voice_call_bridge_on_acceptance)
