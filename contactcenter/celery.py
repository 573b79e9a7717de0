"""The one Celery app. Jobs live in each app's jobs.py and only call services."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contactcenter.settings")

app = Celery("contactcenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(related_name="jobs")

# Jobs acknowledge their message when they start (the default). A job whose service is idempotent
# (it claims rows with compare-and-set) opts in to `acks_late=True, reject_on_worker_lost=True`,
# so a worker killed mid-job hands the message to another worker instead of losing it.

# Periodic sweeps. Every sweep is idempotent: a duplicate run, or one killed half-way, fires each
# action once, because the services it calls claim each due row with a compare-and-set.
# `expires` drops a run still queued when the next one is due, so a stalled worker does not come back
# to a backlog of identical sweeps.
app.conf.beat_schedule = {
    "sweep-due-timers": {"task": "tasks.jobs.sweep_due_timers", "schedule": 1.0, "options": {"expires": 2.0}},
    "deliver-due-scheduled-messages": {
        "task": "conversations.jobs.deliver_due_scheduled_messages",
        "schedule": 5.0,
        "options": {"expires": 10.0},
    },
    "reap-stuck-tasks": {"task": "tasks.jobs.reap_stuck_tasks", "schedule": 15.0, "options": {"expires": 15.0}},
    "record-worker-heartbeat": {
        "task": "contactcenter.jobs.record_worker_heartbeat",
        "schedule": 10.0,
        "options": {"expires": 10.0},
    },
}
