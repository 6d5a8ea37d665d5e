"""Apply the migrations, then serve the app, in one process: it answers as soon as the database is ready, without
a second interpreter start and import (``./dev demo``)."""
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Apply migrations, then run the development server (no autoreload)."

    def add_arguments(self, parser):
        parser.add_argument("addrport", help="e.g. 127.0.0.1:8000")

    def handle(self, *args, addrport, **options):
        call_command("migrate", interactive=False, verbosity=options["verbosity"])
        call_command("runserver", addrport, use_reloader=False, skip_checks=True)
