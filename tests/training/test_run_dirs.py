"""A run's directory belongs to that run alone, even when its id has been used before."""
from training import services
from training.models import TrainingRun

from tests.helpers import make_snapshot


def test_a_run_whose_id_was_used_before_gets_a_directory_of_its_own(db):
    snapshot = make_snapshot()
    tiny = services.base_model_get(name="tiny")
    first = TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot)
    old_dir = services.run_output_dir(first)
    old_dir.mkdir(parents=True)
    (old_dir / "engine.log").write_text("the earlier run's log\n")
    pk = first.pk
    first.delete()  # as when the database is created again under the same data directory

    again = TrainingRun.objects.create(pk=pk, method="dpo", base_model=tiny, snapshot=snapshot)
    new_dir = services.run_output_dir(again)
    assert new_dir != old_dir
    assert not new_dir.exists()
    assert new_dir.parent == old_dir.parent and new_dir.name.startswith(f"{pk}-")
