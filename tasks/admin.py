"""Admin of queues, teams, dispositions, automation rules and (read-only) tasks. Kept simple."""

from django.contrib import admin

from contactcenter.admin_site import TenantScopedAdmin
from tasks.models import AutomationRule, Disposition, Queue, Task, Team


@admin.register(Queue)
class QueueAdmin(TenantScopedAdmin):
    list_display = ["name", "channels", "disposition_required", "default_disposition"]


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
class TaskAdmin(TenantScopedAdmin):
    """Tasks change through the services (their status, assignment and log); here they are only viewed."""

    list_display = ["title", "kind", "status", "priority", "queue", "assignee", "due_at", "created_at"]
    list_filter = ["kind", "status", "priority", "queue"]
    search_fields = ["title"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
