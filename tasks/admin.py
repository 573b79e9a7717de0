"""Admin of queues, teams, dispositions, automation rules, skills, break reasons, agents' routing
state, and (read-only) tasks, offers and status periods.

Supervisors configure routing here and step in on live work: force-complete a stuck task with a
disposition, give a task to someone else, set an agent Unavailable. Each step-in is an action with
a confirmation page that calls the same services as the desktop, with the supervisor as actor.
"""

from django import forms
from django.contrib import admin
from django.db.models import Count

from channels_inbound.models import Channel
from contactcenter.admin_site import (
    MemberListFilter,
    ReadOnlyInline,
    ServiceManagedAdmin,
    TenantScopedAdmin,
    assignee_name,
    members_by_name,
    per_tenant,
)
from contactcenter.selectors import selection_counts
from conversations.admin import ActivityInline, AssignForm, ReasonForm
from tasks.models import (
    DEFAULT_OTHER_CAPACITY,
    DEFAULT_VOICE_CAPACITY,
    AgentSkill,
    AgentState,
    AgentStatus,
    AgentStatusPeriod,
    AutomationRule,
    BreakReason,
    Disposition,
    Offer,
    Queue,
    Skill,
    Task,
    TaskStatus,
    Team,
)
from tasks.services import (
    agent_allow_queues,
    agent_set_capacity,
    agents_set_status,
    tasks_complete,
    tasks_reassign,
)
from tasks.sla import InvalidBusinessHours, parse_business_hours

ON_LIST_AND_PAGE = [admin.ActionLocation.CHANGE_LIST, admin.ActionLocation.CHANGE_FORM]


# --- configuration ------------------------------------------------------------------------------------


class QueueForm(forms.ModelForm):
    channels = forms.MultipleChoiceField(
        choices=Channel.choices, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every channel",
    )  # fmt: skip

    class Meta:
        model = Queue
        fields = "__all__"
        help_texts = {
            "business_hours": "Per weekday (0 Monday … 6 Sunday), open spans in the organisation's time zone, "
            'for example {"0": [["09:00", "17:30"]], "5": [["10:00", "14:00"]], "holidays": ["2026-12-25"]} '
            "(closed all day on the holidays). Empty: always open.",
        }

    def clean_business_hours(self):
        hours = self.cleaned_data["business_hours"] or {}
        if not isinstance(hours, dict):
            raise forms.ValidationError("Business hours map weekdays to lists of spans.")
        try:
            parse_business_hours(hours)
        except InvalidBusinessHours as error:
            raise forms.ValidationError(str(error)) from None
        return hours


@admin.register(Queue)
class QueueAdmin(TenantScopedAdmin):
    form = QueueForm
    list_display = ["name", "channels", "strategy", "max_offers_per_task", "offer_timeout_seconds", "wrap_up_mode"]
    list_filter = ["strategy", "wrap_up_mode", "pick_mode", "auto_answer"]
    search_fields = ["name"]
    filter_horizontal = ["required_skills"]
    fieldsets = [
        (None, {"fields": ["name", "channels", "disposition_required", "default_disposition"]}),
        ("Routing", {"fields": [
            "strategy", "required_skills", "offer_timeout_seconds", "max_offers_per_task", "auto_answer", "pick_mode",
            "missed_offers_before_unavailable",
        ]}),
        ("Wrap-up", {"fields": ["wrap_up_mode", "wrap_up_seconds", "wrap_up_receives_work"]}),
        ("Service level: first-response targets (seconds) per conversation priority", {"fields": [
            "sla_urgent_seconds", "sla_high_seconds", "sla_normal_seconds", "sla_low_seconds", "sla_warning_seconds",
            "service_level_percent", "service_level_seconds",
        ]}),
        ("Satisfaction survey", {"fields": ["csat_survey", "csat_reply_hours"]}),
        ("Escalation", {"fields": [
            "escalation_queue", "escalation_raises_priority", "escalation_notifies_supervisors",
            "follow_ups_before_escalation",
        ]}),
        ("Business hours", {"fields": ["business_hours"]}),
    ]  # fmt: skip

    def get_fieldsets(self, request, obj=None):
        # Fields other issues add to Queue (service level, surveys, …) appear in a last group
        # rather than not at all.
        fieldsets = list(super().get_fieldsets(request, obj))
        listed = {name for _, options in fieldsets for name in options["fields"]}
        exclude = set(self.get_exclude(request, obj) or ())
        others = [
            f.name for f in Queue._meta.get_fields()
            if getattr(f, "editable", False) and not f.auto_created and f.concrete
            and f.name not in listed | exclude | {"id", "public_id"}
        ]  # fmt: skip
        if others:
            fieldsets.append(("More", {"fields": others}))
        return fieldsets


