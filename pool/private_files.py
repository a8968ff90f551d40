"""Files and folders only vibeadmin's own user may read, created so from the start.

A chmod after writing leaves a moment when the secret is readable by others; here the
mode is given to the system call that creates the file, and an existing file is kept.
A folder made by an older version (0755, its files 0644) is made private at every start.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

# How deep an existing folder is made private: its files, and its folders' (logs/, models/).
# No deeper: a data folder set by mistake to a home folder must not have it all walked.
PRIVATE_DEPTH = 2


def private_dir(path: Path) -> Path:
    """Create the folder (and missing parents) as 0700; an existing one, and what lies in
    it, loses every permission of group and others (its owner's are kept)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _keep_to_owner(str(path), PRIVATE_DEPTH)
    return path


def _keep_to_owner(path: str, depth: int) -> None:
    try:
        info = os.lstat(path)
    except OSError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid():  # not ours to change
        return
    if info.st_mode & 0o077:
        with contextlib.suppress(OSError):
            os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o077)
    if depth and stat.S_ISDIR(info.st_mode):
        with contextlib.suppress(OSError), os.scandir(path) as entries:
            for entry in entries:
                _keep_to_owner(entry.path, depth - 1)


def write_private(path: Path, text: str) -> bool:
    """Write `text` to a new file created 0600; False (and nothing written) if it exists.
    The text is written aside first and linked in whole, so no reader sees it half-written."""
    aside = path.with_name(f".{path.name}.{os.getpid()}")
    aside.unlink(missing_ok=True)  # a leftover of a crash may have other modes
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.link(aside, path)
    except FileExistsError:
        return False
    finally:
        aside.unlink(missing_ok=True)
    return True


def private_secret(path: Path, fresh: str) -> str:
    """The secret kept in `path`, created with `fresh` on the first run. Of two processes
    starting at once, the first to create the file wins and both read its secret."""
    write_private(path, fresh)
    return path.read_text().strip()
