"""The admin dashboard under /manage/: overview, quality, training."""
from django.urls import path

from . import views

urlpatterns = [
    path("dashboard/", views.overview, name="dash-overview"),
    path("<int:project_id>/quality/", views.quality, name="dash-quality"),
    path("<int:project_id>/quality/judge/", views.quality_judge, name="dash-quality-judge"),
    path("<int:project_id>/quality/active-learning/", views.quality_active_learning,
         name="dash-quality-active-learning"),
    path("training/", views.runs, name="dash-runs"),
    path("training/runs/<int:run_id>/", views.run_page, name="dash-run"),
    path("training/runs/<int:run_id>/live/", views.run_live, name="dash-run-live"),
    path("training/runs/<int:run_id>/checkpoints/", views.run_checkpoints, name="dash-run-checkpoints"),
    path("training/runs/<int:run_id>/log/", views.run_full_log, name="dash-run-full-log"),
    path("training/runs/<int:run_id>/cancel/", views.run_cancel, name="dash-run-cancel"),
    path("training/runs/<int:run_id>/resume/", views.run_resume, name="dash-run-resume"),
    path("training/checkpoints/<int:checkpoint_id>/merge/", views.checkpoint_merge, name="dash-checkpoint-merge"),
    path("training/checkpoints/<int:checkpoint_id>/evaluate/", views.checkpoint_evaluate,
         name="dash-checkpoint-evaluate"),
]
urlpatterns += [
    path("<int:project_id>/rounds/", views.project_rounds, name="dash-rounds"),
    path("<int:project_id>/rounds/live/", views.project_rounds_live, name="dash-rounds-live"),
    path("training/checkpoints/<int:checkpoint_id>/generate/", views.checkpoint_generate,
         name="dash-checkpoint-generate"),
    path("training/checkpoints/<int:checkpoint_id>/human-eval/", views.checkpoint_human_eval,
         name="dash-checkpoint-human-eval"),
    path("<int:project_id>/rounds/critique/", views.project_critique, name="dash-critique"),
    path("training/rounds/<int:round_id>/chains/", views.round_chains, name="dash-round-chains"),
    path("training/distil/", views.distil, name="dash-distil"),
    path("training/distil/live/", views.distil_live, name="dash-distil-live"),
]
