"""The PostgreSQL seam: every raw SQL statement, COPY and SQL function of the annotation app, behind one switch.

``enabled()`` is the switch. It is decided once per process, from the database's vendor: on PostgreSQL the
callers take the statements of this package, elsewhere (SQLite, the single-machine default) the ORM code
beside each call, which is the reference implementation. Both sides behave the same, and tests run both on
PostgreSQL and compare what a user would see (``forced`` turns this package off for them).

One module per concern:
  rows       model instances from the rows of hand-written statements
  functions  the SQL functions that migrations create (ps_next_lease, ps_store_annotation)
  auth       a rater's membership of a project, an API token with its user
  queue      a rater's next lease
  submit     an item's state for a submission, and the submission stored
  quality    annotation rows for the quality report
  bulk       COPY of Python values, ids drawn from sequences
  imports    the importer's COPY writer (text format built in Python, sent by a second thread)
  exports    the export's COPY (one JSON value per item, built by PostgreSQL)
  stats      ANALYZE after bulk writes
"""
from __future__ import annotations

import importlib
from contextlib import contextmanager

from django.db import connection

MODULES = ("rows", "functions", "auth", "queue", "submit", "quality", "bulk", "imports", "exports", "stats")
_enabled: bool | None = None


def enabled() -> bool:
    """Whether annotation takes the statements of this package: on PostgreSQL, decided once."""
    global _enabled
    if _enabled is None:
        _enabled = connection.vendor == "postgresql"
    return _enabled


@contextmanager
def forced(on: bool):
    """The switch set to ``on`` inside (tests run the ORM side on PostgreSQL with ``forced(False)``)."""
    global _enabled
    if on and connection.vendor != "postgresql":
        raise RuntimeError("the SQL side needs PostgreSQL")
    previous, _enabled = _enabled, on
    try:
        yield
    finally:
        _enabled = previous


def __getattr__(name: str):
    """``pg.queue``, ``pg.submit``...: each module imported when first used."""
    if name in MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
