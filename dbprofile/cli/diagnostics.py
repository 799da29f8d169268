"""Problems for machines: ``--error-format text|json|github`` (validate, compile).

- ``text``: one line each on stderr (``profiles/prod.toml:7: key: message``), as always;
- ``json``: one array of objects (``file``, ``line``, ``column``, ``key``, ``message``,
  ``severity``, ``rule``, ``origin``) on stdout, or on stderr when stdout carries the
  command's data (``compile`` printing the spec);
- ``github``: GitHub Actions workflow commands (``::error file=…,line=…::…``), so
  problems land on the pull request's lines.

Exit codes do not depend on the format.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from dbprofile.errors import Problem
from dbprofile.text import escape

ERROR_FORMATS = ("text", "json", "github")


def problem_dict(problem: Problem) -> dict[str, Any]:
    """One problem as a JSON object (the fixed interface)."""
    return {
        "file": escape(problem.file),
        "line": problem.line,
        "column": problem.col,
        "key": escape(problem.key),
        "message": escape(problem.message),
        "severity": problem.severity,
        "rule": problem.rule,
        "origin": escape(problem.origin),
    }


def render_json(problems: Iterable[Problem]) -> str:
    return json.dumps([problem_dict(p) for p in problems], indent=2) + "\n"


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def github_line(problem: Problem) -> str:
    """``::error file=F,line=L[,col=C],title=KEY::message`` (``::warning`` for warnings);
    a problem with no file position (a variable, a flag) is an annotation without one."""
    command = "warning" if problem.severity == "warning" else "error"
    props = []
    if problem.line:
        props.append(f"file={_prop(problem.file)}")
        props.append(f"line={problem.line}")
        if problem.col:
            props.append(f"col={problem.col}")
    title = " ".join(x for x in (problem.rule, problem.key) if x)
    if title:
        props.append(f"title={_prop(title)}")
    text = problem.message if problem.line else f"{problem.file}: {problem.message}"
    if problem.rule:
        text = f"{problem.rule} {text}"
    if problem.origin and problem.origin not in (problem.file, problem.where):
        text += f" (set by {problem.origin})"
    head = f"::{command} {','.join(props)}" if props else f"::{command}"
    return escape(f"{head}::{_data(text)}")


def render_github(problems: Iterable[Problem]) -> str:
    return "".join(github_line(p) + "\n" for p in problems)
