"""Tenant isolation, enforced in one place.

Every tenant-owned model inherits `TenantOwnedModel`. Its default manager reads the *current
tenant* from a context variable and filters every query by it, so a view, consumer or job cannot
forget to scope a query: it either runs inside a tenant or it fails.

The current tenant is set only by the entry points:
- `contactcenter.middleware.CurrentTenantMiddleware` for HTTP requests (from the signed-in user's
  membership, never from the URL);
- the websocket consumers (from the authenticated user in the scope);
- webhooks (from the endpoint the provider's credentials identify);
- Celery jobs (from the explicit `tenant_id` they are given).

There are three states, read when each query runs (see CurrentTenantId): a tenant is set (queries
see that tenant's rows), none is set (queries raise `TenantNotSet`: failing closed, never silently
returning everything), or the caller has
said `dangerously_all_tenants()` (superusers in admin, system sweeps that then enter each tenant,
and the membership lookup that decides which tenant a user is in). The bypass is a context manager
with a loud name so `grep dangerously_` lists every place that crosses tenants.
"""

import contextvars
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import models
from django.db.models.functions import Coalesce
from django.db.models.lookups import Exact
from django.db.models.sql.where import AND
from django.http import Http404


class TenantNotSet(RuntimeError):
    """A tenant-owned table was queried outside any tenant context."""


class CrossTenantWrite(RuntimeError):
    """A row of one tenant was about to be written while another tenant is current."""


_ALL_TENANTS = "all-tenants"
_current_tenant: contextvars.ContextVar[int | str | None] = contextvars.ContextVar(
    "switchboard_current_tenant", default=None
)


def current_tenant_id() -> int | None:
    """The id of the tenant in force, or None when none is set or all tenants are."""
    value = _current_tenant.get()
    return value if isinstance(value, int) else None


@contextmanager
def tenant_context(tenant_or_id) -> Iterator[None]:
    """Run the block inside one tenant: every scoped query sees only that tenant's rows."""
    tenant_id = getattr(tenant_or_id, "pk", tenant_or_id)
    if not isinstance(tenant_id, int):
        raise TypeError(f"tenant_context needs a Tenant or its integer id, not {tenant_or_id!r}")
    token = _current_tenant.set(tenant_id)
    try:
        yield
    finally:
        _current_tenant.reset(token)


@contextmanager
def dangerously_all_tenants() -> Iterator[None]:
    """Run the block with tenant scoping lifted. Every use must say why it is safe."""
    token = _current_tenant.set(_ALL_TENANTS)
    try:
        yield
    finally:
        _current_tenant.reset(token)


def _check_write_allowed(tenant_id: int | None) -> None:
    current = _current_tenant.get()
    if isinstance(current, int) and tenant_id != current:
        raise CrossTenantWrite(f"writing a row of tenant {tenant_id} while tenant {current} is current")


class CurrentTenantId(models.Expression):
    """The current tenant's id, read when the SQL is compiled, not when the queryset is built.

    Querysets are often built long before they run: a ModelForm's choices at import time, a
    queryset kept on a class. Reading the tenant at compile time scopes each query by the tenant in
    force when it actually runs, and a query that runs outside any tenant raises TenantNotSet.
    Under dangerously_all_tenants() it compiles to NULL, which the manager's COALESCE turns into
    "this row's own tenant", i.e. no restriction.
    """

    output_field = models.BigIntegerField()

    def __init__(self, model_name: str = ""):
        super().__init__()
        self.model_name = model_name

    def as_sql(self, compiler, connection):
        current = _current_tenant.get()
        if current is None:
            raise TenantNotSet(
                f"{self.model_name or 'A tenant-owned table'} was queried outside a tenant; wrap the call "
                "in tenant_context(tenant) at the entry point"
            )
        if current == _ALL_TENANTS:
            return "NULL", []
        return "%s", [current]

    def __eq__(self, other):
        return isinstance(other, CurrentTenantId)

    def __hash__(self):
        return hash(CurrentTenantId)


_tenant_conditions: dict[type, Exact] = {}


