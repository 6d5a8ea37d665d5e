from django.urls import path

from . import arena_views, loop_views, snapshot_views, views

urlpatterns = [
    path("base-models/", views.BaseModelListView.as_view(), name="api-base-models"),
    path("runs/", views.RunListView.as_view(), name="api-runs"),
    path("runs/<int:run_id>/", views.RunDetailView.as_view(), name="api-run"),
    path("runs/<int:run_id>/cancel/", views.RunCancelView.as_view(), name="api-run-cancel"),
    path("runs/<int:run_id>/resume/", views.RunResumeView.as_view(), name="api-run-resume"),
    path("checkpoints/<int:checkpoint_id>/", views.CheckpointDetailView.as_view(), name="api-checkpoint"),
    path("checkpoints/<int:checkpoint_id>/download/", views.CheckpointDownloadView.as_view(), name="api-checkpoint-download"),
    path("checkpoints/<int:checkpoint_id>/merge/", views.CheckpointMergeView.as_view(), name="api-checkpoint-merge"),
    path("checkpoints/<int:checkpoint_id>/evaluate/", views.CheckpointEvaluateView.as_view(), name="api-checkpoint-evaluate"),
    path("checkpoints/<int:checkpoint_id>/human-eval/", loop_views.HumanEvalView.as_view(), name="api-human-eval"),
    path("projects/<int:project_id>/rounds/", loop_views.GenerationRoundListView.as_view(), name="api-rounds"),
    path("rounds/<int:round_id>/", loop_views.RoundDetailView.as_view(), name="api-round"),
    path("projects/<int:project_id>/judge/", loop_views.JudgeView.as_view(), name="api-judge"),
    path("projects/<int:project_id>/active-learning/", loop_views.ActiveLearningView.as_view(), name="api-active-learning"),
    path("jobs/<int:job_id>/", loop_views.JobDetailView.as_view(), name="api-job"),
    path("projects/<int:project_id>/battles/", arena_views.BattleListView.as_view(), name="api-battles"),
    path("battles/<int:battle_id>/", arena_views.BattleDetailView.as_view(), name="api-battle"),
    path("battles/<int:battle_id>/vote/", arena_views.BattleVoteView.as_view(), name="api-battle-vote"),
    path("projects/<int:project_id>/leaderboard/", arena_views.LeaderboardView.as_view(), name="api-leaderboard"),
    path("endpoints/", arena_views.EndpointListView.as_view(), name="api-endpoints"),
    path("endpoints/<str:name>/", arena_views.EndpointDetailView.as_view(), name="api-endpoint"),
    path("snapshots/", snapshot_views.SnapshotListView.as_view(), name="api-snapshots"),
    path("snapshots/<int:snapshot_id>/", snapshot_views.SnapshotDetailView.as_view(), name="api-snapshot"),
    path("snapshots/<int:snapshot_id>/download/", snapshot_views.SnapshotDownloadView.as_view(),
         name="api-snapshot-download"),
]
