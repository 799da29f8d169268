"""``dbprofile import``: an existing deployment's variables → a profile that compiles to
the same spec.

The deployment is a mapping of ``LETTA_*`` variables: the process environment, a
``.env`` file (:func:`parse_env_file`) or Letta's ``conf.yaml`` (:func:`read_letta_config`:
read as YAML 1.1 and the ``letta:`` tree flattened as Letta 0.16.8's
``letta/config_file.py`` does,
``letta: {pg: {host: h}}`` → ``LETTA_PG_HOST=h``; only the database keys are kept).
It is compiled env-only (exactly what the deployment opens today); the merged tree,
less the built-in defaults (or, with ``--extends``, less the parent's merged tree), is
the profile. ``database.uri`` is written as its components. Secret values are never
written: each becomes ``{env = VAR}`` (the variable the deployment already uses; a
password inside ``LETTA_PG_URI`` becomes ``{env = LETTA_PG_PASSWORD}``) or, with
``secret_dir``, ``{file = DIR/var}``; :attr:`Imported.required` lists what the operator
must keep providing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from attrs import evolve, frozen

from dbprofile.compiler.load import KeyPath
from dbprofile.compiler.merge import merge_layers
from dbprofile.compiler.modeline import schema_line
from dbprofile.compiler.pipeline import compile_full, defaults_layer, load_chain
from dbprofile.errors import Problem, ProblemsFound
from dbprofile.keys import ENV_PREFIX, KEYS, KEYS_BY_ENV, KEYS_BY_PATH, env_of
from dbprofile.spec import Secret
from dbprofile.text import shown

__all__ = [
    "Imported",
    "flatten_letta_config",
    "import_profile",
    "located",
    "parse_env_file",
    "read_letta_config",
    "render_profile",
]


@frozen
class Required:
    """A secret the operator must keep providing: where, and what it must hold."""

    source: str  # "env" or "file"
    ref: str  # the variable or the file
    holds: str  # what it must hold, e.g. "the password now inside LETTA_PG_URI"
    kept: bool = False  # the deployment provides it so already (its own variable)


@frozen
class Imported:
    tree: dict[str, Any]
    extends: str | None
    required: tuple[Required, ...]
    warnings: tuple[Problem, ...]


def parse_env_file(text: str, label: str, lines: dict[str, int] | None = None) -> dict[str, str]:
    """A ``.env`` file (``KEY=VALUE`` lines, ``export``, quotes, comments) as a mapping;
    each variable's line goes into ``lines`` when it is given."""
    out: dict[str, str] = {}
    problems = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        name, eq, value = line.partition("=")
        name = name.strip()
        if not eq or not name.replace("_", "").isalnum():
            problems.append(Problem(label, number, message="expected NAME=VALUE"))
            continue
        value = value.strip()
        end = _closing_quote(value)
        if end:  # a quoted value, perhaps followed by a comment
            quote, value = value[0], value[1:end]
            if quote == '"':  # \n, \" and \\ in one pass (\\n is a backslash and an n)
                value = _ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[name] = value
        if lines is not None:
            lines[name] = number
    if problems:
        raise ProblemsFound(problems)
    return out


def located(problems: Iterable[Problem], label: str, lines: Mapping[str, int]) -> list[Problem]:
    """``problems`` about a variable read from a file (``env LETTA_PG_PORT: …``) placed
    on the file's line instead (``.env:3: LETTA_PG_PORT: …``)."""
    out = []
    for problem in problems:
        name = problem.file.removeprefix("env ")
        if problem.file.startswith("env ") and name in lines:
            message = f"{name}: {problem.message}"
            out.append(evolve(problem, file=label, line=lines[name], message=message))
        else:
            out.append(problem)
    return out


_ESCAPE = re.compile(r'\\([n"\\])')


