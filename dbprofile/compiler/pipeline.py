"""The whole compile: load → merge → overrides → validate → compile, in one visible place.

Layer priority, lowest first (the ordered tuple of sources)::

    defaults < extends chain (parents first, depth-first, each once) < the profile
             < LETTA_* environment < --set KEY=VALUE

Every stage's problems are gathered and raised together as one ``ProblemsFound``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from warnings import warn

from attrs import frozen

from dbprofile.compiler.compile import compile_spec
from dbprofile.compiler.load import (
    EXTENSIONS,
    Layer,
    find_profile,
    load_layer,
    not_a_directory,
    profile_names,
)
from dbprofile.compiler.merge import Merged, merge_layers
from dbprofile.compiler.overrides import env_layer, set_layer
from dbprofile.compiler.validate import validate_tree
from dbprofile.errors import Problem, ProblemsFound, ProfileWarning
from dbprofile.keys import defaults_tree
from dbprofile.spec import EngineSpec


@frozen
class Compiled:
    spec: EngineSpec
    merged: Merged
    warnings: tuple[Problem, ...]  # sorted, each once


def defaults_layer() -> Layer:
    return Layer(label="defaults", tree=defaults_tree(), positions={}, kind="defaults")


Loader = Callable[[Path], Layer]


def load_chain(name: str, profiles_dir: str | Path, load: Loader = load_layer) -> list[Layer]:
    """The profile and its ``extends`` ancestors, parents first, depth-first, each once.
    ``load`` reads one file (the language server passes one that prefers open buffers)."""
    out: list[Layer] = []
    problems: list[Problem] = []
    done: set[str] = set()

    def visit(current: str, stack: tuple[str, ...], child: Layer | None) -> None:
        if current in stack:
            cycle = " -> ".join((*stack[stack.index(current) :], current))
            file, line, _ = child.locate(("extends",)) if child else (f"profile {current}", 0, 0)
            problems.append(Problem(file, line, key="extends", message=f"cycle: {cycle}"))
            return
        if current in done:
            return
        done.add(current)
        try:
            path = find_profile(current, profiles_dir)
        except ProblemsFound as exc:
            if child is None:
                problems.extend(exc.problems)
            else:  # a missing parent is reported where the child names it
                file, line, _ = child.locate(("extends",))
                problems.extend(
                    Problem(file, line, key="extends", message=p.message) for p in exc.problems
                )
            return
        try:
            layer = load(path)
        except ProblemsFound as exc:
            problems.extend(exc.problems)
            return
        parents = layer.tree.get("extends", [])
        if isinstance(parents, str):
            parents = [parents]
        if not isinstance(parents, list) or not all(isinstance(p, str) and p for p in parents):
            file, line, _ = layer.locate(("extends",))
            problems.append(
                Problem(
                    file, line, key="extends", message="must be a profile name or a list of names"
                )
            )
            parents = []
        for parent in parents:
            visit(parent, (*stack, current), layer)
        out.append(layer)

    visit(name, (), None)
    if problems:
        raise ProblemsFound(problems)
    return out


def file_problems(layer: Layer) -> list[Problem]:
    """A file checked alone against the schema (as an editor would)."""
    problems = []
    for error in validate_tree(layer.tree):
        file, line, _ = layer.locate(error.path)
        problems.append(
            Problem(file, line, key=_key_of(error.path, error.keyword), message=error.message())
        )
    return problems


def _key_of(path: tuple[str, ...], keyword: str) -> str:
    if keyword == "additionalProperties":
        path = path[:-1]
    return ".".join(path)


def merged_problems(merged: Merged) -> list[Problem]:
    problems = []
    for error in validate_tree(merged.tree):
        file, line, origin = merged.locate(error.path)
        problems.append(
            Problem(
                file,
                line,
                key=_key_of(error.path, error.keyword),
                message=error.message(),
                origin=origin,
            )
        )
    return problems


def compile_layers(
    profile: str | None,
    file_layers: Sequence[Layer],
    environ: Mapping[str, str],
    sets: Iterable[str],
) -> Compiled:
    problems: list[Problem] = []
    warnings: list[Problem] = []
    env, env_problems, env_warnings = env_layer(environ)
    problems.extend(env_problems)
    warnings.extend(env_warnings)
    cli, set_problems = set_layer(sets)
    problems.extend(set_problems)
    for layer in file_layers:
        problems.extend(file_problems(layer))
    merged, merge_problems, merge_warnings = merge_layers(
        [defaults_layer(), *file_layers, env, cli]
    )
    problems.extend(merge_problems)
    warnings.extend(merge_warnings)
    if not problems:
        problems.extend(merged_problems(merged))
    if problems:
        raise ProblemsFound(problems + warnings)  # warnings still help when it fails
    spec, compile_problems, compile_warnings = compile_spec(merged, profile)
    warnings.extend(compile_warnings)
    if compile_problems or spec is None:
        raise ProblemsFound(compile_problems + warnings)
    return Compiled(spec=spec, merged=merged, warnings=tuple(sorted(set(warnings))))


def compile_full(
    name: str | None = None,
    *,
    profiles_dir: str | Path = "profiles",
    environ: Mapping[str, str] | None = None,
    sets: Iterable[str] = (),
    load: Loader = load_layer,
) -> Compiled:
    """Compile a profile (or, with no name, defaults + environment) to a :class:`Compiled`.
    An empty name is no profile name (``--profile ""`` is refused, not taken as none)."""
    layers = load_chain(name, profiles_dir, load) if name is not None else []
    return compile_layers(name, layers, environ or {}, sets)


def compile_profile(
    name: str | None = None,
    *,
    profiles_dir: str | Path = "profiles",
    environ: Mapping[str, str] | None = None,
    sets: Iterable[str] = (),
) -> EngineSpec:
    """Compile profile ``name`` into an :class:`EngineSpec`.

    ``environ`` is the environment to apply (pass ``os.environ`` explicitly to use the
    process's; ``None`` means no environment layer). Raises ``ProblemsFound`` with every
    problem when the configuration is wrong. Each warning (a literal secret in prod, a
    part the URI overrides, a difference from Letta) is issued as a
    :class:`~dbprofile.errors.ProfileWarning` through :mod:`warnings`, so a service sees
    it in its logs and a test can turn it into an error; :func:`compile_full` returns
    them as data instead.
    """
    compiled = compile_full(name, profiles_dir=profiles_dir, environ=environ, sets=sets)
    for warning in compiled.warnings:
        warn(ProfileWarning(warning.render()), stacklevel=2)
    return compiled.spec


CompileOne = Callable[[str, Path], Compiled]


def compiler_for(environ: Mapping[str, str] | None) -> CompileOne:
    """:func:`compile_full` of (name, profiles directory) with ``environ``."""
    return lambda name, directory: compile_full(name, profiles_dir=directory, environ=environ)


def validate_profiles(
    profiles_dir: str | Path,
    *,
    files: Sequence[str | Path] | None = None,
    environ: Mapping[str, str] | None = None,
    warnings: list[Problem] | None = None,
    compile_one: CompileOne | None = None,
) -> tuple[int, int]:
    """``dbprofile validate``: each profile file alone against the schema (as an editor
    checks it), then every profile merged with its parents (and ``environ``); or only
    ``files`` and their profiles. Returns (files checked, profiles checked); raises
    ``ProblemsFound`` with every problem of every file and profile. The compiled
    profiles' warnings are appended to ``warnings`` when it is given; ``compile_one``
    (name, directory) replaces :func:`compile_full` with ``environ`` (a caller that
    compiles the same profiles again passes a cached one)."""
    base = Path(profiles_dir)
    if files:
        paths = list(dict.fromkeys(Path(f) for f in files))  # a file named twice is one
    else:
        if not base.is_dir():
            raise ProblemsFound([not_a_directory(base, str(base))])
        try:
            paths = sorted(p for p in base.iterdir() if p.suffix in EXTENSIONS)
        except OSError as exc:
            raise ProblemsFound(
                [Problem(str(base), message=f"cannot read: {exc.strerror}")]
            ) from None
    problems: list[Problem] = []
    loaded: list[Path] = []
    for path in paths:
        if files and not path.exists() and path.suffix not in EXTENSIONS:
            named = [base / f"{path.name}{ext}" for ext in EXTENSIONS]
            hint = next((f" (the profile's file is {p})" for p in named if p.is_file()), "")
            problems.append(Problem(str(path), message=f"no such file{hint}"))
            continue
        try:
            problems.extend(file_problems(load_layer(path)))
            loaded.append(path)
        except ProblemsFound as exc:
            problems.extend(exc.problems)
    # Each file's profile compiles in the file's own directory (files may come from
    # several); a file that did not load is not compiled again (its problem is above).
    targets = (
        sorted({(p.parent, p.stem) for p in loaded})
        if files
        else [(base, name) for name in profile_names(base)]
    )
    checked = 0
    for directory, name in targets:
        try:
            compiled = (compile_one or compiler_for(environ))(name, directory)
        except ProblemsFound as exc:
            problems.extend(exc.problems)
            continue
        checked += 1
        if warnings is not None:
            warnings.extend(w for w in compiled.warnings if w not in warnings)
    if problems:
        # A parent's problem reaches every profile that extends it: report it once.
        raise ProblemsFound(list(dict.fromkeys(problems)))
    return len(paths), checked
