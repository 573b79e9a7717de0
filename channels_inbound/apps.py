from django.apps import AppConfig


class ChannelsInboundConfig(AppConfig):
    name = "channels_inbound"
    verbose_name = "Channels"
