from django import forms
from django.contrib import admin

from channels_inbound.models import ChannelEndpoint
from contactcenter.admin_site import TenantScopedAdmin


class ChannelEndpointForm(forms.ModelForm):
    auth_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave blank to keep the stored token. It is never shown back.",
    )

    class Meta:
        model = ChannelEndpoint
        fields = ["tenant", "provider", "channel", "address", "name", "account_sid", "auth_token", "auth_token_env_var", "is_active"]

    def save(self, commit=True):
        endpoint = super().save(commit=False)
        if self.cleaned_data.get("auth_token"):
            endpoint.set_auth_token(self.cleaned_data["auth_token"])
        if commit:
            endpoint.save()
        return endpoint


@admin.register(ChannelEndpoint)
class ChannelEndpointAdmin(TenantScopedAdmin):
    form = ChannelEndpointForm
    list_display = ["__str__", "provider", "channel", "address", "auth_token_masked", "is_active"]
    list_filter = ["provider", "channel", "is_active"]
    search_fields = ["address", "name"]
    readonly_fields = ["auth_token_masked"]
