"""Who may touch training objects: admins only, except an arena battle, which its own rater reaches too. Anything
else is reported as not found or forbidden here."""
from __future__ import annotations

from annotation.access import is_admin
from annotation.errors import Forbidden, NotFound
from annotation.models import Membership

from .models import BaseModel, Battle, Checkpoint, DatasetSnapshot, Distillation, ProjectJob, Round, TrainingRun


def _check_admin(user) -> None:
    if not is_admin(user):
        raise Forbidden("Only admins can do this.")


def _get(model, object_id, label: str, qs=None, lock: bool = False):
    qs = qs if qs is not None else model.objects.all()
    if lock:
        qs = qs.select_for_update(of=("self",))
    try:
        return qs.get(pk=int(object_id))
    except (model.DoesNotExist, TypeError, ValueError):
        raise NotFound(f"{label} not found.")


def access_run(user, run_id, *, lock: bool = False) -> TrainingRun:
    """A training run, for an admin; ``lock`` takes its row lock."""
    _check_admin(user)
    return _get(TrainingRun, run_id, "Run", TrainingRun.objects.select_related("base_model", "snapshot"), lock)


def access_checkpoint(user, checkpoint_id, *, lock: bool = False) -> Checkpoint:
    _check_admin(user)
    return _get(Checkpoint, checkpoint_id, "Checkpoint", Checkpoint.objects.select_related("run", "run__base_model"), lock)


def access_snapshot(user, snapshot_id) -> DatasetSnapshot:
    _check_admin(user)
    return _get(DatasetSnapshot, snapshot_id, "Snapshot", DatasetSnapshot.objects.select_related("project", "created_by"))


def access_base_model(user, name: str) -> BaseModel:
    _check_admin(user)
    model = BaseModel.objects.filter(name=str(name)).first()
    if model is None:
        raise NotFound(f"Base model {name!r} not found.")
    return model


def access_round(user, round_id):
    """A generation or human evaluation round, for an admin."""
    _check_admin(user)
    return _get(Round, round_id, "Round", Round.objects.select_related("baseline_model").prefetch_related("runs", "jobs"))


def access_job(user, job_id):
    """A project job (AI judge, active-learning scoring), for an admin."""
    _check_admin(user)
    return _get(ProjectJob, job_id, "Job")


def access_battle(user, battle_id) -> Battle:
    """An arena battle, for the rater who started it (while a member of its project) and for admins. Anyone else,
    another rater of the same arena included, is told it does not exist."""
    if not (user and user.is_authenticated):
        raise NotFound("Battle not found.")
    battle = _get(Battle, battle_id, "Battle", Battle.objects.select_related("project", "item__prompt"))
    if is_admin(user):
        return battle
    if battle.rater_id != user.pk or not Membership.objects.filter(project_id=battle.project_id, user=user).exists():
        raise NotFound("Battle not found.")
    return battle


def access_distillation(user, distillation_id) -> Distillation:
    """A distillation, for an admin."""
    _check_admin(user)
    return _get(Distillation, distillation_id, "Distillation",
                Distillation.objects.select_related("student", "teacher_checkpoint", "teacher_model", "snapshot", "run"))