def _tenant_condition(model) -> Exact:
    """`<table>.tenant_id = COALESCE(<current tenant>, <table>.tenant_id)` for `model`, built once."""
    condition = _tenant_conditions.get(model)
    if condition is None:
        column = model._meta.get_field("tenant").get_col(model._meta.db_table)
        condition = _tenant_conditions[model] = Exact(column, Coalesce(CurrentTenantId(model.__name__), column))
    return condition


class TenantScopedQuerySet(models.QuerySet):
    pass


class TenantScopedManager(models.Manager.from_queryset(TenantScopedQuerySet)):
    """Filters every query by the tenant in force when it runs; raises when there is none.

    The filter is `tenant_id = COALESCE(<current tenant>, tenant_id)`: PostgreSQL folds a constant
    first argument, so with a tenant set this is a plain `tenant_id = 42` that uses the indexes.
    """

    def get_queryset(self):
        queryset = super().get_queryset()
        # The condition `.filter(tenant_id=Coalesce(CurrentTenantId(), F("tenant_id")))` would
        # build, made once per model and added to the new query's WHERE as is: resolving it through
        # filter() on every queryset cost ~0.2 ms of CPU, as much as the rest of a simple query.
        # The query's first alias is always the model's table, which the condition names; it is
        # registered as filter() would, so joins and subqueries relabel it alike.
        if queryset.query.get_initial_alias() != self.model._meta.db_table:
            return queryset.filter(tenant_id=Coalesce(CurrentTenantId(self.model.__name__), models.F("tenant_id")))
        # A shallow copy: resolving a subquery's WHERE assigns to its conditions' attributes.
        queryset.query.where.add(_tenant_condition(self.model).copy(), AND)
        return queryset

    # Creating needs no read scope: the row names its tenant, and it must be the current one.
    def create(self, **kwargs):
        tenant = kwargs.get("tenant")
        _check_write_allowed(kwargs.get("tenant_id", getattr(tenant, "pk", None)))
        return models.QuerySet(self.model, using=self._db).create(**kwargs)

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for obj in objs:
            _check_write_allowed(obj.tenant_id)
        return models.QuerySet(self.model, using=self._db).bulk_create(objs, *args, **kwargs)


def new_public_id() -> str:
    """An unguessable identifier for URLs (96 random bits), so ids cannot be enumerated."""
    return secrets.token_urlsafe(12)


class TenantOwnedModel(models.Model):
    """Base of every model whose rows belong to one tenant."""

    tenant = models.ForeignKey("contactcenter.Tenant", on_delete=models.CASCADE, related_name="+")
    public_id = models.CharField(max_length=24, unique=True, default=new_public_id, editable=False)

    objects = TenantScopedManager()

    class Meta:
        abstract = True
        base_manager_name = "objects"

    def save(self, *args, **kwargs):
        _check_write_allowed(self.tenant_id)
        super().save(*args, **kwargs)


def get_in_tenant_or_404(model_or_queryset, **lookup):
    """The object matching `lookup` inside the current tenant, or 404.

    Another tenant's object and a missing one are indistinguishable to the caller.
    """
    queryset = (
        model_or_queryset.objects.all() if isinstance(model_or_queryset, type) else model_or_queryset
    )
    try:
        return queryset.get(**lookup)
    except (queryset.model.DoesNotExist, ValueError):
        raise Http404(f"No {queryset.model._meta.verbose_name} matches the given query.") from None


# --- The second wall: what the database is told -----------------------------------------------------
# PostgreSQL row-level security (contactcenter/rowsecurity.py) enforces the same scoping inside the
# database, for every statement, raw SQL included. It reads the tenant from two settings that the
# database backend (contactcenter/postgresql/base.py) keeps equal to the context variable above, so
# the entry points that enter tenant_context() set it without any code of their own.
TENANT_SETTING = "app.tenant_id"
ALL_TENANTS_SETTING = "app.all_tenants"


def row_security_settings() -> tuple[str, str]:
    """The values of (app.tenant_id, app.all_tenants) that match the tenant in force right now.

    No tenant: ('', 'off'), under which the policies show no row of any tenant (failing closed, as
    the manager does). dangerously_all_tenants(): ('', 'on'), which the policies honour as a bypass.
    """
    current = _current_tenant.get()
    if current == _ALL_TENANTS:
        return "", "on"
    return ("" if current is None else str(current)), "off"
