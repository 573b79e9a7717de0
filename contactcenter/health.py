"""Readiness checks: can this process reach PostgreSQL and Redis right now?"""

import time

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection

HEARTBEAT_KEY = "worker-heartbeat"


# While PostgreSQL is down, a checkout from the pool waits for its full timeout (10 s) for a connection
# that never comes; a load balancer or orchestrator probing /readyz should hear "not ready" sooner.
POSTGRES_CHECK_TIMEOUT_SECONDS = 1.5


def check_postgres(database=connection) -> str | None:
    """None when PostgreSQL answers, else what went wrong, within POSTGRES_CHECK_TIMEOUT_SECONDS when
    the connection pool is on. `database` is a Django connection (the default one)."""
    try:
        if database.pool is not None:
            database.pool.open()  # as Django does before its first checkout; a no-op once open
            with database.pool.connection(timeout=POSTGRES_CHECK_TIMEOUT_SECONDS) as raw:
                raw.execute("SELECT 1").fetchone()
        else:
            with database.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"; the message says which
        return f"{type(error).__name__}: {error}".strip()
    return None


def check_redis() -> str | None:
    """None when Redis answers PING within a second, else what went wrong."""
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except Exception as error:  # noqa: BLE001 - as above
        return f"{type(error).__name__}: {error}".strip()
    finally:
        client.close()
    return None


def worker_heartbeat_record() -> None:
    """Called by the worker every few seconds, so readiness can say how long ago one was alive."""
    cache.set(HEARTBEAT_KEY, time.time(), timeout=3600)


def worker_heartbeat_age_seconds() -> float | None:
    try:
        last = cache.get(HEARTBEAT_KEY)
    except Exception:  # noqa: BLE001 - no answer from the cache: age unknown
        return None
    return None if last is None else round(time.time() - last, 1)
