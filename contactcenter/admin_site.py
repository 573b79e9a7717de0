"""The admin site and the base of every tenant-owned model's admin, scoped by tenant.

Supervisors and admins of a tenant use it without being Django staff: access follows their role in
the current tenant. Row scoping needs no code here: the request runs inside the tenant (see
contactcenter.tenancy), so every changelist, change page, form choice and bulk action sees only that
tenant's rows, and superusers (who run with scoping lifted in the admin) see everything.
"""

from collections.abc import Callable
from contextlib import nullcontext
from functools import update_wrapper

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import reverse

from contactcenter.models import Membership, Role
from contactcenter.tenancy import tenant_context


def membership_of(request):
    return getattr(request, "membership", None)


class SwitchboardAdminSite(admin.AdminSite):
    site_header = "Switchboard administration"
    site_title = "Switchboard admin"
    index_title = "Configuration and supervision"

    def has_permission(self, request):
        user = request.user
        if not user.is_active or not user.is_authenticated:
            return False
        if user.is_superuser:
            return True
        membership = membership_of(request)
        return membership is not None and membership.can_supervise

    def admin_view(self, view, cacheable=False):
        protected = super().admin_view(view, cacheable)

        def view_for_members_with_a_role(request, *args, **kwargs):
            if request.user.is_authenticated and not self.has_permission(request):
                raise PermissionDenied("Your role does not give access to the admin.")
            return protected(request, *args, **kwargs)

        return update_wrapper(view_for_members_with_a_role, protected)

    def login(self, request, extra_context=None):
        # One sign-in page for everyone. A signed-in user without admin rights gets 403 rather than
        # a second login form (which would send them back here in a loop).
        if request.user.is_authenticated:
            raise PermissionDenied("Your role does not give access to the admin.")
        return redirect_to_login(request.GET.get("next") or reverse("admin:index"))


class TenantScopedAdmin(admin.ModelAdmin):
    """Base of every admin for a tenant-owned model.

    `edit_role` is the least role that may change rows (supervisor by default; admin for users and
    tenant settings). Any member who may open the admin may view.
    """

    edit_role: Role = Role.SUPERVISOR

    def _may_edit(self, request) -> bool:
        if request.user.is_superuser:
            return True
        membership = membership_of(request)
        if membership is None:
            return False
        if self.edit_role == Role.ADMIN:
            return membership.can_administer
        return membership.can_supervise

    def has_module_permission(self, request):
        return self.admin_site.has_permission(request)

    def has_view_permission(self, request, obj=None):
        return self.admin_site.has_permission(request)

    def has_step_in_permission(self, request):
        """Supervisors' actions on live work (bulk changes, force-complete, reassign): they go
        through the services, so they are allowed where the rows themselves are read-only."""
        return self._may_edit(request)

    def has_add_permission(self, request):
        return self._may_edit(request)

    def has_change_permission(self, request, obj=None):
        return self._may_edit(request)

    def has_delete_permission(self, request, obj=None):
        return self._may_edit(request)

    def get_object(self, request, object_id, from_field=None):
        # Django's admin redirects to the index for a missing object; for another tenant's object
        # that would confirm it exists somewhere. A 404 says nothing.
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such object in your organisation.")
        return obj

    def get_exclude(self, request, obj=None):
        excluded = list(super().get_exclude(request, obj) or [])
        if not request.user.is_superuser and "tenant" not in excluded:
            excluded.append("tenant")
        return excluded

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        names = {name for _, options in fieldsets for name in options.get("fields", ())}
        if request.user.is_superuser and "tenant" not in names:
            # Declared fieldsets name what members see; a superuser also chooses the tenant.
            (title, options), *rest = fieldsets
            fieldsets = [(title, {**options, "fields": ["tenant", *options["fields"]]}), *rest]
        return fieldsets

    def get_list_display(self, request):
        columns = list(super().get_list_display(request))
        if request.user.is_superuser and "tenant" not in columns:
            columns.append("tenant")
        return columns

    def save_model(self, request, obj, form, change):
        if not change and not request.user.is_superuser:
            obj.tenant = request.tenant
        super().save_model(request, obj, form, change)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        tenant = getattr(request, "tenant", None)
        if request.user.is_superuser or tenant is None:
            return form
        return in_tenant(form, tenant)

    def save_formset(self, request, form, formset, change):
        # Rows added in an inline (a skill's agents) belong to the tenant of the row they hang on.
        for inline_form in formset.forms:
            if inline_form.instance.tenant_id is None:
                inline_form.instance.tenant_id = form.instance.tenant_id
        super().save_formset(request, form, formset, change)

    def report_outcome(self, request, done: str, noun: str, outcome) -> None:
        """Tell the supervisor what a bulk action or step-in changed, and why it left the rest."""
        self.message_user(request, f"{done}: {len(outcome.changed)} {noun}.", messages.SUCCESS)
        if outcome.skipped:
            why = "; ".join(f"{count}: {reason}" for reason, count in outcome.skipped.most_common())
            self.message_user(request, f"Left as they were — {why}", messages.WARNING)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # Superusers run the admin across tenants; on one object's page they work inside that
        # object's tenant (on an add page, inside the tenant they chose), so its dropdowns list
        # that tenant's rows only and a save cannot link it to another tenant's (CrossTenantWrite).
        with self._superusers_tenant(request, object_id):
            response = super().changeform_view(request, object_id, form_url, extra_context)
            if hasattr(response, "render"):
                response.render()  # the dropdowns are queried when the page renders: inside the tenant
            return response

    def _superusers_tenant(self, request, object_id):
        if not request.user.is_superuser:
            return nullcontext()  # members already work inside their own tenant
        try:
            if object_id is not None:
                rows = self.get_queryset(request).filter(pk=unquote(object_id))
                tenant_id = rows.values_list("tenant_id", flat=True).first()
            else:
                tenant_id = (request.POST or request.GET).get("tenant")
            return tenant_context(int(tenant_id))
        except (TypeError, ValueError, ValidationError):
            return nullcontext()  # no such object or tenant: Django's own view answers that

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        return members_by_name(formfield)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        formfield = super().formfield_for_manytomany(db_field, request, **kwargs)
        return members_by_name(formfield)

    def confirm_action(
        self,
        request,
        queryset,
        *,
        title: str,
        summary: list[tuple[str, list[tuple[str, int]]]],
        apply: Callable[[dict], object],
        form_class: type[forms.Form] | None = None,
        notes: list[str] = (),
        warning: str = "This cannot be undone. Each change is recorded in the activity log.",
        button: str = "Yes, apply",
    ):
        """The intermediate page of an action on the selected rows (templates/admin/switchboard/confirm_action.html).

        It shows `summary` (headings with counts: what the rows are now), `notes` and `warning`,
        asks for `form_class`'s fields, and posts the rows shown (their ids, or the list's filters
        after "select all") back to the same action with `confirmed`. Then, with a valid form, `apply(cleaned_data)` runs and its result is the
        response (None: back to the list, with the messages `apply` left).
        """
        confirmed = "confirmed" in request.POST
        form = form_class(request.POST if confirmed else None) if form_class else None
        if confirmed and (form is None or form.is_valid()):
            return apply(form.cleaned_data if form is not None else {})
        # The action's field is prefixed on a change page (Django's change-form actions).
        action_field = next((name for name in ("action", "CHANGE_FORM-action") if name in request.POST), "action")
        # "Select all N" posts back the list's filters instead of N ids: a form takes at most
        # DATA_UPLOAD_MAX_NUMBER_FIELDS fields, and the services check each row as they apply anyway.
        # (Django still wants one id posted to treat the POST as an action.)
        across = request.POST.get("select_across") == "1"
        selected = list(queryset.order_by("pk").values_list("pk", flat=True)[: 1 if across else None])
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "summary": summary,
            "notes": notes,
            "warning": warning,
            "form": form,
            "button": button,
            "selected": selected,
            "select_across": across,
            "count": queryset.count() if across else len(selected),
            "action_field": action_field,
            "action": request.POST.get(action_field, ""),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media + (form.media if form is not None else forms.Media()),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/switchboard/confirm_action.html", context)


