"""Admin of contacts, conversations, messages, notes, templates, patterns and the activity log.

Conversations, messages, notes and the log change only through the services, so their admin shows
them and never edits or deletes them. Supervisors act on conversations with bulk actions: each shows
a confirmation page (what the selection is now, what will change, that it cannot be undone) and
then calls the services, so every row changed is in the activity log.
"""

import csv

from django import forms
from django.contrib import admin
from django.db.models import Exists, OuterRef, Subquery
from django.http import HttpResponse
from django.utils import timezone

from contactcenter.admin_site import (
    MemberListFilter,
    ReadOnlyInline,
    ServiceManagedAdmin,
    TenantScopedAdmin,
    assignee_name,
    members_by_name,
    per_tenant,
)
from contactcenter.models import Membership, Role
from contactcenter.selectors import selection_counts
from contactcenter.spreadsheets import spreadsheet_cell
from conversations.models import (
    Activity,
    Attachment,
    AttachmentRestriction,
    Contact,
    ContactIdentity,
    Conversation,
    ConversationPriority,
    ConversationStatus,
    CsatSurvey,
    InternalNote,
    Message,
    ReplyTemplate,
    SensitiveDataPattern,
    Via,
)
from conversations.services import (
    CONVERSATION_TRANSITIONS,
    conversations_add_tags,
    conversations_archive,
    conversations_assign,
    conversations_resolve,
    conversations_set_priority,
)
from tasks.models import ACTIVE_TASK_STATUSES, Queue, SlaState, Task, TaskKind, Team

C = ConversationStatus


class ContactIdentityInline(ReadOnlyInline):
    """Identities are created normalised by contact_find_or_create; here they are only shown."""

    model = ContactIdentity
    fields = ["kind", "value"]


@admin.register(Contact)
class ContactAdmin(TenantScopedAdmin):
    list_display = ["__str__", "is_vip", "created_at"]
    list_filter = ["is_vip"]
    search_fields = ["name", "identities__value"]
    fields = ["name", "is_vip", "notes"]
    inlines = [ContactIdentityInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("identities")


@admin.register(ContactIdentity)
class ContactIdentityAdmin(ServiceManagedAdmin):
    list_display = ["value", "kind", "contact"]
    list_filter = ["kind"]
    search_fields = ["value", "contact__name"]
    list_select_related = ["contact"]


# --- conversations: lists, filters and read-only history ---------------------------------------------


def _open_task():
    """The conversation's current conversation task (queue, SLA state), for the list's columns and filters."""
    return Task.objects.filter(
        conversation=OuterRef("pk"), kind=TaskKind.CONVERSATION, status__in=ACTIVE_TASK_STATUSES
    ).order_by("-created_at", "-pk")


class QueueFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return [(queue.pk, queue.name) for queue in Queue.objects.order_by("name")]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(Exists(_open_task().filter(queue_id=self.value())))
        return queryset


class SlaStateFilter(admin.SimpleListFilter):
    title = "SLA state"
    parameter_name = "sla"

    def lookups(self, request, model_admin):
        return SlaState.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(Exists(_open_task().filter(sla_state=self.value())))
        return queryset


class TaskInline(ReadOnlyInline):
    model = Task
    fk_name = "conversation"
    fields = ["title", "kind", "status", "queue", "assignee", "sla_state", "disposition", "created_at"]
    show_change_link = True
    select_related = ("queue", "assignee__user", "disposition")


class MessageInline(ReadOnlyInline):
    model = Message
    fields = ["created_at", "direction", "author", "body", "delivery_status", "error_reason"]
    select_related = ("author__user",)


class InternalNoteInline(ReadOnlyInline):
    model = InternalNote
    fields = ["created_at", "author", "body_markdown"]
    verbose_name_plural = "internal notes"
    select_related = ("author__user",)


class ActivityInline(ReadOnlyInline):
    model = Activity
    fields = ["created_at", "kind", "old_value", "new_value", "via", "actor", "task", "reason"]
    verbose_name_plural = "activity log"
    select_related = ("actor__user", "task")


# --- conversations: supervisors' bulk actions ---------------------------------------------------------


class AssignForm(forms.Form):
    agent = forms.ModelChoiceField(queryset=Membership.objects.filter(is_active=True), required=False)
    team = forms.ModelChoiceField(queryset=Team.objects.all(), required=False)
    note = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), help_text="Why, for the activity log"
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        members_by_name(self.fields["agent"])

    def clean(self):
        cleaned = super().clean()
        if bool(cleaned.get("agent")) == bool(cleaned.get("team")):
            raise forms.ValidationError("Choose either an agent or a team.")
        return cleaned


class TagsForm(forms.Form):
    tags = forms.CharField(help_text="Separated by commas; added to each conversation's own tags")

    def clean_tags(self):
        tags = [tag for tag in self.cleaned_data["tags"].split(",") if tag.strip()]
        if not tags:
            raise forms.ValidationError("Write at least one tag.")
        return tags


