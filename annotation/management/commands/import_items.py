"""python manage.py import_items --project SLUG FILE [--round NAME]"""
import os

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.errors import ImportFailed
from annotation.importer import import_items
from annotation.models import Project


class Command(BaseCommand):
    help = "Import prompts and responses (JSONL, CSV or Parquet) into a project. All rows or none."

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
        bar = tqdm(unit=" rows", disable=opts["no_progress"] or not self.stdout.isatty(), desc="import")
        try:
            with open(path, "rb") as stream:
                result = import_items(project=project, stream=stream, filename=path, round_name=opts["round"],
                                      progress=bar.update)
        except ImportFailed as exc:
            bar.close()
            lines = [f"{path}: {err}" for err in exc.errors]
            raise CommandError("Nothing was imported.\n" + "\n".join(lines))
        bar.close()
        r = result
        self.stdout.write(
            f"Imported {r.prompts_created} prompts, {r.responses_created} responses, {r.items_created} items, "
            f"{r.annotations_created} imported judgements; skipped {r.skipped} already present."
        )
