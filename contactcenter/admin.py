"""Admin for tenants, memberships and users (see contactcenter.admin_site for the scoping)."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.http import Http404

from contactcenter.admin_site import TenantScopedAdmin, membership_of
from contactcenter.models import Membership, Role, Tenant

site = admin.site  # a SwitchboardAdminSite: see contactcenter.apps.SwitchboardAdminConfig


class TenantAdmin(admin.ModelAdmin):
    """Tenant settings: superusers manage all tenants; a tenant's admins edit their own."""

    list_display = ["name", "slug", "time_zone", "created_at"]
    search_fields = ["name", "slug"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(pk=getattr(request.tenant, "pk", None))

    def get_readonly_fields(self, request, obj=None):
        return [] if request.user.is_superuser else ["slug"]

    def has_module_permission(self, request):
        return site.has_permission(request)

    def has_view_permission(self, request, obj=None):
        return site.has_permission(request)

    def has_change_permission(self, request, obj=None):
        membership = membership_of(request)
        return request.user.is_superuser or (membership is not None and membership.can_administer)

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such organisation.")
        return obj


class MembershipAdmin(TenantScopedAdmin):
    edit_role = Role.ADMIN
    list_display = ["user", "role", "phone_number", "is_active", "created_at"]
    list_filter = ["role", "is_active"]
    search_fields = ["user__username", "user__first_name", "user__last_name", "user__email"]
    list_select_related = ["user"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user" and not request.user.is_superuser:
            # Users are global; a tenant admin chooses only among their own tenant's people.
            kwargs["queryset"] = get_user_model().objects.filter(memberships__tenant=request.tenant)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class TenantUserAdmin(UserAdmin):
    """Users of the current tenant. A tenant admin adds people; they join this tenant as agents."""

    tenant_fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Status", {"fields": ("is_active", "last_login", "date_joined")}),
    )

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(memberships__tenant=request.tenant).distinct()

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not request.user.is_superuser:
            return self.tenant_fieldsets
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return [] if request.user.is_superuser else ["last_login", "date_joined"]

    def _is_tenant_admin(self, request) -> bool:
        membership = membership_of(request)
        return request.user.is_superuser or (membership is not None and membership.can_administer)

    def has_module_permission(self, request):
        return self._is_tenant_admin(request)

    def has_view_permission(self, request, obj=None):
        return self._is_tenant_admin(request)

    def has_add_permission(self, request):
        return self._is_tenant_admin(request)

    def has_change_permission(self, request, obj=None):
        return self._is_tenant_admin(request)

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such user in your organisation.")
        return obj

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change and not request.user.is_superuser:
            Membership.objects.create(tenant=request.tenant, user=obj, role=Role.AGENT)


site.register(Tenant, TenantAdmin)
site.register(Membership, MembershipAdmin)
site.unregister(get_user_model())
site.register(get_user_model(), TenantUserAdmin)