class ReasonForm(forms.Form):
    reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), help_text="For the activity log")


class PriorityForm(ReasonForm):
    priority = forms.ChoiceField(choices=ConversationPriority.choices)
    field_order = ["priority", "reason"]


EXPORT_COLUMNS = [
    "id", "created", "status", "priority", "channel", "contact", "identities", "agent", "team", "tags", "subject",
    "first response", "resolved", "closed",
]  # fmt: skip


@admin.register(Conversation)
class ConversationAdmin(ServiceManagedAdmin):
    list_display = [
        "__str__", "contact", "channel", "status", "priority", assignee_name, "team", "queue", "sla", "created_at",
    ]  # fmt: skip
    list_filter = [
        "status", "priority", "channel", QueueFilter, ("assignee", MemberListFilter), "team", SlaStateFilter,
    ]  # fmt: skip
    search_fields = ["subject", "contact__name", "contact__identities__value", "messages__body", "public_id"]
    search_help_text = "Contact name, number or address, message text, subject"
    list_select_related = ["contact", "assignee__user", "team"]
    date_hierarchy = "created_at"
    inlines = [TaskInline, MessageInline, InternalNoteInline, ActivityInline]
    actions = ["assign", "add_tags", "mark_resolved", "archive", "change_priority", "export_csv"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related("contact__identities")
            .annotate(
                open_task_queue=Subquery(_open_task().values("queue__name")[:1]),
                open_task_sla=Subquery(_open_task().values("sla_state")[:1]),
            )
        )

    @admin.display(description="queue")
    def queue(self, conversation):
        return conversation.open_task_queue or "–"

    @admin.display(description="SLA")
    def sla(self, conversation):
        return SlaState(conversation.open_task_sla).label if conversation.open_task_sla else "–"

    def _summary(self, queryset):
        return [
            ("Status now", selection_counts(queryset, "status")),
            ("Agent now", selection_counts(queryset, "assignee")),
            ("Priority now", selection_counts(queryset, "priority")),
        ]

    def _confirm(self, request, queryset, *, title, apply, form_class=None, notes=(), **kwargs):
        return self.confirm_action(
            request, queryset, title=title, summary=self._summary(queryset), form_class=form_class, notes=notes,
            apply=apply, **kwargs,
        )  # fmt: skip

    def _apply_per_tenant(self, request, queryset, done: str, service, **arguments) -> None:
        for actor, rows in per_tenant(request, queryset):
            outcome = service(conversations=rows, actor=actor, via=Via.SUPERVISOR, **arguments)
            self.report_outcome(request, done, "conversation(s)", outcome)

    @admin.action(description="Assign to an agent or a team", permissions=["step_in"])
    def assign(self, request, queryset):
        closed = queryset.filter(status__in=(C.CLOSED, C.ARCHIVED)).count()
        return self._confirm(
            request, queryset, title="Assign the selected conversations", form_class=AssignForm,
            notes=[f"{closed} of them are closed or archived and will stay as they are."] if closed else [],
            apply=lambda data: self._apply_per_tenant(
                request, queryset, "Assigned", conversations_assign, agent=data["agent"], team=data["team"],
                note=data["note"],
            ),
        )  # fmt: skip

    @admin.action(description="Add tags", permissions=["step_in"])
    def add_tags(self, request, queryset):
        return self._confirm(
            request, queryset, title="Add tags to the selected conversations", form_class=TagsForm,
            apply=lambda data: self._apply_per_tenant(
                request, queryset, "Tagged", conversations_add_tags, tags=data["tags"]
            ),
        )  # fmt: skip

    @admin.action(description="Mark resolved", permissions=["step_in"])
    def mark_resolved(self, request, queryset):
        resolvable = [status for status, targets in CONVERSATION_TRANSITIONS.items() if C.RESOLVED in targets]
        movable = queryset.filter(status__in=resolvable).count()
        return self._confirm(
            request, queryset, title="Resolve the selected conversations", form_class=ReasonForm,
            notes=[
                f"{movable} will become resolved; the others are resolved, closed or archived already and stay so.",
                "Their open tasks are canceled (tasks in wrap-up stay with their agent).",
            ],
            apply=lambda data: self._apply_per_tenant(
                request, queryset, "Resolved", conversations_resolve, reason=data["reason"]
            ),
        )  # fmt: skip

    @admin.action(description="Archive", permissions=["step_in"])
    def archive(self, request, queryset):
        closed = queryset.filter(status=C.CLOSED).count()
        return self._confirm(
            request, queryset, title="Archive the selected conversations", form_class=ReasonForm,
            notes=[f"Only closed conversations can be archived: {closed} will be; the others stay as they are."],
            apply=lambda data: self._apply_per_tenant(
                request, queryset, "Archived", conversations_archive, reason=data["reason"]
            ),
        )  # fmt: skip

    @admin.action(description="Change priority", permissions=["step_in"])
    def change_priority(self, request, queryset):
        return self._confirm(
            request, queryset, title="Change the priority of the selected conversations", form_class=PriorityForm,
            notes=["Their open tasks take the matching priority."],
            apply=lambda data: self._apply_per_tenant(
                request, queryset, "Priority changed", conversations_set_priority, priority=data["priority"],
                reason=data["reason"],
            ),
        )  # fmt: skip

    @admin.action(description="Export as CSV", permissions=["step_in"])
    def export_csv(self, request, queryset):
        return self._confirm(
            request, queryset, title="Export the selected conversations", warning="", button="Download CSV",
            notes=["Nothing changes: this downloads one line per conversation."],
            apply=lambda data: self._csv(queryset),
        )  # fmt: skip

    def _csv(self, queryset) -> HttpResponse:
        stamp = timezone.now().strftime("%Y%m%d-%H%M")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="conversations-{stamp}.csv"'
        writer = csv.writer(response)
        writer.writerow(EXPORT_COLUMNS)
        for c in queryset.select_related("contact", "assignee__user", "team").prefetch_related("contact__identities"):
            identities = " ".join(identity.value for identity in c.contact.identities.all())
            agent = c.assignee.display_name if c.assignee else ""
            writer.writerow(
                spreadsheet_cell(value)
                for value in (
                    c.public_id, c.created_at.isoformat(), c.get_status_display(), c.get_priority_display(),
                    c.get_channel_display(), c.contact.name, identities, agent, c.team.name if c.team else "",
                    " ".join(c.tags), c.subject, c.first_response_at and c.first_response_at.isoformat(),
                    c.resolved_at and c.resolved_at.isoformat(), c.closed_at and c.closed_at.isoformat(),
                )
            )  # fmt: skip
        return response


