"""The schema line at the top of a profile, which makes an editor validate and complete it:
``#:schema PATH`` in TOML (Taplo / Even Better TOML), ``# yaml-language-server:
$schema=PATH`` in YAML. ``validate --require-schema-line`` (the pre-commit hook) checks
each file has one within its first lines and that a relative path reaches a file;
``dbprofile import`` writes one (:func:`schema_line`)."""

from __future__ import annotations

import re
from pathlib import Path

from dbprofile.errors import Problem
from dbprofile.files import UserFileError, read_user_file
from dbprofile.text import shown

__all__ = ["schema_line", "schema_line_problems"]

DEFAULT_TARGET = "../schema/dbprofile.schema.json"
SEARCHED_LINES = 5
_TOML = re.compile(r"^#:schema\s+(\S+)")
_YAML = re.compile(r"^#\s*yaml-language-server:\s*\$schema=(\S+)")


def schema_line(fmt: str, target: str = DEFAULT_TARGET) -> str:
    """The schema line for a ``toml`` or ``yaml`` profile."""
    if fmt == "toml":
        return f"#:schema {target}"
    return f"# yaml-language-server: $schema={target}"


def schema_line_problems(path: Path) -> list[Problem]:
    """[] when ``path`` starts with a schema line that reaches a file (or a URL)."""
    fmt = "toml" if path.suffix == ".toml" else "yaml"
    try:
        text = read_user_file(path, what="profile")
    except UserFileError:
        return []  # the loader reports an unreadable file
    pattern = _TOML if fmt == "toml" else _YAML
    for number, line in enumerate(text.splitlines()[:SEARCHED_LINES], 1):
        match = pattern.match(line.strip())
        if match is None:
            continue
        target = match.group(1)
        if "://" in target or (path.parent / target).is_file():
            return []
        return [
            Problem(
                str(path),
                number,
                message=f"the schema line points to {shown(target)}, which is not a file "
                f"from here; the schema is checked in at schema/dbprofile.schema.json",
            )
        ]
    return [
        Problem(
            str(path),
            1,
            message=f"no schema line: start the file with `{schema_line(fmt)}` so editors "
            "validate and complete it",
        )
    ]
