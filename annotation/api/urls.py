from django.urls import path

from . import export_views, views

urlpatterns = [
    path("projects/", views.ProjectListView.as_view(), name="api-projects"),
    path("projects/<int:project_id>/", views.ProjectDetailView.as_view(), name="api-project"),
    path("projects/<int:project_id>/members/", views.MemberListView.as_view(), name="api-members"),
    path("projects/<int:project_id>/members/<str:username>/", views.MemberDetailView.as_view(), name="api-member"),
    path("projects/<int:project_id>/import/", views.ImportView.as_view(), name="api-import"),
    path("projects/<int:project_id>/next/", views.NextItemView.as_view(), name="api-next"),
    path("projects/<int:project_id>/stats/", views.StatsView.as_view(), name="api-stats"),
    path("projects/<int:project_id>/my-annotations/", views.MyAnnotationsView.as_view(), name="api-my-annotations"),
    path("projects/<int:project_id>/gold/from-imported/", views.GoldFromImportedView.as_view(), name="api-gold-imported"),
    path("items/<int:item_id>/", views.ItemDetailView.as_view(), name="api-item"),
    path("items/<int:item_id>/annotations/", views.SubmitView.as_view(), name="api-submit"),
    path("items/<int:item_id>/skip/", views.SkipView.as_view(), name="api-skip"),
    path("items/<int:item_id>/autosave/", views.AutosaveView.as_view(), name="api-autosave"),
    path("items/<int:item_id>/gold/", views.GoldView.as_view(), name="api-gold"),
    path("annotations/<int:annotation_id>/", views.AnnotationDetailView.as_view(), name="api-annotation"),
    path("projects/<int:project_id>/export/", export_views.ExportView.as_view(), name="api-export"),
    path("projects/<int:project_id>/import/peer/", export_views.PeerImportView.as_view(), name="api-import-peer"),
]
