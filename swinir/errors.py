"""One-line error text, shared by the library and the command.

Exceptions from torch, Pillow or the OS can span many lines (torch's zip error goes on for four more
sentences about miniz); everything we print quotes them through these two functions, so a message
is one line and is never cut inside a word.
"""

from __future__ import annotations

import re

__all__ = ["first_line", "first_sentence"]


def _shorten(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else cut at the last word boundary before it, with "..."."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    cut = head.rsplit(None, 1)[0] if re.search(r"\s", head) else text[:limit]
    return cut.rstrip(" ,;:") + "..."


def _first_text_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), "") or type(error).__name__


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (its type's name when it has none), at most
    ``limit`` characters, cut at a word boundary."""
    return _shorten(_first_text_line(error), limit)


def first_sentence(error: BaseException, limit: int = 160) -> str:
    """The first sentence of an exception's message, quoted whole; a first sentence longer than
    ``limit`` is cut at a word boundary and ends with "..."."""
    line = _first_text_line(error)
    match = re.match(r"(.+?[.!?])(?=\s|$)", line)
    return _shorten(match.group(1) if match else line, limit)
