"""Users, roles, login with lockout, API tokens, and the bootstrap admin (keyword-only, session passed in)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.auth.passwords import dummy_verify, hash_password, needs_rehash, verify_password
from core.auth.tokens import hash_token, new_token
from core.db.models import ApiTokenRow, UnitRow, UserRow
from core.errors import NotFound, YuqingError
from core.records import utcnow

log = logging.getLogger(__name__)

ADMIN, ANALYST, HANDLER, LEADER = "admin", "analyst", "handler", "leader"
ROLES = (ADMIN, ANALYST, HANDLER, LEADER)
ROLE_ZH = {ADMIN: "系统管理员", ANALYST: "舆情分析员（宣传部门）", HANDLER: "责任单位经办人", LEADER: "领导"}
# Roles that see every unit's tickets; handlers see only their own unit's.
READ_ALL_ROLES = (ADMIN, ANALYST, LEADER)


class AuthenticationFailed(YuqingError):
    """Wrong user name or password (deliberately not saying which)."""


class AccountLocked(AuthenticationFailed):
    """Too many failed logins from one place: refused for a while (see ``core.auth.throttle``)."""

    def __init__(self, message: str, until: datetime) -> None:
        super().__init__(message)
        self.until = until


@dataclass(frozen=True)
class User:
    """Who is acting: what the ticket services check permissions against."""

    id: int
    username: str
    role: str
    unit_id: str | None = None
    display_name: str = ""

    @property
    def reads_all(self) -> bool:
        """Whether this user may see every unit's tickets."""
        return self.role in READ_ALL_ROLES

    @classmethod
    def from_row(cls, row: UserRow) -> User:
        """The acting-user view of a users row."""
        return cls(id=row.id, username=row.username, role=row.role, unit_id=row.unit_id,
                   display_name=row.display_name or row.username)


# The actor of automatic changes (rule matches, the scheduler).
SYSTEM = User(id=0, username="system", role=ADMIN, display_name="系统")


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: str,
    unit_id: str | None = None,
    display_name: str = "",
    mobile: str | None = None,
    now: datetime | None = None,
) -> User:
    """Add a user; handlers must belong to an existing unit."""
    username = username.strip()
    if not username or len(username) > 64:
        raise ValueError("用户名不能为空且不超过 64 字符 / username must be 1-64 characters")
    if role not in ROLES:
        raise ValueError(f"未知角色 {role!r} / unknown role {role!r}, use one of {ROLES}")
    if role == HANDLER and not unit_id:
        raise ValueError("责任单位经办人必须属于一个单位 / a handler needs unit_id")
    if unit_id is not None and session.get(UnitRow, unit_id) is None:
        raise NotFound(f"单位不存在 / unit {unit_id!r} does not exist")
    if session.scalar(select(UserRow.id).where(UserRow.username == username)) is not None:
        raise ValueError(f"用户名已存在 / username {username!r} is taken")
    row = UserRow(
        username=username,
        display_name=display_name or username,
        password_hash=hash_password(password),
        role=role,
        unit_id=unit_id,
        mobile=mobile,
        created_at=now or utcnow(),
    )
    session.add(row)
    session.flush()
    log.info("created user %s (role %s, unit %s)", username, role, unit_id)
    return User.from_row(row)


def authenticate(
    session: Session,
    *,
    username: str,
    password: str,
    now: datetime | None = None,
) -> User:
    """The user for a correct name and password; AuthenticationFailed (one message for every cause) otherwise.

    No account lock here: anyone could lock anyone out with wrong passwords, and a lock that only known
    accounts get tells a stranger which names exist. Guessing is slowed by ``core.auth.throttle`` instead,
    per address and per (address, account), the same for existing and unknown names.
    """
    now = now or utcnow()
    row = session.scalar(select(UserRow).where(UserRow.username == username.strip()))
    if row is None or not row.active:
        dummy_verify(password)  # no user enumeration by timing
        raise AuthenticationFailed("用户名或密码错误 / wrong username or password")
    if not verify_password(row.password_hash, password):
        row.failed_logins = (row.failed_logins or 0) + 1  # shown to admins (``yuqing users list``), locks nothing
        raise AuthenticationFailed("用户名或密码错误 / wrong username or password")
    row.failed_logins = 0
    row.locked_until = None
    if needs_rehash(row.password_hash):
        row.password_hash = hash_password(password)
    return User.from_row(row)


