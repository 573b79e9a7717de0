"""Django's flush, run as the owner of the tables.

Emptying every table of every tenant is maintenance, not something the application does: its role
holds no TRUNCATE (which row-level security would not restrain). The test runner flushes after
each test that commits.
"""

from django.core.management.commands import flush
from django.db import connections

from contactcenter.rowsecurity import as_table_owner


class Command(flush.Command):
    def handle(self, **options):
        with as_table_owner(connections[options["database"]]):
            return super().handle(**options)
