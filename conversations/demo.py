"""Demo reply templates for one tenant (called by contactcenter.demo)."""

from conversations.models import ReplyTemplate

DEMO_TEMPLATES = (
    ("/hello", "Greeting", "Greetings", "Hi {{contact.name}}, this is {{agent.name}}. How can I help you today?"),
    ("/thanks", "Thanks and goodbye", "Greetings", "Thank you for contacting us, {{contact.name}}. Have a great day!"),
    ("/hold", "Checking", "Progress", "Thanks for your patience, I am checking this for you now."),
)


def seed_conversations_demo(tenant) -> list[str]:
    """Inside tenant_context(tenant): create the missing templates; a line per row created."""
    created = []
    for shortcut, name, category, body in DEMO_TEMPLATES:
        _, made = ReplyTemplate.objects.get_or_create(
            tenant=tenant, shortcut=shortcut, defaults={"name": name, "category": category, "body": body}
        )
        if made:
            created.append(f"reply template {shortcut} for {tenant.slug}")
    return created
