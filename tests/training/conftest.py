"""Training tests. The ``worker`` fixture (tests/conftest.py) starts a real Celery worker over Redis and the test
database; tests that use it need ``transactional_db``: the worker is another process and sees only committed rows."""
