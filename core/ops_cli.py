"""Operator commands mounted as ``yuqing backup``, ``yuqing restore`` and ``yuqing retention``.

Each function is a plain typer command (``app.command("backup")(ops_cli.backup)``); the work is done
by ``core.lifecycle``. Backups and restores cover the embedded SQLite files; in scale mode they say so
and point at the pg_dump / Elasticsearch snapshot procedure in ``core/lifecycle.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from core.logging import setup_logging
from core.records import utcnow
from core.settings import Settings

SCALE_HINT = ("scale mode keeps these in PostgreSQL/Elasticsearch: use pg_dump and an Elasticsearch snapshot "
              "(procedure in core/lifecycle.py)")


def _settings() -> Settings:
    settings = Settings()
    setup_logging(settings.log_level, json_lines=settings.log_json)
    return settings


def sqlite_files(settings: Settings) -> dict[str, Path]:
    """The embedded database files of this deployment, by backup name (only those that are SQLite)."""
    files: dict[str, Path] = {}
    if settings.post_store_kind == "sqlite":
        files["posts.sqlite"] = settings.posts_sqlite_path
    url = settings.resolved_database_url
    if url.startswith("sqlite:///"):
        files["yuqing.sqlite"] = Path(url.removeprefix("sqlite:///"))
    return files


def backup(
    dest: Annotated[Path, typer.Argument(help="folder that receives a new yuqing-backup-<time> folder")] = Path(
        "./backups"),
) -> None:
    """Back up the embedded databases (consistent while the service runs) with a manifest."""
    from core.lifecycle import backup as do_backup

    settings = _settings()
    files = sqlite_files(settings)
    if not files:
        typer.echo(f"nothing to back up here: {SCALE_HINT}", err=True)
        raise typer.Exit(2)
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        typer.echo(f"no database yet at {', '.join(missing)}: start the service once first", err=True)
        raise typer.Exit(1)
    folder = do_backup(files=files, dest_dir=dest, now=utcnow())
    typer.echo(f"backup: {folder}")
    if len(files) < 2:
        typer.echo(f"note: only {', '.join(files)} is SQLite; {SCALE_HINT}", err=True)


def restore(
    src: Annotated[Path, typer.Argument(help="a yuqing-backup-<time> folder made by `yuqing backup`")],
    force: Annotated[bool, typer.Option("--force", help="overwrite the current databases (stop the service)")] = False,
) -> None:
    """Restore the embedded databases from a verified backup (refuses to overwrite without --force)."""
    from core.lifecycle import restore as do_restore

    settings = _settings()
    files = sqlite_files(settings)
    if not files:
        typer.echo(f"nothing to restore into: {SCALE_HINT}", err=True)
        raise typer.Exit(2)
    try:
        restored = do_restore(src_dir=src, targets=files, force=force)
    except FileExistsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"backup not usable: {exc}", err=True)
        raise typer.Exit(1) from exc
    for path in restored:
        typer.echo(f"restored: {path}")


def retention(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only count what would be deleted")] = False,
    posts_days: Annotated[int | None, typer.Option(help="keep raw posts this many days (default: settings)")] = None,
    tickets_years: Annotated[int | None, typer.Option(
        help="delete closed tickets (with audit) after this many years (default: settings; unset = forever)")] = None,
) -> None:
    """Delete posts and records past their retention period; prints what went as JSON."""
    from core.lifecycle import apply_retention
    from core.wiring import Container

    settings = _settings()
    days = posts_days if posts_days is not None else int(getattr(settings, "retention_posts_days", 180))
    years = tickets_years if tickets_years is not None else getattr(settings, "retention_tickets_years", None)
    container = Container(settings)
    try:
        result = apply_retention(post_store=container.post_store, db=container.db, posts_days=days,
                                 tickets_years=years, now=utcnow(), dry_run=dry_run)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    finally:
        container.close()
    typer.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
