"""Writing users' files safely: atomically and with the permissions any other tool would give them.

Every file goes to a temporary file in the destination folder first and is moved into place only when
complete, so an interrupted run never leaves a half-written file. The temporary file gets mode
0666 minus the umask before the move: ``tempfile.mkstemp`` creates it 0600, which would make every
output unreadable to the user's group whatever their umask says.
"""

from __future__ import annotations

import os
import tempfile


def default_file_mode() -> int:
    """0666 minus the process umask: the mode ``open(path, "w")`` would give a new file."""
    umask = os.umask(0o022)  # the only way to read it is to set it; put it back at once
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str, payload: bytes, *, overwrite: bool = True) -> None:
    """Write ``payload`` to ``path`` through a temporary file in the same folder.

    overwrite=False never replaces an existing file, even one created while we wrote (the temporary
    file is hard-linked into place, which fails if ``path`` exists): FileExistsError then. Other
    failures raise OSError; the temporary file is removed in every case.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    descriptor, temp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        os.fchmod(descriptor, default_file_mode())
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
        if overwrite:
            os.replace(temp_path, path)
        else:
            try:
                os.link(temp_path, path)
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links: check, then move
                if os.path.exists(path):
                    raise FileExistsError(path) from None
                os.replace(temp_path, path)
    finally:  # also on KeyboardInterrupt
        if os.path.exists(temp_path):
            os.unlink(temp_path)
