from oauth2_provider.contrib.rest_framework import TokenHasReadWriteScope
from rest_framework.permissions import BasePermission


class ReadWriteScope(BasePermission):
    """Tokens need the ``read`` scope to read and ``write`` to change anything; a signed-in
    admin user (session) may do both."""

    message = "This token lacks the scope for this request: reading needs 'read', changes 'write'."

    def has_permission(self, request, view):
        if request.user is None or not request.user.is_authenticated:
            return False
        if request.auth is None:  # an admin session
            return True
        return TokenHasReadWriteScope().has_permission(request, view)
