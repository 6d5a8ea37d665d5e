"""python manage.py export_preferences --project SLUG --kind trl|kto|raw --format jsonl|parquet|csv|hf --out PATH"""
import time

from django.core.management.base import CommandError

from annotation.exports import (AGGREGATES, FORMATS, KINDS, STYLES, HubPushError, export_to_file, parse_format,
                                parse_options, push_to_hub)
from annotation.exports.options import GOLD, TIES
from annotation.management.base import BoundaryCommand
from annotation.models import Project


class Command(BoundaryCommand):
    help = "Export a project's annotations as a training-ready dataset (TRL preference, KTO or raw rows)."
    path_options = ("out",)

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--kind", default="trl", choices=KINDS)
        parser.add_argument("--format", default="jsonl", choices=FORMATS, help="hf: a datasets save_to_disk directory.")
        parser.add_argument("--style", default="standard", choices=STYLES)
        parser.add_argument("--out", required=True, help="File (or directory for --format hf) to write.")
        parser.add_argument("--aggregate", default="none", choices=AGGREGATES,
                            help="One row per annotation (none) or per item (majority, mean, bradley_terry).")
        parser.add_argument("--ties", default="drop", choices=TIES)
        parser.add_argument("--since", help="Annotations created on or after (ISO date or datetime).")
        parser.add_argument("--until", help="Annotations created up to (ISO date or datetime).")
        parser.add_argument("--raters", help="Comma-separated usernames.")
        parser.add_argument("--sources", help="Comma-separated: human, imported, judge.")
        parser.add_argument("--criterion", help="Use this criterion's judgement instead of the overall one.")
        parser.add_argument("--gold", default="include", choices=GOLD)
        parser.add_argument("--min-agreement", help="Keep items whose majority share is at least this (0..1).")
        parser.add_argument("--kto-threshold", help="Ratings at or above are desirable (rating projects).")
        parser.add_argument("--push-to-hub", metavar="REPO_ID", help="Then upload to the Hugging Face Hub.")
        parser.add_argument("--hub-token", help="Hub token (default: HF_TOKEN).")
        parser.add_argument("--public", action="store_true", help="Make the Hub dataset public (default private).")

    def handle(self, *args, **opts):
        project = Project.objects.filter(slug=opts["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug '{opts['project']}'.")
        keys = ("kind", "style", "aggregate", "ties", "since", "until", "raters", "sources", "criterion", "gold",
                "min_agreement", "kto_threshold")
        options = parse_options({k: opts[k] for k in keys if opts.get(k) is not None}, project=project)
        fmt = parse_format(opts["format"], options=options)
        started = time.perf_counter()
        try:
            result = export_to_file(project=project, options=options, fmt=fmt, path=opts["out"])
        except FileExistsError as exc:
            raise CommandError(str(exc))
        dropped = {k: v for k, v in result.counts.items() if k.startswith("dropped_")}
        self.stdout.write(
            f"Wrote {result.row_count} rows from {result.counts.get('annotations', 0)} annotations to {opts['out']} "
            f"({result.size_bytes} bytes, sha256 {result.sha256}) in {time.perf_counter() - started:.1f} s."
            + (f" Dropped: {dropped}." if dropped else "")
        )
        if opts["push_to_hub"]:
            try:
                url = push_to_hub(opts["out"], opts["push_to_hub"], token=opts["hub_token"], private=not opts["public"])
            except HubPushError as exc:
                raise CommandError(f"The file was written, but not pushed: {exc}")
            self.stdout.write(f"Pushed to {url}")
