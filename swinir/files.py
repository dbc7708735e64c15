"""Writing users' files safely: atomically and with the permissions any other tool would give them.

Every file goes to a temporary file in the destination folder first and is moved into place only when
complete, so an interrupted run never leaves a half-written file. The temporary file gets mode
0666 minus the umask before the move: ``tempfile.mkstemp`` creates it 0600, which would make every
output unreadable to the user's group whatever their umask says. This is the only place in
:mod:`swinir` that writes a file this way (images, ONNX graphs, training checkpoints, the hub's cache).

:func:`check_writable_folder` finds out, with a real write, whether a folder can take files before
any work is done (a permission bit says nothing on a read-only mount, under ``/sys``, or as root).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

__all__ = ["default_file_mode", "atomic_write", "atomic_write_bytes", "check_writable_folder"]


def default_file_mode() -> int:
    """0666 minus the process umask: the mode ``open(path, "w")`` would give a new file."""
    umask = os.umask(0o022)  # the only way to read it is to set it; put it back at once
    os.umask(umask)
    return 0o666 & ~umask


def _named(error: OSError, path: str) -> OSError:
    """The same error naming ``path`` (the destination) instead of our temporary file."""
    if error.errno is None:
        return error
    return type(error)(error.errno, error.strerror, path)


def atomic_write(path: str, write: Callable, *, overwrite: bool = True, fsync: bool = False) -> None:
    """``write(handle)`` into a temporary binary file in ``path``'s folder, then move it to ``path``.

    overwrite=False never replaces an existing file, even one created while we wrote (the temporary
    file is hard-linked into place, which fails if ``path`` exists): FileExistsError then. fsync=True
    flushes the data to the disk before the move (checkpoints). Other failures of the file system
    raise OSError naming ``path``; the temporary file is removed in every case.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path}: already exists")
    temp_path = None
    try:
        os.makedirs(folder, exist_ok=True)
        descriptor, temp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                                 dir=folder)
        os.fchmod(descriptor, default_file_mode())
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
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
    except FileExistsError:
        raise
    except OSError as error:
        raise _named(error, path) from None
    finally:  # also on KeyboardInterrupt
        if temp_path is not None and os.path.exists(temp_path):
            os.unlink(temp_path)


def atomic_write_bytes(path: str, payload: bytes, *, overwrite: bool = True) -> None:
    """Write ``payload`` to ``path`` through a temporary file in the same folder (see :func:`atomic_write`)."""
    atomic_write(path, lambda handle: handle.write(payload), overwrite=overwrite)


def check_writable_folder(folder: str) -> None:
    """Raises OSError (naming the folder that refused) unless files can be written in ``folder``: a
    temporary file is created there and removed, or, when ``folder`` does not exist yet, a temporary
    folder in its nearest existing parent. Nothing is left behind. NotADirectoryError when ``folder``
    or one of its parents is a file."""
    folder = os.path.abspath(os.fspath(folder))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(20, "Not a directory", existing)
    try:
        if existing == folder:
            descriptor, probe = tempfile.mkstemp(prefix=".swinir-write-test-", dir=folder)
            os.close(descriptor)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".swinir-write-test-", dir=existing))
    except OSError as error:
        raise _named(error, existing) from None
