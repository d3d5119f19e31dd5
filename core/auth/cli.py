"""``yuqing users ...``: create users, reset passwords, issue API tokens, list users."""

from __future__ import annotations

from typing import Annotated

import typer

from core.db.session import Database

app = typer.Typer(help="Users, roles and API tokens.", no_args_is_help=True)


def _db() -> Database:
    from core.settings import Settings
    from core.wiring import Container

    return Container(Settings()).db


@app.command("create")
def create(
    username: str,
    role: Annotated[str, typer.Option(help="admin | analyst | handler | leader")],
    unit: Annotated[str | None, typer.Option(help="unit id (required for handler)")] = None,
    display_name: Annotated[str, typer.Option(help="name shown in the dashboard")] = "",
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)] = "",
) -> None:
    """Create a user (the password is prompted for, never echoed)."""
    from core.auth.service import create_user
    from core.errors import NotFound

    try:
        with _db().transaction() as session:
            user = create_user(session, username=username, password=password, role=role, unit_id=unit,
                               display_name=display_name)
    except (ValueError, NotFound) as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"created user {user.username} (id {user.id}, role {user.role}, unit {user.unit_id or '-'})")


@app.command("set-password")
def set_password(
    username: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)] = "",
) -> None:
    """Replace a user's password; every session of the user ends."""
    from sqlalchemy import select

    from core.auth.service import set_password as set_pw
    from core.db.models import UserRow

    with _db().transaction() as session:
        uid = session.scalar(select(UserRow.id).where(UserRow.username == username))
        if uid is None:
            raise typer.BadParameter(f"no user {username!r}")
        try:
            set_pw(session, user_id=uid, password=password)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"password of {username} changed")


@app.command("token")
def token(username: str, name: Annotated[str, typer.Option(help="what the token is for")] = "cli") -> None:
    """Issue an API token for a user; it is printed once and only its hash is stored."""
    from sqlalchemy import select

    from core.auth.service import create_token
    from core.db.models import UserRow

    with _db().transaction() as session:
        uid = session.scalar(select(UserRow.id).where(UserRow.username == username))
        if uid is None:
            raise typer.BadParameter(f"no user {username!r}")
        plain = create_token(session, user_id=uid, name=name)
    typer.echo(plain)


@app.command("list")
def list_users() -> None:
    """List users with role, unit and whether they are locked."""
    from sqlalchemy import select

    from core.db.models import UserRow
    from core.records import utcnow

    now = utcnow()
    with _db().transaction() as session:
        for u in session.scalars(select(UserRow).order_by(UserRow.id)):
            locked = "locked" if u.locked_until and u.locked_until > now else ""
            typer.echo(f"{u.id}\t{u.username}\t{u.role}\t{u.unit_id or '-'}\t{'active' if u.active else 'disabled'}"
                       f"\t{locked}".rstrip())


def _user_id(session: object, username: str) -> int:
    from sqlalchemy import select

    from core.db.models import UserRow

    uid = session.scalar(select(UserRow.id).where(UserRow.username == username))  # type: ignore[attr-defined]
    if uid is None:
        raise typer.BadParameter(f"no user {username!r}")
    return int(uid)


@app.command("disable")
def disable(username: str) -> None:
    """Disable an account: its sessions end at once and its API tokens stop working."""
    from core.auth.service import set_active

    with _db().transaction() as session:
        set_active(session, user_id=_user_id(session, username), active=False)
    typer.echo(f"user {username} disabled; its sessions ended")


@app.command("enable")
def enable(username: str) -> None:
    """Enable a disabled account again (old sessions stay ended)."""
    from core.auth.service import set_active

    with _db().transaction() as session:
        set_active(session, user_id=_user_id(session, username), active=True)
    typer.echo(f"user {username} enabled")


@app.command("revoke")
def revoke(username: str) -> None:
    """End every session of a user and delete all of their API tokens (a leaked cookie or token)."""
    from core.auth.service import revoke_all

    with _db().transaction() as session:
        count = revoke_all(session, user_id=_user_id(session, username))
    typer.echo(f"sessions of {username} ended, {count} API token(s) revoked")
