"""gunicorn settings for the web process: ``gunicorn -c config/gunicorn.conf.py config.wsgi``.

Environment: ``BIND`` (default 0.0.0.0:8000), ``WEB_CONCURRENCY`` (worker processes, default one per
core), ``WEB_THREADS`` (threads per worker, default 8), ``WEB_KEEPALIVE`` (seconds, default 75: longer than
a rater's think time, so their browser or proxy keeps its connection).
"""
import gc
import multiprocessing
import os
import sys

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", 8))
keepalive = int(os.environ.get("WEB_KEEPALIVE", 75))


def post_worker_init(worker):
    """Load the URLs and views now, then take everything loaded out of the garbage collector's sight: a
    full collection walked these ~100k long-lived objects again and again (tens of ms each time, paid by
    whichever request triggered it). A shorter GIL switch interval lets a thread whose database answer
    has arrived run sooner."""
    from django.urls import get_resolver  # noqa: PLC0415 - Django is set up by now

    get_resolver().url_patterns  # noqa: B018 - imports every view
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(0.001)
