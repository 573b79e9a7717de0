"""The demo tenants' webchat widgets (called by contactcenter.demo): stable keys, so the run command
can print /webchat/demo/?key=acme-demo-widget, embeddable from the run command's own pages."""

from channels_inbound.models import Channel, ChannelEndpoint, Provider
from contactcenter.tenancy import dangerously_all_tenants

DEMO_WIDGET_ORIGINS = "http://127.0.0.1:8000\nhttp://localhost:8000"


def seed_webchat_demo(tenant) -> list[str]:
    """Inside tenant_context(tenant): the tenant's demo widget unless it exists; a line per row created."""
    key = f"{tenant.slug}-demo-widget"
    with dangerously_all_tenants():  # the key is unique across tenants
        if ChannelEndpoint.objects.filter(provider=Provider.WEBCHAT, address=key).exists():
            return []
    ChannelEndpoint.objects.create(
        tenant=tenant, provider=Provider.WEBCHAT, channel=Channel.WEBCHAT, address=key,
        name=f"{tenant.name} website chat", allowed_origins=DEMO_WIDGET_ORIGINS,
    )  # fmt: skip
    return [f"webchat widget {key} (try /webchat/demo/?key={key})"]
