"""Tasks, queues, teams, dispositions and automation rules.

Models hold data and constraints only; every write and status change is a service in
`tasks.services`. The routing issue adds routing fields (strategy, timeouts, SLA) to Queue and the
agents' routing state, offers and timers in its own migrations.
"""

from django.contrib.postgres.fields import ArrayField
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


class Queue(TenantOwnedModel):
    """Where tasks wait for an agent. `channels` empty means every channel."""

    name = models.CharField(max_length=120)
    channels = ArrayField(models.CharField(max_length=16, choices=Channel.choices), default=list, blank=True)
    disposition_required = models.BooleanField(
        default=False, help_text="Agents must choose a disposition to complete a conversation task"
    )
    default_disposition = models.ForeignKey(
        "Disposition", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta(TenantOwnedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="one_queue_per_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def takes(self, channel: str) -> bool:
        return not self.channels or channel in self.channels


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

    class Meta(TenantOwnedModel.Meta):
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "status", "priority"]),
            models.Index(fields=["assignee", "status"]),
            models.Index(fields=["conversation", "status"]),
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