def in_tenant(form_class, tenant):
    """The admin's form for a member: new rows are the member's tenant's from the start, so the
    tenant's unique constraints (one queue per name, …) are checked on the form and refused with a
    message, rather than failing in the database (the tenant is not a field members see)."""

    class InTenantForm(form_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.instance.tenant_id is None:
                self.instance.tenant = tenant

        def _get_validation_exclusions(self):
            exclusions = super()._get_validation_exclusions()
            exclusions.discard("tenant")
            return exclusions

    InTenantForm.__name__ = form_class.__name__
    return InTenantForm


def per_tenant(request, rows):
    """Yield (actor, rows of one tenant) for the selected `rows`, each group inside its tenant, so
    the services run as they would for that tenant's own supervisor. A member's rows are all of
    their tenant and they act as themselves; a superuser, whose admin spans tenants, acts as their
    membership in each tenant, or as nobody where they have none (the log still says via supervisor)."""
    groups: dict[int, list] = {}
    for row in rows:
        groups.setdefault(row.tenant_id, []).append(row)
    for tenant_id, group in groups.items():
        actor = next((m for m in getattr(request, "memberships", []) if m.tenant_id == tenant_id), None)
        with tenant_context(tenant_id):
            yield actor, group


def members_by_name(formfield):
    """A choice of members lists them by name, with their users fetched in the same query."""
    queryset = getattr(formfield, "queryset", None)
    if queryset is not None and queryset.model is Membership:
        formfield.queryset = queryset.select_related("user")
        formfield.label_from_instance = lambda member: f"{member.display_name} ({member.get_role_display()})"
    return formfield


@admin.display(description="agent", ordering="assignee__user__username")
def assignee_name(row) -> str:
    """A list column: the row's agent by name (list_select_related should include assignee__user)."""
    return row.assignee.display_name if row.assignee_id else "–"


class MemberListFilter(admin.RelatedFieldListFilter):
    """Filter by a member (assignee, author): their names, in one query, from the current tenant only."""

    def field_choices(self, field, request, model_admin):
        members = Membership.objects.select_related("user").order_by("user__username")
        return [(member.pk, member.display_name) for member in members]


class ReadOnlyInline(admin.TabularInline):
    """Rows shown under their parent (messages, notes, the activity log) and never changed there:
    services write them. Visible to whoever may open the admin."""

    extra = 0
    can_delete = False
    show_change_link = False
    select_related: tuple[str, ...] = ()  # what each row shows of its relations, fetched in the same query

    def get_queryset(self, request):
        rows = super().get_queryset(request)
        return rows.select_related(*self.select_related) if self.select_related else rows

    def get_readonly_fields(self, request, obj=None):
        return list(self.fields or ())

    def has_view_permission(self, request, obj=None):
        return self.admin_site.has_permission(request)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ServiceManagedAdmin(TenantScopedAdmin):
    """Rows that only services and webhooks write (conversations, tasks, offers, logs): the admin
    shows them and never adds, changes or deletes them, so every change keeps going through the
    one function that validates it and writes the activity log."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
