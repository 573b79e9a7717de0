"""One waiting job per key: the coalescing that routing requests and inbound-event processing share.

A caller enqueues a job only while no job for the same key waits unstarted (a mark in the cache,
set when it is enqueued); the job clears the mark as it starts, before it reads, so whatever
commits after that point enqueues a job of its own and nothing is left unseen. The mark expires by
itself, so a job lost with a killed worker blocks others for `seconds` at most.
"""

import contextlib
import logging

from django.core.cache import cache

logger = logging.getLogger(__name__)


def enqueue_unless_waiting(job, *args, mark: str, seconds: int) -> bool:
    """`job.delay(*args)` unless a job marked `mark` waits; returns whether it enqueued. Never
    raises: without Redis for the mark it enqueues anyway (which may fail too); a failed enqueue is
    logged and its mark removed, and the caller's sweep or nudge makes up the job."""
    try:
        if not cache.add(mark, 1, timeout=seconds):
            return False
    except Exception:
        logger.warning("could not set the mark %s; enqueuing anyway", mark, exc_info=True)
    try:
        job.delay(*args)
    except Exception:
        logger.exception("could not enqueue %s%r", getattr(job, "name", job), args)
        with contextlib.suppress(Exception):
            cache.delete(mark)
        return False
    return True


def waiting_mark_clear(mark: str) -> None:
    """The job for `mark` has started: the next caller enqueues again. The mark expires anyway."""
    try:
        cache.delete(mark)
    except Exception:
        logger.warning("could not clear the mark %s", mark, exc_info=True)