def _closing_quote(value: str) -> int:
    """The index of the quote closing ``value``'s opening quote when only blanks or a
    ``#`` comment follow it (``"db"  # primary``), else 0: not a quoted value."""
    if value[:1] not in ("'", '"'):
        return 0
    quote, i = value[0], 1
    while i < len(value):
        if quote == '"' and value[i] == "\\":
            i += 2
            continue
        if value[i] == quote:
            rest = value[i + 1 :].strip()
            return i if not rest or rest.startswith("#") else 0
        i += 1
    return 0


def read_letta_config(text: str, label: str, lines: dict[str, int] | None = None) -> dict[str, str]:
    """Letta's ``conf.yaml`` text as the database variables Letta 0.16.8 makes of it: read
    as YAML 1.1 (Letta uses PyYAML), flattened by :func:`flatten_letta_config`."""
    from dbprofile.compiler.load import parse_yaml

    data, positions = parse_yaml(text, label, version=(1, 1))
    return flatten_letta_config(data, label, positions, lines)


def flatten_letta_config(
    data: Any,
    label: str,
    positions: Mapping[KeyPath, tuple[int, int]] | None = None,
    lines: dict[str, int] | None = None,
) -> dict[str, str]:
    """Letta's ``conf.yaml`` ``letta:`` tree flattened as Letta does (upper-cased, joined
    with ``_``; booleans as ``true``/``false``; ``null`` skipped), database keys only;
    each variable's line (from the loader's ``positions``) goes into ``lines``."""
    if not isinstance(data, dict):
        raise ProblemsFound([Problem(label, message="expected a mapping with a 'letta:' tree")])
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str, path: KeyPath) -> None:
        for key, value in node.items():
            name = f"{prefix}_{key}".upper()
            if isinstance(value, dict):
                walk(value, name, (*path, str(key)))
            elif value is not None:
                out[name] = str(value).lower() if isinstance(value, bool) else str(value)
                position = (positions or {}).get((*path, str(key)))
                if lines is not None and position is not None:
                    lines[name] = position[0]

    letta = data.get("letta")
    if isinstance(letta, dict):
        walk(letta, ENV_PREFIX.rstrip("_"), ("letta",))
    return {k: v for k, v in out.items() if k in KEYS_BY_ENV}


def _leaves(tree: Mapping[str, Any], prefix: KeyPath = ()) -> dict[KeyPath, Any]:
    """Leaf values by path; secrets and options' list values are leaves."""
    out: dict[KeyPath, Any] = {}
    for key, value in tree.items():
        path = (*prefix, key)
        if path in {("database", "uri"), ("extends",)}:
            continue
        model = KEYS_BY_PATH.get(".".join(path))
        if isinstance(value, dict) and not (model and model.type == "secret"):
            out.update(_leaves(value, path))
        else:
            out[path] = value
    return out


def _secret_ref(
    path: KeyPath, value: Any, secret_dir: str | None, held_in: str | None
) -> tuple[dict[str, str], Required]:
    """The reference written for a deployment's secret, and what the operator provides
    (``held_in``: the file holding the deployment's variables, None for the environment)."""
    dotted = ".".join(path)
    kept = held_in is None
    if isinstance(value, Secret) and value.part == "password":
        var = env_of(dotted)
        holds = f"the password now inside {value.ref}"
    elif isinstance(value, dict) and "env" in value:
        var = str(value["env"])
        holds = f"{dotted}, as today" if kept else f"{dotted} (today in {held_in})"
    else:  # a literal from a conf.yaml written in clear, or an enc:v1: value
        var, kept = env_of(dotted), False
        holds = f"{dotted} (today written in clear)"
    if secret_dir is not None:
        file = f"{secret_dir.rstrip('/')}/{var.lower()}"
        return {"file": file}, Required("file", file, holds.replace(", as today", f" ({var})"))
    return {"env": var}, Required("env", var, holds, kept=kept)


