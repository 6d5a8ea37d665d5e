"""Small permission classes. Object access is decided in annotation.access, called by each view."""
from rest_framework.permissions import BasePermission


class IsAdmin(BasePermission):
    """Staff users administer projects, imports, exports and training."""

    message = "Only admins can do this."

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)
