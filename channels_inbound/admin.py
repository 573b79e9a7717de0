from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied

from channels_inbound.models import ChannelEndpoint, InboundEvent, UnroutedInboundEvent
from contactcenter.admin_site import ServiceManagedAdmin, TenantScopedAdmin


class ChannelEndpointForm(forms.ModelForm):
    """The auth token is write-only: typed in, stored encrypted, never rendered back (not even masked
    in the input); the page shows only whether one is set and its last four characters."""

    auth_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave blank to keep the stored token. It is never shown back.",
    )
    clear_auth_token = forms.BooleanField(required=False, label="Remove the stored token")

    class Meta:
        model = ChannelEndpoint
        fields = ["tenant", "provider", "channel", "address", "name", "account_sid", "auth_token", "auth_token_env_var", "allowed_origins", "default_queue", "is_active"]

    def clean(self):
        cleaned = super().clean()
        queue = cleaned.get("default_queue")
        if queue is not None and cleaned.get("channel") and not queue.takes(cleaned["channel"]):
            self.add_error("default_queue", f"The {queue.name} queue does not take this channel.")
        return cleaned

    def save(self, commit=True):
        endpoint = super().save(commit=False)
        if self.cleaned_data.get("auth_token"):
            endpoint.set_auth_token(self.cleaned_data["auth_token"])
        elif self.cleaned_data.get("clear_auth_token"):
            endpoint.auth_token_encrypted = ""
        if commit:
            endpoint.save()
        return endpoint


@admin.register(ChannelEndpoint)
class ChannelEndpointAdmin(TenantScopedAdmin):
    form = ChannelEndpointForm
    list_display = ["__str__", "provider", "channel", "address", "token", "default_queue", "is_active"]
    list_filter = ["provider", "channel", "is_active"]
    search_fields = ["address", "name"]
    list_select_related = ["default_queue"]
    readonly_fields = ["token"]
    fieldsets = [
        (None, {"fields": ["provider", "channel", "address", "name", "default_queue", "is_active"]}),
        ("Credentials", {"fields": ["account_sid", "token", "auth_token", "clear_auth_token", "auth_token_env_var"]}),
        ("Webchat", {"fields": ["allowed_origins"]}),
    ]

    @admin.display(description="auth token")
    def token(self, endpoint):
        """Whether a token is set, and its last four characters: enough to tell which one, never to use it."""
        if endpoint.auth_token_env_var:
            return f"from ${endpoint.auth_token_env_var} ({'set' if endpoint.auth_token() else 'not set'})"
        return f"set ({endpoint.auth_token_masked})" if endpoint.auth_token_encrypted else "not set"


@admin.register(InboundEvent)
class InboundEventAdmin(ServiceManagedAdmin):
    list_display = ["received_at", "provider", "kind", "endpoint", "outcome", "detail"]
    list_filter = ["provider", "kind", "outcome"]
    search_fields = ["detail", "idempotency_key"]
    list_select_related = ["endpoint"]
    readonly_fields = ["received_at", "provider", "kind", "endpoint", "path", "headers", "body", "idempotency_key", "outcome", "detail"]
    date_hierarchy = "received_at"
    actions = ["replay"]

    @admin.action(description="Replay the selected requests that failed while being stored")
    def replay(self, request, queryset):
        from channels_inbound.twilio.replay import twilio_event_replay
        from contactcenter.errors import DomainError

        if not self._may_edit(request):
            raise PermissionDenied("Only supervisors and admins can replay requests.")
        outcomes = []
        for event in queryset.select_related("endpoint"):
            try:
                outcomes.append(twilio_event_replay(event=event, replayed_by=request.user.get_full_name() or request.user.get_username()))
            except DomainError as error:
                self.message_user(request, f"{event}: {error}", level=messages.WARNING)
        if outcomes:
            summary = ", ".join(f"{outcomes.count(o)} {o}" for o in sorted(set(outcomes)))
            self.message_user(request, f"Replayed {len(outcomes)} request(s): {summary}.", level=messages.SUCCESS)


@admin.register(UnroutedInboundEvent)
class UnroutedInboundEventAdmin(admin.ModelAdmin):
    """Requests that matched no endpoint belong to no tenant: platform operators (superusers) only."""

    list_display = ["received_at", "provider", "kind", "path", "detail"]
    list_filter = ["provider", "kind"]
    readonly_fields = ["received_at", "provider", "kind", "path", "headers", "body", "detail"]

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser
