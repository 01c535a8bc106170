"""The panel's URLs (namespace ``panel``)."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.static import serve

from fedi_run.panel import deployment_views, environment_views, run_views, views

STATIC = Path(__file__).resolve().parent / "static"

_PAGES = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="panel/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", deployment_views.deployments, name="deployments"),
    path("deployments/new/", deployment_views.create, name="create"),
    path("deployments/<int:pk>/", deployment_views.deployment, name="deployment"),
    path("deployments/<int:pk>/edit/", deployment_views.edit, name="edit"),
    path("deployments/<int:pk>/deploy/", deployment_views.deploy, name="deploy"),
    path(
        "deployments/<int:pk>/deploy/confirm/",
        deployment_views.confirm_deploy,
        name="confirm_deploy",
    ),
    path("deployments/<int:pk>/health/", deployment_views.health, name="health"),
    path("deployments/<int:pk>/teardown/", deployment_views.teardown, name="teardown"),
    path("deployments/<int:pk>/delete/", deployment_views.delete, name="delete"),
    path("environments/", environment_views.environments, name="environments"),
    path("environments/new/", environment_views.environment_create, name="environment_create"),
    path("environments/<int:pk>/", environment_views.environment_edit, name="environment_edit"),
    path("deployments/<int:pk>/runs/", views.history, name="history"),
    path("deployments/<int:pk>/runs/<int:run_pk>/", views.run, name="run"),
    path("deployments/<int:pk>/runs/<int:run_pk>/progress", views.progress, name="progress"),
    path("deployments/<int:pk>/runs/<int:run_pk>/stop/", views.stop, name="stop"),
    path("deployments/<int:pk>/runs/<int:run_pk>/resume/", run_views.resume, name="resume"),
    path("deployments/<int:pk>/runs/<int:run_pk>/tasks/<str:task>/", run_views.task, name="task"),
    path(
        "deployments/<int:pk>/runs/<int:run_pk>/tasks/<str:task>/output",
        run_views.task_output_json,
        name="task_output",
    ),
    path(
        "deployments/<int:pk>/runs/<int:run_pk>/tasks/<str:task>/rerun/",
        run_views.rerun,
        name="rerun",
    ),
    re_path(r"^static/(?P<path>.+)$", serve, {"document_root": STATIC}, name="static"),
]

urlpatterns = [path("", include((_PAGES, "panel"), namespace="panel"))]
