"""Django's migrate, run as the owner of the tables, then granting the application's role.

The application itself runs as DATABASE_APP_ROLE, which owns nothing and cannot change the schema
(see contactcenter/rowsecurity.py). Migrations change the schema, so they run as the role that
logged in; afterwards every table, including any this run created, is granted to the application's
role, which is created first if this server lacks it.
"""

from django.conf import settings
from django.core.management.commands import migrate
from django.db import connections

from contactcenter.rowsecurity import app_role_provision, as_table_owner


class Command(migrate.Command):
    def handle(self, *args, **options):
        connection = connections[options["database"]]
        with as_table_owner(connection):
            super().handle(*args, **options)
            if settings.DATABASE_APP_ROLE:
                app_role_provision(connection, settings.DATABASE_APP_ROLE)
