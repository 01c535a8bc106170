"""Who may see and act on what: an operator their own deployments, staff every one; staff
alone define environments. A deployment out of reach is a 404 (its existence is not told)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from fedi_run.panel.models import Deployment


def deployments_of(user):
    """The deployments ``user`` sees: their own, or every one for staff."""
    if user.is_staff:
        return Deployment.objects.all()
    return Deployment.objects.filter(owner=user)


def own_deployment(request: HttpRequest, pk: int) -> Deployment:
    """Deployment ``pk`` if the logged-in user may see it, else 404."""
    return get_object_or_404(deployments_of(request.user), pk=pk)


def require_staff(request: HttpRequest) -> None:
    """403 unless the logged-in user is staff."""
    if not request.user.is_staff:
        raise PermissionDenied("only staff define environments")
