"""Tasks, queues, teams, dispositions and automation rules.

Models hold data and constraints only; every write and status change is a service in
`tasks.services`. Routing (migration 0002): the queue's routing, wrap-up, SLA and escalation
settings; skills; break reasons; each agent's routing state and the periods of each status; offers
(reservations); and the task's timer columns (`wrap_up_due_at`, `first_response_due_at`,
`sla_warning_at`), which the sweeps in `tasks.timers` read through their indexes.
"""

from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from channels_inbound.models import Channel
from contactcenter.tenancy import TenantOwnedModel


class Team(TenantOwnedModel):
    name = models.CharField(max_length=120)
    members = models.ManyToManyField("contactcenter.Membership", blank=True, related_name="teams")

    class Meta(TenantOwnedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="one_team_per_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Skill(TenantOwnedModel):
    name = models.CharField(max_length=80)

    class Meta(TenantOwnedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="one_skill_per_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RoutingStrategy(models.TextChoices):
    """The strategies of tasks.routing.choose_offers (see its docstring for what each one means)."""

    ROUND_ROBIN = "round_robin", "Round robin"
    LOAD_BALANCING = "load_balancing", "Load balancing (fewest active tasks relative to capacity)"
    SKILL_BASED = "skill_based", "Skill-based (all required skills, higher level preferred)"
    STICKY = "sticky", "Sticky (the agent who last handled the contact, if available)"


class WrapUpMode(models.TextChoices):
    MANUAL = "manual", "Manual: the agent completes the task"
    AUTOMATIC = "automatic", "Automatic: completed after the wrap-up time"


class Queue(TenantOwnedModel):
    """Where tasks wait for an agent. `channels` empty means every channel.

    Routing settings are read by tasks.services.routing_run; the wrap-up, SLA and escalation
    settings by the timers (tasks.timers, tasks.sla). `business_hours` maps a weekday ("0" Monday ..
    "6" Sunday) to a list of ["HH:MM", "HH:MM"] spans in the tenant's time zone; empty means always open.
    """

    name = models.CharField(max_length=120)
    channels = ArrayField(models.CharField(max_length=16, choices=Channel.choices), default=list, blank=True)
    disposition_required = models.BooleanField(
        default=False, help_text="Agents must choose a disposition to complete a conversation task"
    )
    default_disposition = models.ForeignKey(
        "Disposition", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Routing
    strategy = models.CharField(max_length=16, choices=RoutingStrategy.choices, default=RoutingStrategy.ROUND_ROBIN)
    required_skills = models.ManyToManyField(Skill, blank=True, related_name="queues")
    offer_timeout_seconds = models.PositiveIntegerField(default=30)
    max_offers_per_task = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1)],
        help_text="1: one agent at a time; more: offered to that many at once, the first to accept wins",
    )  # fmt: skip
    auto_answer = models.BooleanField(default=False, help_text="Offers are accepted at once")
    pick_mode = models.BooleanField(default=False, help_text="No offers: agents pick tasks from the list")
    missed_offers_before_unavailable = models.PositiveSmallIntegerField(
        default=3, help_text="Consecutive offers an agent lets time out before being set Unavailable (0: never)"
    )
    # Wrap-up
    wrap_up_mode = models.CharField(max_length=10, choices=WrapUpMode.choices, default=WrapUpMode.MANUAL)
    wrap_up_seconds = models.PositiveIntegerField(default=60)
    wrap_up_receives_work = models.BooleanField(default=False, help_text="Agents in wrap-up may get new work")
    # SLA: first-response targets per conversation priority, and the warning before a breach
    sla_urgent_seconds = models.PositiveIntegerField(default=3600)
    sla_high_seconds = models.PositiveIntegerField(default=14400)
    sla_normal_seconds = models.PositiveIntegerField(default=86400)
    sla_low_seconds = models.PositiveIntegerField(default=172800)
    sla_warning_seconds = models.PositiveIntegerField(default=900)
    # Escalation (on breach, or after too many unanswered follow-ups)
    escalation_queue = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="On breach, re-queue the task here (empty: stay in this queue)",
    )  # fmt: skip
    escalation_raises_priority = models.BooleanField(default=True)
    escalation_notifies_supervisors = models.BooleanField(default=True)
    follow_ups_before_escalation = models.PositiveSmallIntegerField(
        default=3, help_text="Customer messages without a reply that escalate (0: off)"
    )
    business_hours = models.JSONField(default=dict, blank=True)
    # Service level: the share of conversations an agent answers within so many seconds of their
    # arrival (the wallboard, the reports and the Erlang C staffing forecast read it)
    service_level_percent = models.PositiveSmallIntegerField(
        default=80, validators=[MinValueValidator(1), MaxValueValidator(99)],
        help_text="Target share of conversations answered within the target time (80 in “80% in 20 seconds”)",
    )  # fmt: skip
    service_level_seconds = models.PositiveIntegerField(
        default=20, validators=[MinValueValidator(1)],
        help_text="Target time to answer, in seconds (20 in “80% in 20 seconds”)",
    )  # fmt: skip
    # Customer satisfaction survey (conversations.services.csat_survey_send)
    csat_survey = models.BooleanField(
        default=False, help_text="After an agent resolves a conversation, ask the customer “How did we do? Reply 1–5”"
    )
    csat_reply_hours = models.PositiveSmallIntegerField(
        default=24, validators=[MinValueValidator(1)],
        help_text="A reply 1–5 within this many hours is the customer's rating (later, an ordinary message)",
    )  # fmt: skip

    class Meta(TenantOwnedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="one_queue_per_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def takes(self, channel: str) -> bool:
        return not self.channels or channel in self.channels

    def sla_target_seconds(self, conversation_priority: str) -> int:
        """The first-response target for a conversation priority (low, normal, high, urgent)."""
        return getattr(self, f"sla_{conversation_priority}_seconds", self.sla_normal_seconds)


class Disposition(TenantOwnedModel):
    """A closing code. `queues` empty means it may close tasks of any queue."""

    name = models.CharField(max_length=80)
    position = models.PositiveSmallIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    queues = models.ManyToManyField(Queue, blank=True, related_name="dispositions")

    class Meta(TenantOwnedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="one_disposition_per_name")]
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class TaskKind(models.TextChoices):
    CONVERSATION = "conversation", "Conversation"
    FOLLOW_UP = "follow_up", "Follow-up"
    INTERNAL = "internal", "Internal"


