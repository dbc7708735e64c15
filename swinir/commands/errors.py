"""How the ``swinir`` command reports failures: one line each.

:class:`UsageError` is a bad option (the sub-command's usage, then ``swinir COMMAND: error: ...``, exit
status 2); :class:`CliError` is a failure of the work (``swinir: error: ...``, exit status 1). Messages
quote other libraries' errors through :func:`swinir.errors.first_line`.
"""

from __future__ import annotations

import os
import sys

from ..errors import first_line

__all__ = ["CliError", "UsageError", "report", "note", "first_line", "is_out_of_memory", "cannot_write"]


class CliError(Exception):
    """A failure reported as one ``swinir: error: ...`` line (exit status 1)."""


class UsageError(Exception):
    """A bad option or combination of options: the sub-command's usage and one line (exit status 2)."""


def report(message: str) -> None:
    print(f"swinir: error: {message}", file=sys.stderr)


def note(message: str, quiet: bool) -> None:
    """A line on stderr that does not break the progress bars (nothing with --quiet)."""
    if not quiet:
        from tqdm.auto import tqdm

        tqdm.write(f"swinir: {message}", file=sys.stderr)


def cannot_write(path: str, error: OSError) -> str:
    """``PATH: cannot write there (REASON)``, naming the folder that refused when it is not ``path`` itself."""
    refused = error.filename if isinstance(error.filename, str) else None
    where = "" if refused is None or os.path.abspath(refused) == os.path.abspath(path) else f" in {refused}"
    return f"{path}: cannot write there ({error.strerror or first_line(error)}{where})"


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None), torch.cuda.OutOfMemoryError) if t)
    if isinstance(error, oom_types):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)
