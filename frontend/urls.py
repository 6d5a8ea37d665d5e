"""The site root: sign-in (Django auth views), the rater pages and the admin project pages."""
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import arena_views, views

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(
        template_name="frontend/login.html", redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", auth_views.PasswordChangeView.as_view(
        template_name="frontend/password_change.html"), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(
        template_name="frontend/password_change_done.html"), name="password_change_done"),
    path("favicon.ico", views.favicon, name="favicon"),  # browsers ask for it on pages without a link (admin)
    path("", views.home, name="home"),
    path("p/<slug:slug>/", views.annotate, name="annotate"),
    path("p/<slug:slug>/stage/", views.stage, name="annotate-stage"),
    path("p/<slug:slug>/items/<int:item_id>/submit/", views.submit, name="annotate-submit"),
    path("p/<slug:slug>/items/<int:item_id>/skip/", views.skip, name="annotate-skip"),
    path("p/<slug:slug>/items/<int:item_id>/autosave/", views.autosave, name="annotate-autosave"),
    path("p/<slug:slug>/annotations/<int:annotation_id>/edit/", views.edit, name="annotate-edit"),
    path("p/<slug:slug>/arena/", arena_views.arena_page, name="arena"),
    path("p/<slug:slug>/arena/suggest/", arena_views.arena_suggest, name="arena-suggest"),
    path("p/<slug:slug>/arena/battles/", arena_views.arena_start, name="arena-start"),
    path("p/<slug:slug>/arena/battles/<int:battle_id>/", arena_views.battle_page, name="arena-battle"),
    path("p/<slug:slug>/arena/battles/<int:battle_id>/live/", arena_views.battle_live, name="arena-battle-live"),
    path("p/<slug:slug>/arena/battles/<int:battle_id>/vote/", arena_views.battle_vote, name="arena-vote"),
    path("p/<slug:slug>/leaderboard/", arena_views.leaderboard_page, name="arena-leaderboard"),
    path("manage/", views.manage_projects, name="manage"),
    path("manage/<int:project_id>/", views.manage_project, name="manage-project"),
    path("manage/<int:project_id>/import/", views.manage_import, name="manage-import"),
    path("manage/<int:project_id>/members/", views.manage_member_add, name="manage-member-add"),
    path("manage/<int:project_id>/members/<str:username>/", views.manage_member_change, name="manage-member"),
    path("manage/<int:project_id>/settings/", views.manage_settings, name="manage-settings"),
    path("manage/", include("frontend.dashboard.urls")),
]
