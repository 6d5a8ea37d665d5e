"""The text boundary for the commands: every option and argument a command line gives passes
``annotation.boundary`` before ``handle`` runs, and a service error becomes a CommandError that names the option
(``--queue: must be ...``, ``--config: lr_scheduler: ...``), so a command answers bad input in one line and never
with a traceback.

A shell hands Python the bytes of an argument that are not UTF-8 as lone surrogates; those cannot be stored or
looked up, and are refused like a NUL. Options that name files (``path_options``) may hold them: a file name is
the file system's bytes, and Python opens it as given.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotation import boundary
from annotation.errors import Invalid, ServiceError


class BoundaryCommand(BaseCommand):
    path_options: tuple[str, ...] = ()  # dests of options that name files

    def execute(self, *args, **options):
        for dest, value in options.items():
            self._check(dest, value)
        for value in args:
            self._check("args", value)
        run = super().execute  # Django's: checks, then handle()
        try:
            return run(*args, **options)
        except ServiceError as exc:
            raise CommandError(self.option_error(exc)) from None

    def _check(self, dest: str, value) -> None:
        values = value if isinstance(value, (list, tuple)) else [value]
        for text in values:
            if not isinstance(text, str):
                continue
            try:
                if dest in self.path_options:
                    boundary.check_text(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), None)
                else:
                    boundary.check_text(text, None)
            except Invalid as exc:
                raise CommandError(f"{self.option_name(dest)}: {exc.message}") from None
            except UnicodeEncodeError:  # a surrogate that is not an undecodable byte
                raise CommandError(f"{self.option_name(dest)}: holds a lone surrogate, which is not text") from None

    @staticmethod
    def option_name(dest: str) -> str:
        return dest if dest in ("args", "file") else f"--{dest.replace('_', '-')}"

    def option_error(self, exc: ServiceError) -> str:
        """A service error as this command line names it: ``--queue: message``, ``--config: lr_scheduler:
        message`` (a field inside an option), or the field as the service named it."""
        if not exc.field:
            return exc.message
        head, sep, rest = exc.field.replace("[", ".[").partition(".")
        rest = rest.replace(".[", "[")
        if head in self.option_dests():
            return f"{self.option_name(head)}: {rest + ': ' if sep and rest else ''}{exc.message}"
        return f"{exc.field}: {exc.message}"

    def option_dests(self) -> set[str]:
        parser = self.create_parser("manage.py", self.__module__.rsplit(".", 1)[-1])
        return {action.dest for action in parser._actions}
