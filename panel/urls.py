"""The panel's URLs (namespace ``panel``)."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.static import serve

from fedi_run.panel import views

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
    path("", views.deployments, name="deployments"),
    path("deployments/new/", views.create, name="create"),
    path("deployments/<int:pk>/", views.deployment, name="deployment"),
    path("deployments/<int:pk>/edit/", views.edit, name="edit"),
    path("deployments/<int:pk>/deploy/", views.deploy, name="deploy"),
    path("deployments/<int:pk>/teardown/", views.teardown, name="teardown"),
    path("deployments/<int:pk>/runs/", views.history, name="history"),
    path("deployments/<int:pk>/runs/<int:run_pk>/", views.run, name="run"),
    path("deployments/<int:pk>/runs/<int:run_pk>/progress", views.progress, name="progress"),
    path("deployments/<int:pk>/runs/<int:run_pk>/stop/", views.stop, name="stop"),
    re_path(r"^static/(?P<path>.+)$", serve, {"document_root": STATIC}, name="static"),
]

urlpatterns = [path("", include((_PAGES, "panel"), namespace="panel"))]
