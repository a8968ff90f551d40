"""Files and folders only vibeadmin's own user may read, created so from the start.

A chmod after writing leaves a moment when the secret is readable by others; here the
mode is given to the system call that creates the file, and an existing file is kept.
"""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> Path:
    """Create the folder (and missing parents) as 0700; an existing one is left as it is."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


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