class TaskStatus(models.TextChoices):
    """Twilio TaskRouter's lifecycle. See tasks.services.TASK_TRANSITIONS for the allowed moves."""

    PENDING = "pending", "Pending"
    RESERVED = "reserved", "Reserved"
    ASSIGNED = "assigned", "Assigned"
    WRAPPING = "wrapping", "Wrapping up"
    COMPLETED = "completed", "Completed"
    CANCELED = "canceled", "Canceled"


ACTIVE_TASK_STATUSES = (TaskStatus.PENDING, TaskStatus.RESERVED, TaskStatus.ASSIGNED, TaskStatus.WRAPPING)

# What people see for a follow-up or internal task: a to-do list, not a routing lifecycle.
TODO_STATUS_LABELS = {
    TaskStatus.PENDING: "To Do",
    TaskStatus.RESERVED: "To Do",
    TaskStatus.ASSIGNED: "In Progress",
    TaskStatus.WRAPPING: "In Progress",
    TaskStatus.COMPLETED: "Resolved",
    TaskStatus.CANCELED: "Canceled",
}


class TaskPriority(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class SlaState(models.TextChoices):
    OK = "ok", "Within target"
    WARNING = "warning", "Close to breach"
    BREACHED = "breached", "Breached"


class Task(TenantOwnedModel):
    """The unit of work an agent handles. `status` changes only in tasks.services.task_transition.

    A follow-up or internal task with an `assignee` and status pending is on that agent's To Do
    list; it becomes assigned ("In Progress") when they start it. A conversation task is assigned
    when an agent holds the live conversation.
    """

    kind = models.CharField(max_length=16, choices=TaskKind.choices, default=TaskKind.CONVERSATION)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    channel = models.CharField(max_length=16, choices=Channel.choices, blank=True)
    status = models.CharField(max_length=12, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    priority = models.CharField(max_length=8, choices=TaskPriority.choices, default=TaskPriority.MEDIUM)
    queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.RESTRICT, related_name="tasks")
    conversation = models.ForeignKey(
        "conversations.Conversation", null=True, blank=True, on_delete=models.RESTRICT, related_name="tasks"
    )
    assignee = models.ForeignKey(
        "contactcenter.Membership", null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks"
    )
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks")
    due_at = models.DateTimeField(null=True, blank=True)
    disposition = models.ForeignKey(
        Disposition, null=True, blank=True, on_delete=models.RESTRICT, related_name="tasks"
    )
    completion_notes = models.TextField(blank=True)
    created_by = models.ForeignKey(
        "contactcenter.Membership", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rule = models.ForeignKey(
        "AutomationRule", null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks",
        help_text="The automation rule that created this task",
    )  # fmt: skip
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Timers (swept by tasks.timers through these indexes)
    wrap_up_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    first_response_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    sla_warning_at = models.DateTimeField(null=True, blank=True, db_index=True)
    sla_state = models.CharField(max_length=8, choices=SlaState.choices, default=SlaState.OK)
    escalated_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwnedModel.Meta):
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "status", "priority"]),
            models.Index(fields=["assignee", "status"]),
            models.Index(fields=["conversation", "status"]),
            models.Index(fields=["queue", "status", "created_at"]),
            # The wallboard's reads of today's arrivals and of what changed today (tasks.metrics)
            models.Index(fields=["tenant", "created_at"], name="task_tenant_created"),
            models.Index(fields=["tenant", "status_changed_at"], name="task_tenant_status_changed"),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def status_label(self) -> str:
        if self.kind == TaskKind.CONVERSATION:
            return self.get_status_display()
        return TODO_STATUS_LABELS[self.status]


