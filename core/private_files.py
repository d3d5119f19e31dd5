"""Files holding citizens' data or secrets are the owner's alone: created 0600 (directories 0700).

SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file, so creating the database file
0600 before the first connection covers all three. An existing file that others can read (an install from
before this rule, or a restore with a loose umask) is tightened when it is opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing; a directory created here is 0700."""
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            path.chmod(DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Make sure ``path`` exists and only its owner may read or write it (0600); returns it."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        tighten(path)
    else:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            tighten(companion)
    return path


def tighten(path: Path) -> None:
    """Drop group and other permissions from an existing file (no-op when already private)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(mode & 0o700)
            log.warning("%s was readable by others (mode %o); now %o", path, mode, mode & 0o700)
    except OSError as exc:  # not ours to change (a read-only mount): say so, do not fail start-up
        log.warning("could not restrict the permissions of %s: %s", path, exc)
