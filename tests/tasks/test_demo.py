"""The demo seed adds queues, dispositions, templates and a rule per tenant, idempotently."""

from contactcenter.demo import seed_demo
from contactcenter.models import Tenant
from contactcenter.tenancy import tenant_context
from conversations.models import ReplyTemplate
from tasks.models import AutomationRule, Disposition, Queue


def test_the_demo_has_the_domain_defaults_and_seeding_twice_adds_nothing(db):
    seed_demo()
    for tenant in Tenant.objects.all():
        with tenant_context(tenant):
            support = Queue.objects.get(name="Support")
            assert support.disposition_required and support.default_disposition.name == "Resolved"
            assert list(Disposition.objects.values_list("name", flat=True)) == [
                "Resolved",
                "Follow-up Required",
                "Escalation",
            ]
            assert ReplyTemplate.objects.filter(shortcut="/hello").exists()
            assert AutomationRule.objects.get().disposition.name == "Follow-up Required"
    assert seed_demo() == []