def import_profile(
    deployment: Mapping[str, str],
    *,
    extends: str | None = None,
    profiles_dir: str = "profiles",
    secret_dir: str | None = None,
    held_in: str | None = None,
) -> Imported:
    """The profile for ``deployment``'s variables (see module doc); ``held_in`` names the
    file they were read from (a .env file, Letta's conf.yaml), None for the environment."""
    compiled = compile_full(None, environ=deployment)
    target = _leaves(compiled.merged.tree)
    if extends is not None:
        merged, problems, _ = merge_layers([defaults_layer(), *load_chain(extends, profiles_dir)])
        if problems:
            raise ProblemsFound(problems)
        base = _leaves(merged.tree)
    else:
        base = _leaves(compiled_defaults())
    out: dict[str, Any] = {}
    required: list[Required] = []
    problems = []
    secrets = {k.parts for k in KEYS if k.type == "secret"}
    for path in sorted(set(target) | set(base)):
        if path not in target:
            problems.append(
                Problem(
                    f"profile {extends}",
                    key=".".join(path),
                    message="set by the parent but not by the deployment; a child cannot "
                    "unset it: import without --extends, or extend a profile without it",
                )
            )
            continue
        value = target[path]
        if path in secrets:
            value, need = _secret_ref(path, value, secret_dir, held_in)
            required.append(need)
        if path in base and base[path] == value:
            continue
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    if problems:
        raise ProblemsFound(problems)
    return Imported(out, extends, tuple(required), compiled.warnings)


def compiled_defaults() -> dict[str, Any]:
    return defaults_layer().tree


# ------------------------------------------------------------------ rendering


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):  # a secret reference
        return "{ " + ", ".join(f"{k} = {_scalar(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))  # a TOML basic string and a YAML double-quoted scalar


def render_profile(imported: Imported, fmt: str, header: str) -> str:
    """The profile as TOML or YAML, with the schema line and ``header`` comment lines."""
    lines = [schema_line(fmt), *(f"# {h}" for h in header.splitlines())]
    tree = imported.tree
    if fmt == "toml":
        if imported.extends:
            lines.append(f"extends = {_scalar(imported.extends)}")

        def table(node: dict[str, Any], prefix: str) -> None:
            leaves = {k: v for k, v in node.items() if not _is_table(prefix, k, v)}
            if leaves:
                lines.append("")
                lines.append(f"[{prefix}]")
                lines.extend(f"{_key(k)} = {_scalar(v)}" for k, v in leaves.items())
            for k, v in node.items():
                if _is_table(prefix, k, v):
                    table(v, f"{prefix}.{_key(k)}")

        for section, node in tree.items():
            table(node, section)
    else:
        if imported.extends:
            lines.append(f"extends: {_scalar(imported.extends)}")

        def block(node: dict[str, Any], prefix: str, indent: str) -> None:
            for k, v in node.items():
                if _is_table(prefix, k, v):
                    lines.append(f"{indent}{_key(k)}:")
                    block(v, f"{prefix}.{k}", indent + "  ")
                elif isinstance(v, dict):  # a secret reference
                    inner = ", ".join(f"{a}: {_scalar(b)}" for a, b in v.items())
                    lines.append(f"{indent}{_key(k)}: {{{inner}}}")
                else:
                    lines.append(f"{indent}{_key(k)}: {_scalar(v)}")

        for section, node in tree.items():
            lines.append("")
            lines.append(f"{section}:")
            block(node, section, "  ")
    return "\n".join(lines) + "\n"


def _is_table(prefix: str, key: str, value: Any) -> bool:
    model = KEYS_BY_PATH.get(f"{prefix}.{key}")
    return isinstance(value, dict) and not (model and model.type == "secret")


def _key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() else json.dumps(name)


def describe_required(required: tuple[Required, ...]) -> list[str]:
    """One line per secret the operator must (keep) providing."""
    return [
        f"{'keep providing' if r.kept else 'provide'} "
        f"{'variable' if r.source == 'env' else 'file'} {shown(r.ref)}: {r.holds}"
        for r in required
    ]
