"""Users, roles, passwords, API tokens and signed sessions."""

from core.auth.service import (
    ADMIN,
    ANALYST,
    HANDLER,
    LEADER,
    ROLES,
    SYSTEM,
    AccountLocked,
    AuthenticationFailed,
    User,
    authenticate,
    create_token,
    create_user,
    ensure_bootstrap_admin,
    get_user,
    user_for_token,
)

__all__ = [
    "ADMIN",
    "ANALYST",
    "HANDLER",
    "LEADER",
    "ROLES",
    "SYSTEM",
    "AccountLocked",
    "AuthenticationFailed",
    "User",
    "authenticate",
    "create_token",
    "create_user",
    "ensure_bootstrap_admin",
    "get_user",
    "user_for_token",
]
