"""Switchboard's project package: settings, URLs, ASGI, Celery, tenancy and realtime."""

from contactcenter.celery import app as celery_app

__all__ = ["celery_app"]