@admin.register(Team)
class TeamAdmin(TenantScopedAdmin):
    list_display = ["name", "member_count"]
    search_fields = ["name"]
    filter_horizontal = ["members"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("members"))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, team):
        return team.member_count


@admin.register(Disposition)
class DispositionAdmin(TenantScopedAdmin):
    list_display = ["name", "position", "is_active"]
    list_editable = ["position", "is_active"]
    list_filter = ["is_active", "queues"]
    search_fields = ["name"]
    filter_horizontal = ["queues"]


@admin.register(AutomationRule)
class AutomationRuleAdmin(TenantScopedAdmin):
    list_display = ["name", "trigger", "disposition", "action", "due_in_hours", "assign_to", "is_active"]
    list_filter = ["trigger", "is_active"]
    search_fields = ["name"]
    fieldsets = [
        (None, {"fields": ["name", "is_active", "position"]}),
        ("When", {"fields": ["trigger", "disposition"]}),
        ("Then", {"fields": ["action", "follow_up_title", "due_in_hours", "priority", "assign_to", "team"]}),
    ]


class AgentSkillInline(admin.TabularInline):
    """Who has this skill and how well (1–5): routing prefers higher levels in skill-based queues."""

    model = AgentSkill
    fields = ["membership", "level"]
    extra = 1

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        return members_by_name(super().formfield_for_foreignkey(db_field, request, **kwargs))

    def has_view_permission(self, request, obj=None):
        return self.admin_site.has_permission(request)

    def has_add_permission(self, request, obj=None):
        return self.admin_site.has_permission(request)

    def has_change_permission(self, request, obj=None):
        return self.admin_site.has_permission(request)

    def has_delete_permission(self, request, obj=None):
        return self.admin_site.has_permission(request)


@admin.register(Skill)
class SkillAdmin(TenantScopedAdmin):
    list_display = ["name"]
    search_fields = ["name"]
    inlines = [AgentSkillInline]


@admin.register(AgentSkill)
class AgentSkillAdmin(TenantScopedAdmin):
    list_display = ["membership", "skill", "level"]
    list_filter = ["skill", "level", ("membership", MemberListFilter)]
    search_fields = ["membership__user__username", "membership__user__first_name", "skill__name"]
    list_select_related = ["membership__user", "skill"]


@admin.register(BreakReason)
class BreakReasonAdmin(TenantScopedAdmin):
    list_display = ["name", "position", "is_active"]
    list_editable = ["position", "is_active"]


# --- agents: capacity, allowed queues, and stepping in on their status ------------------------------------


