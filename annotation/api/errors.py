"""Turn service errors and Django validation errors into clear JSON (never a 500 for bad input), and a database
that is away into a 503 to try again."""
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotation.errors import DATABASE_AWAY, RETRY_AFTER_S, ImportFailed, ServiceError

DATABASE_AWAY_BODY = {"detail": "The database is not answering (a restart?); try again in a moment.",
                      "code": "database_unavailable"}


def validation_errors(exc: DjangoValidationError) -> dict:
    if hasattr(exc, "error_dict"):
        return {field: [m for e in errors for m in e.messages] for field, errors in exc.error_dict.items()}
    return {"non_field_errors": exc.messages}


def error_body(exc) -> tuple[dict, int] | None:
    """The answer for an error the services raise: (body, status); None for anything else."""
    if isinstance(exc, ImportFailed):
        return {"detail": exc.message, "errors": [e.as_dict() for e in exc.errors]}, 400
    if isinstance(exc, ServiceError):
        return exc.as_dict(), exc.status_code
    if isinstance(exc, DjangoValidationError):
        return {"detail": "Invalid input.", "errors": validation_errors(exc)}, 400
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
