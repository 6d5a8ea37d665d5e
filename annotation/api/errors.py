"""Turn service errors and Django validation errors into clear JSON (never a 500 for bad input)."""
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotation.errors import ImportFailed, ServiceError


def validation_errors(exc: DjangoValidationError) -> dict:
    if hasattr(exc, "error_dict"):
        return {field: [m for e in errors for m in e.messages] for field, errors in exc.error_dict.items()}
    return {"non_field_errors": exc.messages}


def exception_handler(exc, context):
    if isinstance(exc, ImportFailed):
        return Response({"detail": exc.message, "errors": [e.as_dict() for e in exc.errors]}, status=400)
    if isinstance(exc, ServiceError):
        return Response(exc.as_dict(), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        return Response({"detail": "Invalid input.", "errors": validation_errors(exc)}, status=400)
    return drf_exception_handler(exc, context)