class AgentStateFormBase(forms.ModelForm):
    class Meta:
        model = AgentState
        fields = ["allowed_queues"]
        help_texts = {"allowed_queues": "None chosen: every queue. The agent picks the ones they serve among these."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for channel in Channel:
            self.initial.setdefault(f"capacity_{channel.value}", self.instance.capacity.get(channel.value))

    def capacity(self) -> dict[str, int]:
        """The capacity per channel as entered; empty fields are left out (the channel's default)."""
        return {
            channel.value: self.cleaned_data[f"capacity_{channel.value}"]
            for channel in Channel
            if self.cleaned_data.get(f"capacity_{channel.value}") is not None
        }


def _capacity_field(channel: Channel) -> forms.IntegerField:
    default = DEFAULT_VOICE_CAPACITY if channel == Channel.VOICE else DEFAULT_OTHER_CAPACITY
    return forms.IntegerField(label=channel.label, min_value=0, required=False, help_text=f"Empty: {default}")


# One field per channel, declared on the class so the admin's fieldsets may name them.
CAPACITY_FIELDS = [f"capacity_{channel.value}" for channel in Channel]
AgentStateForm = type(
    "AgentStateForm", (AgentStateFormBase,), {f"capacity_{c.value}": _capacity_field(c) for c in Channel}
)


class BreakReasonForm(forms.Form):
    break_reason = forms.ModelChoiceField(queryset=BreakReason.objects.filter(is_active=True), label="Why")


@admin.register(AgentState)
class AgentStateAdmin(TenantScopedAdmin):
    """Allowed queues and capacity are a supervisor's to set, through tasks.services
    (agent_allow_queues, agent_set_capacity); the status changes only through agent_set_status (so
    the time in each status is recorded), here with the "Set Unavailable" and "Set Offline" actions."""

    form = AgentStateForm
    list_display = ["agent", "status", "break_reason", "status_since", "capacity_shown", "allowed_queues_shown"]
    list_filter = ["status", "break_reason", ("membership", MemberListFilter)]
    search_fields = ["membership__user__username", "membership__user__first_name", "membership__user__last_name"]
    list_select_related = ["membership__user", "break_reason"]
    readonly_fields = ["agent", "status", "break_reason", "status_since", "consecutive_missed_offers"]
    fieldsets = [
        ("Now", {"fields": ["agent", "status", "break_reason", "status_since", "consecutive_missed_offers"]}),
        ("Queues", {"fields": ["allowed_queues"]}),
        ("Capacity: tasks of each channel held at once", {"fields": CAPACITY_FIELDS}),
    ]
    filter_horizontal = ["allowed_queues"]
    actions = ["set_unavailable", "set_offline"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("allowed_queues")

    def has_add_permission(self, request):
        return False  # created by tasks.services.agent_state_for

    def has_delete_permission(self, request, obj=None):
        return False  # the routing state goes with the membership

    @admin.display(description="agent", ordering="membership__user__username")
    def agent(self, state):
        return state.membership.display_name

    @admin.display(description="capacity")
    def capacity_shown(self, state):
        return (
            ", ".join(f"{Channel(channel).label} {limit}" for channel, limit in sorted(state.capacity.items()))
            or "defaults"
        )

    @admin.display(description="allowed queues")
    def allowed_queues_shown(self, state):
        return ", ".join(queue.name for queue in state.allowed_queues.all()) or "every queue"

    def save_model(self, request, obj, form, change):
        for actor, _ in per_tenant(request, [obj]):
            agent_set_capacity(membership=obj.membership, capacity=form.capacity(), actor=actor)

    def save_related(self, request, form, formsets, change):
        for actor, _ in per_tenant(request, [form.instance]):
            agent_allow_queues(
                membership=form.instance.membership, queues=form.cleaned_data["allowed_queues"], actor=actor
            )

    def _summary(self, queryset):
        return [("Status now", selection_counts(queryset, "status"))]

    def _set_status(self, request, queryset, status: str, break_reason=None) -> None:
        for actor, states in per_tenant(request, queryset.select_related("membership__user")):
            outcome = agents_set_status(
                memberships=[state.membership for state in states],
                status=status,
                break_reason=break_reason,
                actor=actor,
            )
            self.report_outcome(request, f"Set {AgentStatus(status).label}", "agent(s)", outcome)

    @admin.action(description="Set Unavailable (step in)", permissions=["step_in"], location=ON_LIST_AND_PAGE)
    def set_unavailable(self, request, queryset):
        return self.confirm_action(
            request, queryset, title="Set the selected agents Unavailable", summary=self._summary(queryset),
            form_class=BreakReasonForm, notes=["They get no new offers until they (or you) set them Available."],
            warning="Their status changes at once and the change is recorded with you as the one who made it.",
            apply=lambda data: self._set_status(request, queryset, AgentStatus.UNAVAILABLE, data["break_reason"]),
        )  # fmt: skip

    @admin.action(description="Set Offline (step in)", permissions=["step_in"], location=ON_LIST_AND_PAGE)
    def set_offline(self, request, queryset):
        return self.confirm_action(
            request, queryset, title="Set the selected agents Offline", summary=self._summary(queryset),
            warning="Their status changes at once and the change is recorded with you as the one who made it.",
            apply=lambda data: self._set_status(request, queryset, AgentStatus.OFFLINE),
        )  # fmt: skip


@admin.register(AgentStatusPeriod)
class AgentStatusPeriodAdmin(ServiceManagedAdmin):
    list_display = ["membership", "status", "break_reason", "started_at", "ended_at", "set_by"]
    list_filter = ["status", ("membership", MemberListFilter), ("set_by", MemberListFilter)]
    list_select_related = ["membership__user", "break_reason", "set_by__user"]
    date_hierarchy = "started_at"


# --- tasks: lists, history, and stepping in ---------------------------------------------------------------


class OfferInline(ReadOnlyInline):
    model = Offer
    fields = ["agent", "status", "created_at", "expires_at", "responded_at", "explanation"]
    select_related = ("agent__user",)


class CompleteForm(ReasonForm):
    disposition = forms.ModelChoiceField(
        queryset=Disposition.objects.filter(is_active=True), required=False,
        help_text="Required where the task's queue asks for one",
    )  # fmt: skip
    field_order = ["disposition", "reason"]


@admin.register(Task)
class TaskAdmin(ServiceManagedAdmin):
    list_display = [
        "title", "kind", "status", "priority", "channel", "queue", assignee_name, "sla_state", "due_at", "created_at",
    ]  # fmt: skip
    list_filter = ["status", "priority", "channel", "queue", ("assignee", MemberListFilter), "sla_state", "kind"]
    search_fields = [
        "title", "conversation__contact__name", "conversation__contact__identities__value",
        "conversation__messages__body",
    ]  # fmt: skip
    search_help_text = "Title, contact name, number or address, message text"
    list_select_related = ["queue", "assignee__user"]
    date_hierarchy = "created_at"
    inlines = [OfferInline, ActivityInline]
    actions = ["complete_as_supervisor", "reassign"]

    def _summary(self, queryset):
        return [
            ("Status now", selection_counts(queryset, "status")),
            ("Agent now", selection_counts(queryset, "assignee")),
            ("Priority now", selection_counts(queryset, "priority")),
        ]

    @admin.action(
        description="Complete with a disposition (step in)", permissions=["step_in"], location=ON_LIST_AND_PAGE
    )
    def complete_as_supervisor(self, request, queryset):
        stuck = queryset.filter(status__in=(TaskStatus.ASSIGNED, TaskStatus.WRAPPING)).count()
        return self.confirm_action(
            request, queryset, title="Complete the selected tasks", summary=self._summary(queryset),
            form_class=CompleteForm,
            notes=[
                f"{stuck} assigned or in wrap-up will be completed; the others cannot be and stay as they are.",
                "The activity log says “Completed by supervisor”, with you as the one who did it.",
            ],
            apply=lambda data: self._complete(request, queryset, data),
        )  # fmt: skip

    def _complete(self, request, queryset, data) -> None:
        tasks = queryset.select_related("queue", "assignee__user")
        for actor, rows in per_tenant(request, tasks):
            outcome = tasks_complete(tasks=rows, actor=actor, disposition=data["disposition"], notes=data["reason"])
            self.report_outcome(request, "Completed", "task(s)", outcome)

    @admin.action(
        description="Give to another agent or team (step in)", permissions=["step_in"], location=ON_LIST_AND_PAGE
    )
    def reassign(self, request, queryset):
        return self.confirm_action(
            request, queryset, title="Give the selected tasks to someone else", summary=self._summary(queryset),
            form_class=AssignForm, notes=["A conversation's task moves with its conversation."],
            apply=lambda data: self._reassign(request, queryset, data),
        )  # fmt: skip

    def _reassign(self, request, queryset, data) -> None:
        for actor, rows in per_tenant(request, queryset.select_related("conversation")):
            outcome = tasks_reassign(tasks=rows, agent=data["agent"], team=data["team"], actor=actor, note=data["note"])
            self.report_outcome(request, "Given", "task(s)", outcome)


@admin.register(Offer)
class OfferAdmin(ServiceManagedAdmin):
    list_display = ["task", "agent", "status", "created_at", "expires_at", "responded_at", "explanation"]
    list_filter = ["status", ("agent", MemberListFilter)]
    list_select_related = ["task", "agent__user"]
