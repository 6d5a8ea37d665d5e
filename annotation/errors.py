"""Errors that services raise; the API and the pages turn them into clear responses (never a 500)."""
from django.db import InterfaceError, OperationalError

# The database is restarting, failing over or out of reach (or, on SQLite, locked): answered 503, try again.
DATABASE_AWAY = (OperationalError, InterfaceError)
RETRY_AFTER_S = 2


class ServiceError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self):
        return f"{self.field}: {self.message}" if self.field else self.message

    def as_dict(self) -> dict:
        data = {"detail": self.message, "code": self.code}
        if self.field:
            data["field"] = self.field
        return data


class Invalid(ServiceError):
    """Bad input, named by its field (``payload.choice``, ``time_spent_ms``): a 400.

    Its body also carries ``errors`` ({field: [message]}), the shape of a form's field errors."""

    def as_dict(self) -> dict:
        data = super().as_dict()
        if self.field:
            data["detail"] = f"{self.field}: {self.message}"
            data["errors"] = {self.field: [self.message]}
        return data


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class Forbidden(ServiceError):
    status_code = 403
    code = "forbidden"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class RowError:
    """One problem in an imported file: where it is (line, field) and what is wrong."""

    __slots__ = ("line", "field", "message")

    def __init__(self, line: int | None, field: str | None, message: str):
        self.line, self.field, self.message = line, field, message

    def as_dict(self) -> dict:
        return {"line": self.line, "field": self.field, "message": self.message}

    def __str__(self):
        where = f"line {self.line}" if self.line is not None else "file"
        if self.field:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


class ImportFailed(ServiceError):
    """The file was refused; nothing was stored."""

    code = "import_failed"

    def __init__(self, errors: list[RowError]):
        self.errors = errors
        super().__init__(f"{len(errors)} error(s); nothing was imported. First: {errors[0]}")
