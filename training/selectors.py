"""Reads for training: run lists, checkpoint files."""
from __future__ import annotations

import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

from annotation.errors import Invalid

from .models import BaseModel, Checkpoint, TrainingRun
from .services import data_path


def runs_list(*, status: str | None = None, method: str | None = None, project_id=None):
    qs = TrainingRun.objects.select_related("base_model", "created_by").order_by("-created_at", "-id")
    if status:
        if status not in TrainingRun.Status.values:
            raise Invalid(f"must be one of {', '.join(TrainingRun.Status.values)}", field="status")
        qs = qs.filter(status=status)
    if method:
        if method not in TrainingRun.Method.values:
            raise Invalid(f"must be one of {', '.join(TrainingRun.Method.values)}", field="method")
        qs = qs.filter(method=method)
    if project_id:
        try:
            qs = qs.filter(project_id=int(project_id))
        except (TypeError, ValueError):
            raise Invalid("must be a project id", field="project")
    return qs


def run_detail(run: TrainingRun) -> TrainingRun:
    return TrainingRun.objects.select_related("base_model", "created_by").prefetch_related("checkpoints").get(pk=run.pk)


def base_models_list():
    return BaseModel.objects.order_by("name")


def checkpoint_archive(directory: Path, arcname: str, chunk_size: int = 1 << 20, *,
                       include_training_state: bool = False, include_tensorboard: bool = False) -> Iterator[bytes]:
    """A .tar.gz of ``directory`` as a stream of chunks: a thread writes the archive into a pipe and the
    response reads it, so memory stays at one chunk however large the model is. What inference needs, plus, when
    asked for, the training state (optimizer, scheduler, RNG, trainer state) and the run's TensorBoard event files
    (``tensorboard/`` beside the checkpoint, archived as ``<arcname>/tensorboard/``)."""
    from .engine.checkpoints import is_training_state
    from .engine.tracking import TENSORBOARD_DIR

    trees = [(Path(directory), arcname)]
    if include_tensorboard and (Path(directory).parent / TENSORBOARD_DIR).is_dir():
        trees.append((Path(directory).parent / TENSORBOARD_DIR, f"{arcname}/{TENSORBOARD_DIR}"))

    read_fd, write_fd = os.pipe()

    def write_archive():
        try:
            with os.fdopen(write_fd, "wb") as out, tarfile.open(fileobj=out, mode="w|gz") as tar:
                for top, name_in_archive in trees:
                    for root, dirs, files in os.walk(top):
                        dirs.sort()
                        for name in sorted(files):
                            path = Path(root) / name
                            if not include_training_state and is_training_state(path.relative_to(top)):
                                continue
                            tar.add(str(path), arcname=f"{name_in_archive}/{path.relative_to(top)}",
                                    recursive=False)
        except BrokenPipeError:
            pass  # the client went away

    writer = threading.Thread(target=write_archive, daemon=True)
    writer.start()
    with os.fdopen(read_fd, "rb") as source:
        while chunk := source.read(chunk_size):
            yield chunk
    writer.join()


def checkpoint_files_dir(checkpoint: Checkpoint) -> Path:
    return data_path(checkpoint.path)
