"""python manage.py create_snapshot --project SLUG --kind trl [--style conversational] [--format jsonl] [--option k=v ...]"""
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from annotation.errors import ServiceError
from annotation.exports import FORMATS, KINDS, STYLES
from annotation.management.base import BoundaryCommand
from annotation.models import Project
from training.snapshots import snapshot_create, snapshot_path


class Command(BoundaryCommand):
    help = "Freeze a project's export into an immutable dataset snapshot that training runs can use."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--kind", default="trl", choices=KINDS)
        parser.add_argument("--style", default="standard", choices=STYLES)
        parser.add_argument("--format", default="jsonl", choices=FORMATS)
        parser.add_argument("--name", default="")
        parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                            help="An export option, e.g. aggregate=majority, min_agreement=0.7 (repeatable).")
        parser.add_argument("--user", help="Username recorded as the creator.")

    def option_error(self, exc: ServiceError) -> str:
        """An export option's error names it as given: ``--option min_agreement: ...``."""
        head = (exc.field or "").split(".")[0].split("[")[0]
        if exc.field and head not in self.option_dests():
            return f"--option {exc.field}: {exc.message}"
        return super().option_error(exc)

    def handle(self, *args, **opts):
        project = Project.objects.filter(slug=opts["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug '{opts['project']}'.")
        options = {}
        for pair in opts["option"]:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise CommandError(f"--option must be KEY=VALUE, got {pair!r}")
            options[key.strip()] = value.strip()
        user = None
        if opts["user"]:
            user = get_user_model().objects.filter(username=opts["user"]).first()
            if user is None:
                raise CommandError(f"No user '{opts['user']}'.")
        snapshot = snapshot_create(project=project, kind=opts["kind"], style=opts["style"], format=opts["format"],
                                   options=options, created_by=user, name=opts["name"])
        self.stdout.write(
            f"Snapshot {snapshot.pk}: {snapshot.row_count} rows, annotations up to id {snapshot.annotation_high_water}, "
            f"sha256 {snapshot.sha256}\n{snapshot_path(snapshot)}"
        )
