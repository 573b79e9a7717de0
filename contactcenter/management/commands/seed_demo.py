from django.core.management.base import BaseCommand

from contactcenter.demo import DEMO_PASSWORD, DEMO_TENANTS, demo_usernames, seed_demo


class Command(BaseCommand):
    help = "Create the demo tenants (acme, globex), their people and SMS endpoints. Safe to run again."

    def handle(self, *args, **options):
        created = seed_demo()
        if created:
            for line in created:
                self.stdout.write(f"created {line}")
        else:
            self.stdout.write("demo data already present; nothing changed")
        for spec in DEMO_TENANTS:
            self.stdout.write(f"{spec.slug}: {', '.join(demo_usernames(spec.slug))} (password {DEMO_PASSWORD})")
