"""The one Celery app. Jobs live in each app's jobs.py and only call services."""

import logging
import os

from celery import Celery
from celery.signals import after_setup_logger, task_postrun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contactcenter.settings")

app = Celery("contactcenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(related_name="jobs")

# Database connections are reused across jobs. Celery's Django fixup closes every connection before
# and after each job, and in a prefork worker with Django's pool it closes the whole pool: every job
# opened a new PostgreSQL backend (a process fork on the server, ~5-10 ms, and a churn of backends
# under load). With CELERY_DB_REUSE_MAX the fixup closes only every that many jobs (it counts its
# pre- and post-run calls, two a job); between, `job_connections_return` hands each job's connection
# back to the pool after the job, so the next job reuses it and a broken one is dropped. The pool
# (psycopg_pool) retires connections by age itself.
app.conf.CELERY_DB_REUSE_MAX = 10_000

# Jobs acknowledge their message when they start (the default). A job whose service is idempotent
# (it claims rows with compare-and-set) opts in to `acks_late=True, reject_on_worker_lost=True`,
# so a worker killed mid-job hands the message to another worker instead of losing it. That holds
# when a pool process dies; when the whole worker is killed (kill -9 of its group), Redis keeps the
# message unacknowledged until the broker's visibility timeout (2 h), so what such a job was doing must
# also be found by a sweep (the timer sweeps; recover-outbound-messages for sends; recover-inbound-media
# for files to fetch).

# Periodic sweeps. Every sweep is idempotent: a duplicate run, or one killed half-way, fires each
# action once, because the services it calls claim each due row with a compare-and-set.
# `expires` drops a run still queued when the next one is due, so a stalled worker does not come back
# to a backlog of identical sweeps.
BEAT_SCHEDULE = {
    "sweep-due-timers": {"task": "tasks.jobs.sweep_due_timers", "schedule": 0.5, "options": {"expires": 2.0}},
    "deliver-due-scheduled-messages": {
        "task": "conversations.jobs.deliver_due_scheduled_messages",
        "schedule": 5.0,
        "options": {"expires": 10.0},
    },
    "recover-outbound-messages": {
        "task": "conversations.jobs.recover_outbound_messages",
        "schedule": 10.0,
        "options": {"expires": 10.0},
    },
    "recover-inbound-events": {
        "task": "channels_inbound.jobs.recover_inbound_events",
        "schedule": 2.0,
        "options": {"expires": 2.0},
    },
    "recover-inbound-media": {
        "task": "channels_inbound.jobs.recover_inbound_media",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "reap-stuck-tasks": {"task": "tasks.jobs.reap_stuck_tasks", "schedule": 15.0, "options": {"expires": 15.0}},
    "record-worker-heartbeat": {
        "task": "contactcenter.jobs.record_worker_heartbeat",
        "schedule": 10.0,
        "options": {"expires": 10.0},
    },
}
app.conf.beat_schedule = BEAT_SCHEDULE


@task_postrun.connect
def job_connections_return(sender=None, **kwargs) -> None:
    """After each job, as Django does after each request: return its connection to the pool (a pooled
    connection counts as obsolete at once) or close it if broken or past CONN_MAX_AGE. Not for a job
    run eagerly (`.apply()`, tests): it runs inside its caller's connection and transaction."""
    if sender is not None and getattr(sender.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


class PeriodicJobsQuiet(logging.Filter):
    """Leaves out the INFO lines (sent, received, succeeded) of the periodic sweeps, which run several
    times a second and would bury everything else in the output of `./switchboard run`. Their
    warnings and errors still show, as does every line of every other job."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        args = record.args.values() if isinstance(record.args, dict) else record.args or ()
        return not any(isinstance(arg, str) and arg in PERIODIC_JOBS for arg in args)


PERIODIC_JOBS = {entry["task"] for entry in BEAT_SCHEDULE.values()} | set(BEAT_SCHEDULE)


@after_setup_logger.connect
def periodic_jobs_quiet(logger=None, **kwargs) -> None:
    for handler in logger.handlers:
        handler.addFilter(PeriodicJobsQuiet())

