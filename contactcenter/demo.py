"""Demo tenants, people, channel endpoints, queues, dispositions, reply templates and a follow-up
rule, for the run command and for trying the product.

Idempotent: every row is looked up by its natural key first, and nothing that exists is changed,
so running it twice changes nothing (a password a user changed stays changed).
"""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction

from channels_inbound.models import Channel, ChannelEndpoint, Provider
from channels_inbound.webchat.demo import seed_webchat_demo
from contactcenter.models import Membership, Role, Tenant
from contactcenter.tenancy import dangerously_all_tenants, tenant_context
from conversations.demo import seed_conversations_demo
from tasks.demo import seed_tasks_demo

DEMO_PASSWORD = "switchboard-demo"


@dataclass(frozen=True)
class DemoTenant:
    slug: str
    name: str
    time_zone: str
    sms_number: str
    account_sid: str
    auth_token: str


DEMO_TENANTS = (
    DemoTenant("acme", "Acme Support", "America/New_York", "+15005550001", "AC" + "a" * 32, "acme-demo-auth-token"),
    DemoTenant("globex", "Globex Care", "Europe/London", "+15005550002", "AC" + "b" * 32, "globex-demo-auth-token"),
)
DEMO_PEOPLE = (
    ("admin", Role.ADMIN, "Ada", "Admin"),
    ("supervisor", Role.SUPERVISOR, "Sam", "Supervisor"),
    ("agent1", Role.AGENT, "Alex", "Agent"),
    ("agent2", Role.AGENT, "Blake", "Agent"),
    ("agent3", Role.AGENT, "Casey", "Agent"),
)


def demo_usernames(slug: str) -> list[str]:
    return [f"{slug}-{suffix}" for suffix, *_ in DEMO_PEOPLE]


# The mailbox each demo tenant receives email at, and the secret its relay presents (HTTP Basic password).
DEMO_MAILBOXES = {
    "acme": ("support@acme.example", "acme-demo-email-secret"),
    "globex": ("support@globex.example", "globex-demo-email-secret"),
}


@transaction.atomic
def seed_demo() -> list[str]:
    """Create what is missing; return a line per row created."""
    created: list[str] = []
    User = get_user_model()
    for spec in DEMO_TENANTS:
        tenant, made = Tenant.objects.get_or_create(
            slug=spec.slug, defaults={"name": spec.name, "time_zone": spec.time_zone}
        )
        if made:
            created.append(f"tenant {tenant.slug}")
        with tenant_context(tenant):
            for suffix, role, first, last in DEMO_PEOPLE:
                username = f"{spec.slug}-{suffix}"
                user = User.objects.filter(username=username).first()
                if user is None:
                    user = User.objects.create_user(
                        username=username,
                        password=DEMO_PASSWORD,
                        first_name=first,
                        last_name=last,
                        email=f"{username}@example.com",
                    )
                    created.append(f"user {username}")
                _, made = Membership.objects.get_or_create(tenant=tenant, user=user, defaults={"role": role})
                if made:
                    created.append(f"membership {username} as {role}")
            with dangerously_all_tenants():  # the address is unique across tenants
                exists = ChannelEndpoint.objects.filter(provider=Provider.TWILIO, address=spec.sms_number).exists()
            if not exists:
                endpoint = ChannelEndpoint(
                    tenant=tenant,
                    provider=Provider.TWILIO,
                    channel=Channel.SMS,
                    address=spec.sms_number,
                    name=f"{spec.name} SMS",
                    account_sid=spec.account_sid,
                )
                endpoint.set_auth_token(spec.auth_token)
                endpoint.save()
                created.append(f"twilio endpoint {spec.sms_number}")
            created += _seed_email_endpoint(tenant, spec)
            created += seed_webchat_demo(tenant)
            created += seed_tasks_demo(tenant)
            created += seed_conversations_demo(tenant)
    return created


def _seed_email_endpoint(tenant: Tenant, spec: DemoTenant) -> list[str]:
    address, secret = DEMO_MAILBOXES[spec.slug]
    with dangerously_all_tenants():  # the address is unique across tenants
        if ChannelEndpoint.objects.filter(provider=Provider.EMAIL, address=address).exists():
            return []
    endpoint = ChannelEndpoint(
        tenant=tenant, provider=Provider.EMAIL, channel=Channel.EMAIL, address=address, name=f"{spec.name} email"
    )
    endpoint.set_auth_token(secret)
    endpoint.save()
    return [f"email endpoint {address}"]
