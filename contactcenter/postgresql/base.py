"""Django's PostgreSQL backend, telling the database who runs each statement: role and tenant.

Row-level security (contactcenter/rowsecurity.py) filters tenant tables by the settings
`app.tenant_id` and `app.all_tenants`, and binds only a role that is neither superuser nor owner.
Before every statement this backend makes the session match what is in force right now:

- the role: DATABASES OPTIONS["assume_role"] (DATABASE_APP_ROLE), or the login role itself (the
  tables' owner) inside `as_table_owner()`, which migrate and flush use;
- the tenant: contactcenter.tenancy.row_security_settings(), read from the same context variable
  as the scoped manager, so every entry point that enters tenant_context() sets it too.

Why not `SET LOCAL` per transaction, as one would write by hand: Django runs in autocommit, so most
statements are transactions of their own, and a `SET LOCAL` outside a transaction block does
nothing; setting it before every statement would double the round trips. Instead, an execute
wrapper compares what the statement needs with what this physical connection was last given and,
only when they differ, sets all three for the session (`set_config(..., false)`) in one extra round
trip. In practice that is once or twice per request or job (entering the tenant, or
`dangerously_all_tenants()` to find it), not once per query.

What a connection was given is remembered per physical connection, not per Django connection
object, because the connection pool hands one physical connection to many threads in turn. Session
settings made inside a transaction are undone when it, or the savepoint they were made under, rolls
back; so every rollback, and returning a connection to the pool mid-transaction (the pool then rolls
it back), forgets what was given, and the next statement sets it again. The settings must never be
trusted across a pooler that shares sessions between clients (PgBouncer in transaction mode): run
such a pooler in session mode.

Django's own `assume_role` handling (SET ROLE once when a connection opens) is replaced by this,
since the pool opens connections on behalf of whichever thread comes first.
"""

import weakref
from contextlib import contextmanager

from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus

# physical connection -> (role, app.tenant_id, app.all_tenants) it was last given; absent: unknown.
_given: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOGIN_ROLE = "none"  # set_config('role', 'none') is RESET ROLE: back to the role that logged in


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._acting_as_owner = False
        if self.alias != NO_DB_ALIAS:
            # First in the list, so it runs before any wrapper a test or library adds.
            self.execute_wrappers.insert(0, self._tell_database_who_runs_this)

    def _tell_database_who_runs_this(self, execute, sql, params, many, context):
        # Imported here: tenancy defines models, which need this backend loaded first.
        from contactcenter.tenancy import ALL_TENANTS_SETTING, TENANT_SETTING, row_security_settings

        connection = self.connection
        role = self.settings_dict["OPTIONS"].get("assume_role")
        wanted = (_LOGIN_ROLE if self._acting_as_owner or not role else role, *row_security_settings())
        # In a failed transaction only a rollback can run; the settings are given after it.
        if _given.get(connection) != wanted and connection.info.transaction_status != TransactionStatus.INERROR:
            # On the raw connection: not a query of the caller's, so never counted or logged as one.
            with self.wrap_database_errors, connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('role', %s, false),"
                    f" set_config('{TENANT_SETTING}', %s, false), set_config('{ALL_TENANTS_SETTING}', %s, false)",
                    wanted,
                )
            _given[connection] = wanted
        return execute(sql, params, many, context)

    def _forget_what_was_given(self):
        if self.connection is not None:
            _given.pop(self.connection, None)

    def _configure_role(self, connection):
        return False  # given before each statement instead (see the module's docstring)

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._forget_what_was_given()

    def _savepoint_rollback(self, sid):
        try:
            return super()._savepoint_rollback(sid)
        finally:
            self._forget_what_was_given()

    def _close(self):
        if self.connection is not None and self.connection.info.transaction_status != TransactionStatus.IDLE:
            self._forget_what_was_given()  # the pool will roll it back, undoing what was set in it
        return super()._close()

    @contextmanager
    def as_table_owner(self):
        """Run the block's statements as the role that logged in (the tables' owner), not the app's."""
        self._acting_as_owner = True
        try:
            yield
        finally:
            self._acting_as_owner = False
