"""The one mapping of errors to HTTP answers: a service error (``annotation.errors``: bad input, not found,
forbidden, conflict) is answered with its status and a JSON body naming the field, never a 500; a database that
is away is a 503 to try again. The pages use the same statuses (``frontend.views.page``)."""
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotation.errors import DATABASE_AWAY, RETRY_AFTER_S, ImportFailed, ServiceError

DATABASE_AWAY_BODY = {"detail": "The database is not answering (a restart?); try again in a moment.",
                      "code": "database_unavailable"}


def error_body(exc) -> tuple[dict, int] | None:
    """The answer for an error the services raise: (body, status); None for anything else."""
    if isinstance(exc, ImportFailed):
        return {"detail": exc.message, "errors": [e.as_dict() for e in exc.errors]}, 400
    if isinstance(exc, ServiceError):
        return exc.as_dict(), exc.status_code
    if isinstance(exc, DATABASE_AWAY):
        return DATABASE_AWAY_BODY, 503
    return None


def exception_handler(exc, context):
    if (known := error_body(exc)) is not None:
        response = Response(known[0], status=known[1])
        if known[1] == 503:
            response["Retry-After"] = str(RETRY_AFTER_S)
        return response
    return drf_exception_handler(exc, context)
