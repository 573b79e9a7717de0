"""PostgreSQL row-level security: the second wall between tenants, inside the database.

The first wall is the scoped manager (contactcenter/tenancy.py): every ORM query of a tenant-owned
model is filtered by the current tenant. It cannot see raw SQL, a join from a model that is not
tenant-owned, or a bug in our own scoping. This wall can: every tenant-owned table carries the
policy below, so whatever SQL reaches the table, PostgreSQL itself returns only the current
tenant's rows and refuses to write another tenant's.

How it fits together:
- **Policies.** Each tenant-owned table has ENABLE and FORCE ROW LEVEL SECURITY and one policy,
  `tenant_isolation`, for every command: a row is visible and writable when its `tenant_id` equals
  the setting `app.tenant_id`, or when `app.all_tenants` is 'on' (dangerously_all_tenants()). With
  neither set, no row of any tenant is visible: the database fails closed as the manager does.
  Migrations add them with `TenantRowSecurity(table, ...)`; a test fails for any table of a
  TenantOwnedModel without them, so a new table cannot forget.
- **Role.** Superusers and table owners are exempt from policies (FORCE covers owners, nothing
  covers superusers), so the application connects as the owner and switches its session to
  DATABASE_APP_ROLE (Django's `assume_role` option, applied by our backend): NOSUPERUSER,
  NOBYPASSRLS, owns nothing, may only read and write rows. `migrate` and `flush` run as the owner instead
  (contactcenter/management/commands), and `migrate` creates the role and grants it every table.
- **Tenant.** The database backend (contactcenter/postgresql/base.py) tells the database the tenant
  in force before every statement, from the same context variable the manager reads, so the
  request middleware, consumers, webhooks and jobs that enter tenant_context() need nothing more.

The role switch is a wall against our own mistakes (a missed scope, a raw query), not against code
that can run arbitrary SQL: such code could `RESET ROLE`. A deployment that wants that too connects
with a login role of its own for the application and a separate one for migrations.
"""

from contextlib import contextmanager

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import migrations

from contactcenter.tenancy import ALL_TENANTS_SETTING, TENANT_SETTING, TenantOwnedModel

POLICY_NAME = "tenant_isolation"

# The settings are read in sub-selects, which PostgreSQL evaluates once per statement (an InitPlan)
# instead of once per row: half the cost of the policy on a scan of a few thousand rows.
_ROW_BELONGS_TO_CURRENT_TENANT = (
    f"tenant_id = (SELECT NULLIF(current_setting('{TENANT_SETTING}', true), '')::bigint)"
    f" OR (SELECT current_setting('{ALL_TENANTS_SETTING}', true) = 'on')"
)


def row_security_sql(table: str) -> list[str]:
    """Statements that put one tenant-owned table behind the policy (run as the table's owner)."""
    return [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
        (
            f'CREATE POLICY {POLICY_NAME} ON "{table}" USING ({_ROW_BELONGS_TO_CURRENT_TENANT})'
            f" WITH CHECK ({_ROW_BELONGS_TO_CURRENT_TENANT})"
        ),
    ]


def row_security_reverse_sql(table: str) -> list[str]:
    return [
        f'DROP POLICY IF EXISTS {POLICY_NAME} ON "{table}"',
        f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY',
    ]


class TenantRowSecurity(migrations.RunSQL):
    """Migration operation: put these tenant-owned tables behind the tenant_isolation policy.

    Every migration that creates the table of a new TenantOwnedModel ends with one of these.
    """

    def __init__(self, *tables: str):
        self.tables = tables
        super().__init__(
            sql=[statement for table in tables for statement in row_security_sql(table)],
            reverse_sql=[statement for table in reversed(tables) for statement in row_security_reverse_sql(table)],
        )

    def deconstruct(self):
        return (f"{__name__}.{type(self).__name__}", list(self.tables), {})

    def describe(self):
        return f"Row-level security on {', '.join(self.tables)}"


def tenant_tables() -> list[str]:
    """The tables of every concrete TenantOwnedModel installed."""
    return sorted(
        model._meta.db_table
        for model in apps.get_models()
        if issubclass(model, TenantOwnedModel) and not model._meta.proxy and model._meta.managed
    )


def tenant_tables_without_row_security(connection) -> list[str]:
    """Tenant tables that lack ENABLE, FORCE or the tenant_isolation policy, as `table: what`."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                   EXISTS (SELECT 1 FROM pg_policies p
                           WHERE p.schemaname = n.nspname AND p.tablename = c.relname AND p.policyname = %s)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relkind = 'r'
            """,
            [POLICY_NAME],
        )
        found = {name: (enabled, forced, has_policy) for name, enabled, forced, has_policy in cursor.fetchall()}
    missing = []
    for table in tenant_tables():
        enabled, forced, has_policy = found.get(table, (False, False, False))
        lacks = [what for what, ok in (("ENABLE", enabled), ("FORCE", forced), (POLICY_NAME, has_policy)) if not ok]
        if lacks:
            missing.append(f"{table}: no {', '.join(lacks)}")
    return missing


def app_role_provision(connection, role: str) -> None:
    """Make sure the application's role exists, cannot bypass the policies, and may use every table.

    Runs as the owner at the end of every `migrate`, so tables added since are granted too. The role
    is created NOLOGIN (the application reaches it with SET ROLE) when missing; that needs a
    superuser or CREATEROLE. Idempotent, and safe when two databases of one server migrate at once.
    """
    quoted = connection.ops.quote_name(role)  # settings checked it is a plain name
    with connection.cursor() as cursor:
        cursor.execute(
            "DO $$ BEGIN "
            f"CREATE ROLE {quoted} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; "
            "END $$"
        )
        cursor.execute(
            "SELECT rolsuper, rolbypassrls, rolname = current_user, pg_has_role(current_user, rolname, 'MEMBER') "
            "FROM pg_roles WHERE rolname = %s",
            [role],
        )
        superuser, bypasses, is_login_role, member = cursor.fetchone()
        if superuser or bypasses or is_login_role:
            raise ImproperlyConfigured(
                f"DATABASE_APP_ROLE={role!r} would bypass row-level security (it is a superuser, has "
                "BYPASSRLS, or is the role that owns the tables); name a role of its own"
            )
        if not member:  # a non-superuser owner must be a member to SET ROLE to it
            cursor.execute(f"GRANT {quoted} TO CURRENT_USER")
        cursor.execute("SELECT current_schema()")
        schema = connection.ops.quote_name(cursor.fetchone()[0])
        cursor.execute(f"GRANT USAGE ON SCHEMA {schema} TO {quoted}")
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {quoted}")
        cursor.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {quoted}")


@contextmanager
def as_table_owner(connection):
    """Run the block as the role that logged in (the tables' owner), not as the application's role.

    For the maintenance commands that change or empty tables (migrate, flush). A no-op when no
    application role is configured or the backend is not ours.
    """
    owner_mode = getattr(connection, "as_table_owner", None)
    if owner_mode is None:
        yield
        return
    with owner_mode():
        yield
