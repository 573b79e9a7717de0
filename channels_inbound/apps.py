from django.apps import AppConfig


class ChannelsInboundConfig(AppConfig):
    name = "channels_inbound"
    verbose_name = "Channels"

    def ready(self):
        # Each provider registers its outbound sender with conversations.delivery on import.
        from channels_inbound.twilio import sender  # noqa: F401  sms, whatsapp, messenger
        from channels_inbound.email import outbound  # noqa: F401  email
        from channels_inbound.webchat import sender as webchat_sender  # noqa: F401  webchat
