"""Admin of contacts, conversations, messages, notes, templates, patterns and the activity log.

Kept simple (the supervisor issue enriches it). Conversations and messages change through the
services, so their admin is read-mostly and never deletes: the activity log refers to them.
"""

from django.contrib import admin

from contactcenter.admin_site import ServiceManagedAdmin, TenantScopedAdmin
from conversations.models import (
    Activity,
    Attachment,
    Contact,
    ContactIdentity,
    Conversation,
    InternalNote,
    Message,
    ReplyTemplate,
    SensitiveDataPattern,
)


class ContactIdentityInline(admin.TabularInline):
    """Identities are created normalised by contact_find_or_create; here they are only shown."""

    model = ContactIdentity
    fields = ["kind", "value"]
    readonly_fields = ["kind", "value"]
    extra = 0

    def has_view_permission(self, request, obj=None):
        return self.admin_site.has_permission(request)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Contact)
class ContactAdmin(TenantScopedAdmin):
    list_display = ["__str__", "is_vip", "created_at"]
    list_filter = ["is_vip"]
    search_fields = ["name", "identities__value"]
    fields = ["name", "is_vip", "notes"]
    inlines = [ContactIdentityInline]


@admin.register(ContactIdentity)
class ContactIdentityAdmin(ServiceManagedAdmin):
    list_display = ["value", "kind", "contact"]
    list_filter = ["kind"]
    search_fields = ["value"]


@admin.register(Conversation)
class ConversationAdmin(ServiceManagedAdmin):
    list_display = ["__str__", "contact", "channel", "status", "priority", "assignee", "created_at"]
    list_filter = ["status", "priority", "channel"]
    search_fields = ["subject", "contact__name", "tags"]


@admin.register(Message)
class MessageAdmin(ServiceManagedAdmin):
    list_display = ["__str__", "conversation", "direction", "delivery_status", "created_at"]
    list_filter = ["direction", "delivery_status"]
    search_fields = ["body", "provider_message_id"]


@admin.register(Attachment)
class AttachmentAdmin(ServiceManagedAdmin):
    list_display = ["filename", "content_type", "size", "created_at"]


@admin.register(InternalNote)
class InternalNoteAdmin(ServiceManagedAdmin):
    list_display = ["__str__", "conversation", "author", "created_at"]


@admin.register(Activity)
class ActivityAdmin(ServiceManagedAdmin):
    list_display = ["created_at", "kind", "old_value", "new_value", "via", "actor", "conversation", "task"]
    list_select_related = ["actor__user", "conversation", "task"]
    list_filter = ["kind", "via"]


@admin.register(ReplyTemplate)
class ReplyTemplateAdmin(TenantScopedAdmin):
    list_display = ["shortcut", "name", "category", "is_active"]
    list_filter = ["category", "is_active"]
    search_fields = ["shortcut", "name", "body"]


@admin.register(SensitiveDataPattern)
class SensitiveDataPatternAdmin(TenantScopedAdmin):
    list_display = ["name", "pattern", "is_active"]
