"""Row-level security: PostgreSQL itself keeps tenants apart, even from raw SQL.

These tests talk to the database with raw SQL on the application's own connection, so the scoped
manager (the first wall) is out of the picture and only the policies stand between the tenants.
"""

from contextlib import suppress
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from contactcenter.models import Tenant
from contactcenter.rowsecurity import POLICY_NAME, tenant_tables, tenant_tables_without_row_security
from contactcenter.tenancy import dangerously_all_tenants, tenant_context

MEMBERSHIPS = "contactcenter_membership"


class Boom(Exception):
    pass


def tenant_ids_seen(table: str = MEMBERSHIPS) -> list[int]:
    """The tenant of every row of `table` the database lets this connection see, by raw SQL."""
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT tenant_id FROM "{table}" ORDER BY tenant_id')
        return [tenant_id for (tenant_id,) in cursor.fetchall()]


def test_every_tenant_table_is_behind_the_policy(db):
    assert len(tenant_tables()) > 20, "the guard must see every tenant-owned table"
    assert tenant_tables_without_row_security(connection) == []


def test_the_application_runs_as_a_role_that_can_neither_bypass_nor_own(db):
    assert settings.DATABASE_APP_ROLE, "the suite runs with row-level security on (DATABASE_APP_ROLE)"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, rolsuper, rolbypassrls,"
            " (SELECT count(*) FROM pg_tables WHERE tableowner = current_user)"
            " FROM pg_roles WHERE rolname = current_user"
        )
        role, superuser, bypasses, tables_owned = cursor.fetchone()
    assert (role, superuser, bypasses, tables_owned) == (settings.DATABASE_APP_ROLE, False, False, 0)


def test_without_a_tenant_tenant_tables_return_no_rows(acme_agent, globex_agent):
    assert tenant_ids_seen() == []
    with dangerously_all_tenants():  # the bypass the policies honour
        assert tenant_ids_seen() == sorted([acme_agent.tenant_id, globex_agent.tenant_id])
    assert tenant_ids_seen() == []  # and it ends with its block


def test_inside_a_tenant_raw_sql_sees_and_writes_only_its_rows(acme, acme_agent, globex_agent):
    with tenant_context(acme), connection.cursor() as cursor:
        assert tenant_ids_seen() == [acme.pk]
        cursor.execute(f"SELECT count(*) FROM {MEMBERSHIPS} WHERE tenant_id = %s", [globex_agent.tenant_id])
        assert cursor.fetchone() == (0,)
        cursor.execute(f"UPDATE {MEMBERSHIPS} SET is_active = false WHERE id = %s", [globex_agent.pk])
        assert cursor.rowcount == 0
        cursor.execute(f"DELETE FROM {MEMBERSHIPS} WHERE id = %s", [globex_agent.pk])
        assert cursor.rowcount == 0
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            cursor.execute(  # a row for globex, written while acme is current
                f"INSERT INTO {MEMBERSHIPS} (tenant_id, user_id, public_id, role, is_active, created_at, phone_number)"
                " VALUES (%s, %s, 'planted', 'admin', true, now(), '')",
                [globex_agent.tenant_id, acme_agent.user_id],
            )
    with tenant_context(globex_agent.tenant_id):
        assert globex_agent.__class__.objects.get(pk=globex_agent.pk).is_active


def test_a_join_from_a_model_that_is_not_tenant_owned_is_filtered_too(acme, acme_agent, globex_agent):
    # The manager scopes queries of tenant-owned models, not joins into them from elsewhere: this
    # is the kind of query only the second wall catches.
    users_with_a_membership = get_user_model().objects.filter(memberships__is_active=True).order_by("username")
    with tenant_context(acme):
        assert [user.username for user in users_with_a_membership] == ["acme-agent1"]


def test_the_tenant_follows_savepoint_rollbacks(acme, globex, acme_agent, globex_agent):
    with tenant_context(globex):
        assert tenant_ids_seen() == [globex.pk]
        savepoint = transaction.savepoint_create()
    with tenant_context(acme):
        assert tenant_ids_seen() == [acme.pk]  # applied inside the savepoint
        transaction.savepoint_rollback(savepoint)  # which puts globex's setting back in the database
        assert tenant_ids_seen() == [acme.pk]  # so it must be applied again


@pytest.mark.django_db(transaction=True)
def test_the_tenant_follows_transaction_rollbacks(acme, globex, acme_agent, globex_agent):
    with tenant_context(globex):
        assert tenant_ids_seen() == [globex.pk]
        with suppress(Boom), transaction.atomic():
            with tenant_context(acme):
                assert tenant_ids_seen() == [acme.pk]  # applied inside the transaction
            raise Boom  # whose rollback puts globex's setting back in the database
    with tenant_context(acme):  # so it must be applied again
        assert tenant_ids_seen() == [acme.pk]
    assert tenant_ids_seen() == []


def test_every_tenant_table_shows_each_tenant_only_its_own_rows(db):
    call_command("seed_demo", stdout=StringIO())  # rows of two tenants in many tables
    tenants = list(Tenant.objects.order_by("pk"))
    checked_with_rows = 0
    for table in tenant_tables():
        with dangerously_all_tenants():
            everything = tenant_ids_seen(table)
        assert tenant_ids_seen(table) == [], table
        for tenant in tenants:
            with tenant_context(tenant):
                assert tenant_ids_seen(table) == [t for t in everything if t == tenant.pk], table
        checked_with_rows += len(set(everything)) == len(tenants)
    assert checked_with_rows >= 5, "the demo data must give both tenants rows in several tables"


def test_removing_a_policy_is_caught(acme, acme_agent, globex_agent):
    with tenant_context(acme):
        assert tenant_ids_seen() == [acme.pk]
    with connection.as_table_owner(), connection.cursor() as cursor:  # undone with the test's transaction
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE refuses to run with checks pending
        cursor.execute(f"DROP POLICY {POLICY_NAME} ON {MEMBERSHIPS}")
    assert tenant_tables_without_row_security(connection) == [f"{MEMBERSHIPS}: no {POLICY_NAME}"]

    # Without a policy but still enabled, the table denies everything; without row security at all,
    # the raw probe sees the other tenant's rows, which is what the tests above would fail on.
    with tenant_context(acme):
        assert tenant_ids_seen() == []
    with connection.as_table_owner(), connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {MEMBERSHIPS} DISABLE ROW LEVEL SECURITY")
    assert tenant_tables_without_row_security(connection) == [f"{MEMBERSHIPS}: no ENABLE, {POLICY_NAME}"]
    with tenant_context(acme):
        assert tenant_ids_seen() == sorted([acme.pk, globex_agent.tenant_id])
