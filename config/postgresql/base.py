"""Django's PostgreSQL backend, with a connection check that costs no round trip.

Django checks a kept connection before each request (``CONN_HEALTH_CHECKS``) by running ``SELECT 1`` on it:
on the rater hot path, two of those per round trip were a tenth of its web and database CPU. A server ends a
connection by saying so (an error, then the end of the stream) on an otherwise silent socket: after a restart or
an administrator's terminate, the kept connection's socket has something to read while nothing is being asked. So
a silent socket is a live connection, and only one with something waiting gets Django's full check.
"""
import select

from django.db.backends.postgresql import base
from psycopg import Error, pq


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            idle = connection.info.transaction_status == pq.TransactionStatus.IDLE
            socket = connection.pgconn.socket
        except Error:
            return False
        if idle:
            poll = select.poll()
            poll.register(socket, select.POLLIN)
            if not poll.poll(0):
                return True
        # Something waits on an idle connection (the server ending it, or a notice of its own), or a transaction
        # is open: ask the server.
        return super().is_usable()
