"""One line means one line: every user-supplied fragment that goes into a message passes
through here.

:func:`escape` writes control characters (newline, CR, ESC, …) and invisible format
characters (bidi overrides, zero-width spaces) the way ``repr`` does, so a name or value
can never start a second line, drive a terminal or reorder what the line shows; :func:`shown`
quotes and bounds a value for "got …"; :func:`one_line` folds a multi-line parser or
driver message into sentences on one line.
"""

from __future__ import annotations

import re

__all__ = ["escape", "one_line", "shown"]

MAX_SHOWN = 80  # characters of a value echoed back in a message
# Control characters, line and paragraph separators, and the invisible format characters
# that reorder or hide text on a terminal (bidi overrides and isolates, zero-width ones).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def escape(text: str) -> str:
    """``text`` with every control character written as ``repr`` writes it."""
    return _UNSAFE.sub(lambda m: repr(m.group(0))[1:-1], text)


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """A value as a message shows it after "got": credential shapes masked
    (:func:`dbprofile.pgurl.scrub`), quoted, escaped, at most ``limit`` characters (a
    5,000-digit number is not echoed whole)."""
    from dbprofile.pgurl import scrub

    text = scrub(value if isinstance(value, str) else repr(value))
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text)} characters)"
    return "'" + escape(text).replace("'", "\\'") + "'"


def one_line(text: str) -> str:
    """A message on one line: its lines joined as sentences ("refused. Is the...")."""
    lines = [re.sub(r"\s+", " ", escape_tabs(line)).strip() for line in text.splitlines()]
    out = ""
    for line in filter(None, lines):
        if out:
            out += " " if out.endswith((".", "?", "!", ":", ";")) else ". "
        out += line
    return escape(out)


def escape_tabs(line: str) -> str:
    return line.replace("\t", " ")
