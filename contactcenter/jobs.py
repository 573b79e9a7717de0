"""Celery jobs of the project package."""

from celery import shared_task

from contactcenter.health import worker_heartbeat_record


@shared_task(ignore_result=True)
def record_worker_heartbeat() -> None:
    worker_heartbeat_record()