def get_user(session: Session, *, user_id: int) -> User | None:
    """An active user by id, or None."""
    row = session.get(UserRow, user_id)
    return User.from_row(row) if row is not None and row.active else None


def session_version(session: Session, *, user_id: int) -> int | None:
    """The session generation of an active user (cookies carry it), or None when missing or disabled."""
    row = session.get(UserRow, user_id)
    return (row.session_version or 0) if row is not None and row.active else None


def user_for_session(session: Session, *, user_id: int, version: Any) -> User | None:
    """The active user of a cookie session whose generation is still current, or None (ended session)."""
    row = session.get(UserRow, user_id)
    if row is None or not row.active or not isinstance(version, int) or version != (row.session_version or 0):
        return None
    return User.from_row(row)


def end_sessions(session: Session, *, user_id: int) -> None:
    """End every cookie session of the user (logout, password change, disable, revoke)."""
    row = session.get(UserRow, user_id)
    if row is None:
        raise NotFound(f"用户不存在 / user {user_id} does not exist")
    row.session_version = (row.session_version or 0) + 1


def set_password(session: Session, *, user_id: int, password: str) -> None:
    """Replace a user's password; every session of the user ends."""
    row = session.get(UserRow, user_id)
    if row is None:
        raise NotFound(f"用户不存在 / user {user_id} does not exist")
    row.password_hash = hash_password(password)
    row.failed_logins = 0
    row.locked_until = None
    end_sessions(session, user_id=user_id)


def revoke_all(session: Session, *, user_id: int) -> int:
    """End the user's sessions and delete every API token of theirs; returns how many tokens went."""
    end_sessions(session, user_id=user_id)
    tokens = list_tokens(session, user_id=user_id)
    for row in tokens:
        session.delete(row)
    session.flush()
    log.info("revoked all sessions and %d API token(s) of user %s", len(tokens), user_id)
    return len(tokens)


def set_active(session: Session, *, user_id: int, active: bool) -> None:
    """Disable (sessions end, tokens stop working while disabled) or re-enable an account."""
    row = session.get(UserRow, user_id)
    if row is None:
        raise NotFound(f"用户不存在 / user {user_id} does not exist")
    row.active = active
    end_sessions(session, user_id=user_id)
    log.info("user %s %s", row.username, "enabled" if active else "disabled")


def create_token(session: Session, *, user_id: int, name: str, now: datetime | None = None) -> str:
    """A new API token for the user; returned once, only its hash is stored."""
    if session.get(UserRow, user_id) is None:
        raise NotFound(f"用户不存在 / user {user_id} does not exist")
    plain, digest = new_token()
    session.add(ApiTokenRow(token_hash=digest, user_id=user_id, name=name[:64] or "token",
                            created_at=now or utcnow()))
    session.flush()
    return plain


def user_for_token(session: Session, *, token: str) -> User | None:
    """The active user owning ``token``, or None."""
    if not token or len(token) > 200:
        return None
    row = session.get(ApiTokenRow, hash_token(token))
    if row is None:
        return None
    return get_user(session, user_id=row.user_id)


def list_tokens(session: Session, *, user_id: int) -> list[ApiTokenRow]:
    """The user's tokens (hashes and names only)."""
    return list(session.scalars(select(ApiTokenRow).where(ApiTokenRow.user_id == user_id)
                                .order_by(ApiTokenRow.created_at)))


def revoke_token(session: Session, *, user_id: int, token_hash_prefix: str) -> bool:
    """Delete the user's token whose hash starts with the prefix (at least 8 hex digits); False if none."""
    if len(token_hash_prefix) < 8:
        raise ValueError("token id must have at least 8 characters")
    for row in list_tokens(session, user_id=user_id):
        if row.token_hash.startswith(token_hash_prefix):
            session.delete(row)
            return True
    return False


def ensure_bootstrap_admin(
    session: Session, *, password: str, now: datetime | None = None, username: str = "admin"
) -> bool:
    """Create an admin with ``password`` when no user exists yet; True if one was created."""
    if (session.scalar(select(func.count()).select_from(UserRow)) or 0) > 0:
        return False
    create_user(session, username=username, password=password, role=ADMIN, display_name="管理员", now=now)
    log.info("bootstrap admin %r created", username)
    return True
