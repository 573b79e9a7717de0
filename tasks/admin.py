"""Admin of queues, teams, dispositions, automation rules, skills, break reasons, agents' routing
state and (read-only) tasks, offers and status periods. Kept simple."""

from django.contrib import admin

from contactcenter.admin_site import ServiceManagedAdmin, TenantScopedAdmin
from tasks.models import (
    AgentSkill,
    AgentState,
    AgentStatusPeriod,
    AutomationRule,
    BreakReason,
    Disposition,
    Offer,
    Queue,
    Skill,
    Task,
    Team,
)


@admin.register(Queue)
class QueueAdmin(TenantScopedAdmin):
    list_display = ["name", "channels", "strategy", "max_offers_per_task", "offer_timeout_seconds", "wrap_up_mode"]
    filter_horizontal = ["required_skills"]


@admin.register(Team)
class TeamAdmin(TenantScopedAdmin):
    list_display = ["name"]
    filter_horizontal = ["members"]


@admin.register(Disposition)
class DispositionAdmin(TenantScopedAdmin):
    list_display = ["name", "position", "is_active"]
    list_editable = ["position", "is_active"]
    filter_horizontal = ["queues"]


@admin.register(AutomationRule)
class AutomationRuleAdmin(TenantScopedAdmin):
    list_display = ["name", "trigger", "disposition", "action", "due_in_hours", "assign_to", "is_active"]
    list_filter = ["trigger", "is_active"]


@admin.register(Task)
class TaskAdmin(ServiceManagedAdmin):
    list_display = ["title", "kind", "status", "priority", "queue", "assignee", "sla_state", "due_at", "created_at"]
    list_filter = ["kind", "status", "priority", "queue", "sla_state"]
    search_fields = ["title"]


@admin.register(Offer)
class OfferAdmin(ServiceManagedAdmin):
    list_display = ["task", "agent", "status", "created_at", "expires_at", "responded_at", "explanation"]
    list_filter = ["status"]


@admin.register(AgentStatusPeriod)
class AgentStatusPeriodAdmin(ServiceManagedAdmin):
    list_display = ["membership", "status", "break_reason", "started_at", "ended_at"]
    list_filter = ["status"]


@admin.register(Skill)
class SkillAdmin(TenantScopedAdmin):
    list_display = ["name"]


@admin.register(AgentSkill)
class AgentSkillAdmin(TenantScopedAdmin):
    list_display = ["membership", "skill", "level"]


@admin.register(BreakReason)
class BreakReasonAdmin(TenantScopedAdmin):
    list_display = ["name", "position", "is_active"]
    list_editable = ["position", "is_active"]


@admin.register(AgentState)
class AgentStateAdmin(TenantScopedAdmin):
    """Allowed queues and capacity are a supervisor's to set; the status changes only through
    tasks.services.agent_set_status (so the time in each status is recorded), hence not editable here."""

    list_display = ["membership", "status", "break_reason", "status_since", "consecutive_missed_offers"]
    list_filter = ["status"]
    # Served queues are the agent's choice within these (agent_choose_queues); routing reads both.
    fields = ["allowed_queues", "capacity"]
    filter_horizontal = ["allowed_queues"]

    def has_add_permission(self, request):
        return False  # created by tasks.services.agent_state_for
