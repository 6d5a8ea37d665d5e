"""python manage.py import_items --project SLUG FILE [--round NAME]"""
import os

from django.conf import settings
from django.core.management.base import CommandError
from django.db import DatabaseError
from tqdm import tqdm

from annotation.errors import ImportFailed, ServiceError
from annotation.importer import import_items
from annotation.management.base import BoundaryCommand
from annotation.models import Project


class Command(BoundaryCommand):
    help = "Import prompts and responses (JSONL, CSV or Parquet) into a project. All rows or none."
    path_options = ("file",)

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--round", default="", help="A name for this batch (kept on prompts and items).")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument("file")

    def handle(self, *args, **opts):
        project = Project.objects.filter(slug=opts["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug '{opts['project']}'.")
        path = opts["file"]
        if not os.path.isfile(path):
            raise CommandError(f"No such file: {path}")
        if os.path.getsize(path) > settings.PS_IMPORT_MAX_BYTES:
            raise CommandError(f"{path} is {os.path.getsize(path)} bytes; an import takes at most "
                               f"{settings.PS_IMPORT_MAX_BYTES} (PS_IMPORT_MAX_BYTES). Nothing was imported.")
        bar = tqdm(unit=" rows", disable=opts["no_progress"] or not self.stdout.isatty(), desc="import")
        try:
            with open(path, "rb") as stream:
                result = import_items(project=project, stream=stream, filename=path, round_name=opts["round"],
                                      progress=bar.update)
        except ImportFailed as exc:
            bar.close()
            lines = [f"{path}: {err}" for err in exc.errors]
            raise CommandError("Nothing was imported.\n" + "\n".join(lines)) from None
        except ServiceError as exc:
            bar.close()
            raise CommandError(f"{path}: {exc.as_dict()['detail']}. Nothing was imported.") from None
        except (OSError, DatabaseError) as exc:  # the file went away, or the database refused (nothing stored)
            bar.close()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(f"{path}: {first}. Nothing was imported.") from None
        bar.close()
        r = result
        self.stdout.write(
            f"Imported {r.prompts_created} prompts, {r.responses_created} responses, {r.items_created} items, "
            f"{r.annotations_created} imported judgements; skipped {r.skipped} already present."
        )