@admin.register(Message)
class MessageAdmin(ServiceManagedAdmin):
    list_display = ["__str__", "conversation", "direction", "author", "delivery_status", "created_at"]
    list_filter = ["direction", "delivery_status"]
    search_fields = ["body", "provider_message_id"]
    list_select_related = ["conversation", "author__user"]


@admin.register(Attachment)
class AttachmentAdmin(ServiceManagedAdmin):
    list_display = ["filename", "content_type", "size", "created_at"]


@admin.register(InternalNote)
class InternalNoteAdmin(ServiceManagedAdmin):
    list_display = ["__str__", "conversation", "author", "created_at"]
    list_select_related = ["conversation", "author__user"]
    search_fields = ["body_markdown"]


@admin.register(Activity)
class ActivityAdmin(ServiceManagedAdmin):
    list_display = ["created_at", "kind", "old_value", "new_value", "via", "actor", "conversation", "task", "reason"]
    list_select_related = ["actor__user", "conversation", "task"]
    list_filter = ["kind", "via", ("actor", MemberListFilter)]
    search_fields = ["reason", "old_value", "new_value"]
    date_hierarchy = "created_at"


@admin.register(ReplyTemplate)
class ReplyTemplateAdmin(TenantScopedAdmin):
    list_display = ["shortcut", "name", "category", "is_active"]
    list_filter = ["category", "is_active"]
    search_fields = ["shortcut", "name", "body"]


@admin.register(SensitiveDataPattern)
class SensitiveDataPatternAdmin(TenantScopedAdmin):
    list_display = ["name", "pattern", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["name", "pattern"]


class AttachmentRestrictionForm(forms.ModelForm):
    class Meta:
        model = AttachmentRestriction
        fields = "__all__"

    def clean(self):
        # The tenant is not on the form (the admin sets it on save), so Django cannot check the
        # unique constraint itself: without this a duplicate would end in a database error.
        cleaned = super().clean()
        content_type, channel = (cleaned.get("content_type") or "").strip().lower(), cleaned.get("channel", "")
        cleaned["content_type"] = content_type
        duplicates = AttachmentRestriction.objects.filter(content_type=content_type, channel=channel)
        if cleaned.get("tenant"):
            duplicates = duplicates.filter(tenant=cleaned["tenant"])
        if content_type and duplicates.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(f"{content_type} is already restricted on this channel.")
        return cleaned


@admin.register(AttachmentRestriction)
class AttachmentRestrictionAdmin(TenantScopedAdmin):
    """Admins decide which kinds of files their organisation refuses; supervisors may look."""

    form = AttachmentRestrictionForm
    edit_role = Role.ADMIN
    list_display = ["content_type", "channel", "reason", "created_at"]
    list_filter = ["channel"]


@admin.register(CsatSurvey)
class CsatSurveyAdmin(ServiceManagedAdmin):
    """Customers' ratings, shown only: conversations.services writes them (csat_survey_send, csat_reply_record)."""

    list_display = ["conversation", "agent", "queue", "score", "sent_at", "reply_by", "answered_at"]
    list_filter = ["score"]
    list_select_related = ["conversation", "agent__user", "queue"]
