"""Demo queues, dispositions and an automation rule for one tenant (called by contactcenter.demo)."""

from contactcenter.models import Membership, Role
from tasks.models import AgentState, AutomationRule, Disposition, Queue, RuleAssignee, RuleTrigger, TaskPriority
from tasks.services import agent_choose_queues, break_reasons_ensure_defaults, dispositions_ensure_defaults


def seed_tasks_demo(tenant) -> list[str]:
    """Inside tenant_context(tenant): create what is missing, change nothing that exists; a line per row created."""
    created = [f"disposition {d.name} for {tenant.slug}" for d in dispositions_ensure_defaults(tenant=tenant)]
    created += [f"break reason {r.name} for {tenant.slug}" for r in break_reasons_ensure_defaults(tenant=tenant)]
    resolved = Disposition.objects.get(name="Resolved")
    follow_up = Disposition.objects.get(name="Follow-up Required")
    support, made = Queue.objects.get_or_create(
        tenant=tenant, name="Support", defaults={"disposition_required": True, "default_disposition": resolved}
    )
    if made:
        created.append(f"queue Support for {tenant.slug}")
    # Demo agents serve Support from the start, so going Available brings work; an agent who already
    # has a routing state keeps the queues they chose.
    for agent in Membership.objects.filter(role=Role.AGENT).exclude(pk__in=AgentState.objects.values("membership")):
        agent_choose_queues(membership=agent, queues=[support])
        created.append(f"{agent.user.get_username()} serves Support")
    _, made = AutomationRule.objects.get_or_create(
        tenant=tenant,
        name="Follow up when a follow-up is required",
        defaults={
            "trigger": RuleTrigger.CONVERSATION_RESOLVED,
            "disposition": follow_up,
            "follow_up_title": "Follow up with the customer",
            "due_in_hours": 24,
            "priority": TaskPriority.MEDIUM,
            "assign_to": RuleAssignee.SAME_AGENT,
        },
    )
    if made:
        created.append(f"automation rule for {tenant.slug}")
    return created