class RuleTrigger(models.TextChoices):
    CONVERSATION_RESOLVED = "conversation_resolved", "A conversation is resolved"


class RuleAction(models.TextChoices):
    CREATE_FOLLOW_UP = "create_follow_up", "Create a follow-up task"


class RuleAssignee(models.TextChoices):
    SAME_AGENT = "same_agent", "The agent who handled the conversation"
    TEAM = "team", "A team"


class AutomationRule(TenantOwnedModel):
    """"When <trigger> (with <disposition>), <action>". Runs inside the transaction of the change
    that triggers it (tasks.services.automation_rules_run), so both happen or neither."""

    name = models.CharField(max_length=120)
    is_active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)
    trigger = models.CharField(max_length=32, choices=RuleTrigger.choices, default=RuleTrigger.CONVERSATION_RESOLVED)
    disposition = models.ForeignKey(
        Disposition, null=True, blank=True, on_delete=models.RESTRICT, related_name="+",
        help_text="Only when the conversation was closed with this disposition (any, when empty)",
    )  # fmt: skip
    action = models.CharField(max_length=32, choices=RuleAction.choices, default=RuleAction.CREATE_FOLLOW_UP)
    follow_up_title = models.CharField(max_length=200, default="Follow up")
    due_in_hours = models.PositiveIntegerField(default=24)
    priority = models.CharField(
        max_length=8, choices=TaskPriority.choices, blank=True, help_text="Empty: from the conversation's priority"
    )
    assign_to = models.CharField(max_length=16, choices=RuleAssignee.choices, default=RuleAssignee.SAME_AGENT)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.RESTRICT, related_name="+")

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="one_rule_per_name"),
            models.CheckConstraint(
                condition=~models.Q(assign_to="team") | models.Q(team__isnull=False), name="rule_team_given"
            ),
        ]
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


# --- agents' routing state ------------------------------------------------------------------------


class AgentSkill(TenantOwnedModel):
    membership = models.ForeignKey("contactcenter.Membership", on_delete=models.CASCADE, related_name="skills")
    skill = models.ForeignKey(Skill, on_delete=models.CASCADE, related_name="agents")
    level = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(5)])

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["membership", "skill"], name="one_level_per_agent_skill"),
            models.CheckConstraint(condition=models.Q(level__gte=1, level__lte=5), name="skill_level_1_to_5"),
        ]

    def __str__(self) -> str:
        return f"{self.skill} {self.level}"


MISSED_OFFERS_REASON = "Missed offers"
DEFAULT_BREAK_REASONS = ("Break", "Lunch", "Training", MISSED_OFFERS_REASON)


