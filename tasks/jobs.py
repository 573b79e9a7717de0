"""Celery jobs of tasks: routing and the timer sweeps. Each calls services and owns only its retry
and expiry policy; every service they call is idempotent (compare-and-set), so acks_late is safe:
a worker killed mid-job hands the message to another, and a duplicate run acts on nothing twice."""

from celery import shared_task

from contactcenter.tenancy import tenant_context
from tasks import timers


@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def route_tenant(tenant_id: int) -> int:
    """Offer the tenant's waiting work to its available agents (tasks.services.routing_run)."""
    from tasks.services import routing_run

    with tenant_context(tenant_id):
        return len(routing_run(tenant_id=tenant_id))


@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def sweep_due_timers() -> dict[str, int]:
    """Every half second: offers that timed out, automatic wrap-ups that ended, SLA warnings and
    breaches, resolved conversations due to close. Each is one indexed query when nothing is due; a
    backlog is worked off in batches for up to a few seconds (tasks.timers._sweep)."""
    return timers.timers_sweep_due()


@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def reap_stuck_tasks() -> int:
    return timers.tasks_reap_stuck()
