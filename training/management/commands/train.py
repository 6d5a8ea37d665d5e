"""Launch a training run from the shell, and optionally follow it with a progress bar.

    python manage.py train --project demo --method dpo --base-model tiny --config '{"max_steps": 40}' --wait
    python manage.py train --snapshot 3 --method reward --base-model tiny --wait
    python manage.py train --reap          # mark runs whose worker died as failed
"""
from __future__ import annotations

import time

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from annotation import boundary
from annotation.errors import Invalid, ServiceError
from annotation.management.base import BoundaryCommand
from annotation.models import Project
from training import services
from training.models import Checkpoint, DatasetSnapshot, TrainingRun

MAX_ID = 2**63 - 1  # the largest id a row can have
FINISHED = (TrainingRun.Status.SUCCEEDED, TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED)


class Command(BoundaryCommand):
    help = "Queue a training run (reward, dpo, kto, sft, ppo, rloo, grpo) on the training queue; --wait follows it."

    def add_arguments(self, parser):
        parser.add_argument("--project", help="project slug: a snapshot of its annotations is frozen when the run starts")
        parser.add_argument("--snapshot", type=int, help="train on this dataset snapshot instead")
        parser.add_argument("--method", choices=TrainingRun.Method.values)
        parser.add_argument("--base-model", default="tiny", help="registered base model name (default: tiny)")
        parser.add_argument("--reward-checkpoint", type=int, help="checkpoint id of a reward run (ppo, rloo, grpo)")
        parser.add_argument("--config", default="{}", help="run config as JSON, or @path/to/config.json")
        parser.add_argument("--gpus", type=int, default=1, help="GPUs on this node; >1 runs under accelerate launch")
        parser.add_argument("--queue", default="training", help="Celery queue of the GPU worker pool (default: training)")
        parser.add_argument("--user", help="record the run as created by this username")
        parser.add_argument("--wait", action="store_true", help="follow the run with a progress bar until it ends")
        parser.add_argument("--reap", action="store_true", help="only mark stale running runs as failed, then exit")

    def handle(self, *args, **opts):
        if opts["reap"]:
            count = services.runs_reap_stale()
            self.stdout.write(f"{count} stale run(s) marked failed.")
            return
        if not opts["method"]:
            raise CommandError("--method is required")
        run, _ = services.run_create(
            method=opts["method"],
            base_model=self._base_model(opts["base_model"]),
            project=self._project(opts["project"]),
            snapshot=self._get(DatasetSnapshot, opts["snapshot"], "--snapshot"),
            reward_checkpoint=self._get(Checkpoint, opts["reward_checkpoint"], "--reward-checkpoint"),
            config=self._config(opts["config"]),
            gpus=opts["gpus"],
            queue=opts["queue"],
            created_by=self._user(opts["user"]),
        )
        self.stdout.write(f"Run {run.pk} queued ({run.method} on {run.base_model.name}).")
        if opts["wait"]:
            self._follow(run)

    def _project(self, slug):
        if not slug:
            return None
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"--project: no project with slug {slug!r}")
        return project

    def _base_model(self, name):
        try:
            return services.base_model_get(name=name)
        except ServiceError as exc:
            raise CommandError(f"--base-model: {exc.message}") from None

    def _get(self, model, pk, flag):
        if pk is None:
            return None
        obj = model.objects.filter(pk=pk).first() if pk <= MAX_ID else None
        if obj is None:
            raise CommandError(f"{flag}: no {model._meta.verbose_name} with id {pk}")
        return obj

    def _user(self, username):
        if not username:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"--user: no user {username!r}")
        return user

    def _config(self, text):
        """The run config: JSON text, or @path to a file of it, through the text boundary."""
        if text.startswith("@"):
            try:
                with open(text[1:], "rb") as f:
                    text = f.read()
            except OSError as exc:
                raise CommandError(f"--config: cannot read {text[1:]}: {exc.strerror}") from None
        try:
            config = boundary.loads(text)
        except boundary.JSONError as exc:
            raise CommandError(f"--config: not valid JSON: {exc}") from None
        except Invalid as exc:
            raise CommandError(f"--config: {exc.field + ': ' if exc.field else ''}{exc.message}") from None
        if not isinstance(config, dict):
            raise CommandError(f"--config: must be a JSON object, not {boundary.kind(config)}")
        return config

    def _follow(self, run: TrainingRun, poll_s: float = 1.0):
        from tqdm import tqdm

        bar = tqdm(total=run.total_steps or None, desc=f"run {run.pk} queued", unit="step", file=self.stderr._out)
        try:
            while True:
                run.refresh_from_db()
                if run.total_steps and bar.total != run.total_steps:
                    bar.total = run.total_steps
                bar.set_description(f"run {run.pk} {run.status}")
                bar.update(max(run.step - bar.n, 0))
                last = run.metrics[-1] if run.metrics else {}
                if "loss" in last:
                    bar.set_postfix(loss=f"{last['loss']:.4f}")
                if run.status in FINISHED:
                    break
                time.sleep(poll_s)
        except KeyboardInterrupt:
            bar.close()
            self.stdout.write(f"\nStopped following; run {run.pk} goes on. Cancel it with POST /api/v1/runs/{run.pk}/cancel/.")
            return
        bar.close()
        if run.status == TrainingRun.Status.SUCCEEDED:
            checkpoints = ", ".join(f"{c.pk} (step {c.step}, {c.kind})" for c in run.checkpoints.all())
            self.stdout.write(self.style.SUCCESS(f"Run {run.pk} succeeded. Checkpoints: {checkpoints or 'none'}."))
            return
        raise CommandError(f"Run {run.pk} {run.status}. {run.error}".strip())