class BreakReason(TenantOwnedModel):
    """Why an agent is Unavailable. "Missed offers" is the one the system sets (tasks.services)."""

    name = models.CharField(max_length=80)
    position = models.PositiveSmallIntegerField(default=0)
    is_active = models.BooleanField(default=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="one_break_reason_per_name")]
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class AgentStatus(models.TextChoices):
    AVAILABLE = "available", "Available"
    UNAVAILABLE = "unavailable", "Unavailable"
    OFFLINE = "offline", "Offline"


DEFAULT_VOICE_CAPACITY, DEFAULT_OTHER_CAPACITY = 1, 3


class AgentState(TenantOwnedModel):
    """An agent's routing state; one per membership, changed only by tasks.services (agent_*, offer_*).

    `served_queues` are the ones the agent chose, always within `allowed_queues` (a supervisor's
    choice). `capacity` maps a channel to how many tasks of it the agent may hold at once; a channel
    left out takes the default (voice 1, every other channel 3), see `capacity_for`.
    """

    membership = models.OneToOneField(
        "contactcenter.Membership", on_delete=models.CASCADE, related_name="agent_state"
    )
    status = models.CharField(max_length=12, choices=AgentStatus.choices, default=AgentStatus.OFFLINE)
    break_reason = models.ForeignKey(BreakReason, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status_since = models.DateTimeField(default=timezone.now)
    served_queues = models.ManyToManyField(Queue, blank=True, related_name="serving_agents")
    allowed_queues = models.ManyToManyField(Queue, blank=True, related_name="allowed_agents")
    capacity = models.JSONField(default=dict, blank=True)
    last_assigned_at = models.DateTimeField(null=True, blank=True)
    consecutive_missed_offers = models.PositiveIntegerField(default=0)

    class Meta(TenantOwnedModel.Meta):
        indexes = [models.Index(fields=["tenant", "status"])]

    def __str__(self) -> str:
        return f"{self.membership_id}: {self.status}"

    def capacity_for(self, channel: str) -> int:
        default = DEFAULT_VOICE_CAPACITY if channel == Channel.VOICE else DEFAULT_OTHER_CAPACITY
        return int(self.capacity.get(channel, default))


class AgentStatusPeriod(TenantOwnedModel):
    """A stretch of time an agent spent in one status (the open one has no `ended_at`)."""

    membership = models.ForeignKey("contactcenter.Membership", on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=12, choices=AgentStatus.choices)
    break_reason = models.ForeignKey(BreakReason, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    set_by = models.ForeignKey(
        "contactcenter.Membership", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Who set this status when it was not the agent: a supervisor stepping in (empty: the agent or the system)",
    )  # fmt: skip

    class Meta(TenantOwnedModel.Meta):
        ordering = ["started_at", "id"]
        indexes = [models.Index(fields=["membership", "started_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["membership"], condition=models.Q(ended_at__isnull=True), name="one_open_status_period"
            )
        ]


# --- offers ---------------------------------------------------------------------------------------


class OfferStatus(models.TextChoices):
    """See tasks.services.OFFER_TRANSITIONS: only pending moves, and only once."""

    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    DECLINED = "declined", "Declined"
    TIMED_OUT = "timed_out", "Timed out"
    CANCELED = "canceled", "Canceled"
    RESCINDED = "rescinded", "Rescinded"


class Offer(TenantOwnedModel):
    """A reservation: `task` offered to `agent` until `expires_at`. Status changes only in
    tasks.services.offer_transition. `explanation` says why this agent (strategy and deciding facts)."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="offers")
    agent = models.ForeignKey("contactcenter.Membership", on_delete=models.CASCADE, related_name="offers")
    status = models.CharField(max_length=10, choices=OfferStatus.choices, default=OfferStatus.PENDING)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    responded_at = models.DateTimeField(null=True, blank=True)
    explanation = models.TextField(blank=True)

    class Meta(TenantOwnedModel.Meta):
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["agent", "status"]),
            models.Index(fields=["task", "status"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "agent"], condition=models.Q(status="pending"), name="one_pending_offer_per_agent"
            )
        ]

    def __str__(self) -> str:
        return f"{self.task} → {self.agent_id} ({self.status})"
