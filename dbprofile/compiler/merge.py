"""Stage 2 — merge: layers, lowest first, become one tree with the trail of every key.

Tables deep-merge; scalars, lists and secret references replace. Each key keeps its
*trail*: every layer that set it, lowest first, so ``explain`` and errors can say
where a value came from and what it replaced.

A layer's ``database.uri`` is first expanded into the components it carries (host,
port, name, user, password, options), so per component the highest layer wins. Within
one layer the URI wins over an explicit part that sets the same component, as in Letta
(where ``LETTA_PG_URI`` makes every ``LETTA_PG_*`` part irrelevant); the ignored part
gets a warning. In the environment layer the URI wins over *every* part, even one for a
component the URI lacks — exactly Letta's rule, so an unchanged Letta deployment reaches
the same server. A sqlite URI, or clearing ``database.uri`` (``LETTA_PG_URI=""``),
clears the PostgreSQL components that lower layers' URIs carried, selecting SQLite.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from attrs import frozen

from dbprofile.compiler.load import KeyPath, Layer, LayerKind
from dbprofile.compiler.overrides import CLEAR
from dbprofile.errors import Problem
from dbprofile.keys import KEYS_BY_PATH, PG_COMPONENTS, SECRET_PATHS
from dbprofile.pgurl import SqliteUri, UriError, mask_uri, parse_uri
from dbprofile.spec import Secret
from dbprofile.text import shown

URI_PATH: KeyPath = ("database", "uri")
FROM_URI = " (database.uri)"


@frozen
class Step:
    """One layer setting one key."""

    where: str  # "profiles/prod.yaml:12", "env LETTA_PG_PORT", "--set pool.size", "default"
    file: str  # where a problem is reported: the file, or the origin for env/--set
    line: int = 0
    kind: LayerKind = "file"
    cleared: bool = False
    from_uri: bool = False  # the value is a component of that layer's database.uri

    @property
    def origin(self) -> str:
        """``where``, marked when the value came out of a URI."""
        return self.where + (FROM_URI if self.from_uri else "")


@frozen
class Merged:
    tree: dict[str, Any]
    trails: dict[KeyPath, tuple[Step, ...]]
    sources: tuple[str, ...]

    def top(self, path: KeyPath) -> Step | None:
        trail = self.trails.get(path)
        return trail[-1] if trail else None

    def locate(self, path: KeyPath) -> tuple[str, int, str]:
        """(file, line, set-by origin) for a problem at ``path``: the highest file that
        wrote the key, and the origin of the value if something else set it."""
        for i in range(len(path), 0, -1):
            trail = self.trails.get(path[:i])
            if not trail:
                continue
            top = trail[-1]
            for step in reversed(trail):
                if step.kind == "file":
                    origin = top.where if top is not step else ""
                    return step.file, step.line, origin
            return top.file, top.line, ""
        return "", 0, ""


def _step(layer: Layer, path: KeyPath, *, from_uri: bool = False, cleared: bool = False) -> Step:
    if layer.kind == "file":
        file, line, _ = layer.locate(path)
        return Step(layer.origin(path), file, line, "file", cleared, from_uri)
    if layer.kind == "defaults":
        return Step("default", "default", 0, "defaults", cleared)
    origin = layer.origin(path)
    return Step(origin, origin, 0, layer.kind, cleared, from_uri)


def _ignored_part(layer: Layer, comp: str, *, whole: bool) -> Problem:
    """The warning for an explicit part the same layer's URI overrides."""
    path: KeyPath = ("database", *comp.split("."))
    uri_origin = layer.origin(URI_PATH)
    if layer.kind == "file":
        file, line, _ = layer.locate(path)
        return Problem(
            file,
            line,
            key=f"database.{comp}",
            severity="warning",
            message=f"ignored: database.uri in the same file ({uri_origin}) sets the "
            f"{comp} too, and the URI wins (as in Letta)",
        )
    what = "it wins over every connection part" if whole else f"it sets the {comp} too"
    return Problem(
        layer.origin(path),
        severity="warning",
        message=f"ignored: {uri_origin.removeprefix('env ')} is set, and {what} (as in Letta)",
    )


def _encoded_name_warning(layer: Layer, uri: str, name: str | None) -> list[Problem]:
    """D20: Letta 0.16.8 sends a percent-encoded database name as written."""
    raw = uri.split("?", 1)[0].split("://", 1)[-1].partition("/")[2]
    if name is None or "%" not in raw or raw == name:
        return []
    file, line, _ = layer.locate(URI_PATH)
    return [
        Problem(
            file if layer.kind == "file" else layer.origin(URI_PATH),
            line,
            key="database.uri",
            severity="warning",
            message=f"database name {shown(raw)} is percent-decoded to {shown(name)}; "
            "Letta 0.16.8 would ask for the encoded name as written",
        )
    ]


def expand_uri(layer: Layer) -> tuple[Layer, frozenset[KeyPath], list[Problem], list[Problem]]:
    """The layer with its ``database.uri`` expanded into components (see module doc),
    the paths the URI supplied, problems and warnings."""
    none: frozenset[KeyPath] = frozenset()
    db = layer.tree.get("database")
    if not isinstance(db, dict) or "uri" not in db:
        return layer, none, [], []
    uri = db["uri"]
    if uri is CLEAR or not isinstance(uri, str):
        return layer, none, [], []  # the validator reports a wrong type
    file, line, _ = layer.locate(URI_PATH)
    try:
        parts = parse_uri(uri)
    except UriError as exc:
        label = file if layer.kind == "file" else layer.origin(URI_PATH)
        problem = Problem(
            label, line, key="database.uri", message=f"{exc}, got {shown(mask_uri(uri))}"
        )
        return layer, none, [problem], []
    warnings: list[Problem] = []
    tree = copy.deepcopy(layer.tree)
    newdb = tree["database"]
    where = dict(layer.where)
    positions = dict(layer.positions)
    uri_pos = layer.positions.get(URI_PATH)
    uri_where = layer.where.get(URI_PATH, layer.label)

    def put(path: KeyPath, value: Any) -> None:
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        if uri_pos is not None:
            positions[path] = uri_pos
        where[path] = uri_where
        derived.add(path)

    derived: set[KeyPath] = set()
    if isinstance(parts, SqliteUri):
        for comp in (*PG_COMPONENTS, "options"):
            if comp not in newdb:
                put(("database", comp), CLEAR)
        sqlite = tree.setdefault("sqlite", {})
        if isinstance(sqlite, dict) and "path" not in sqlite:
            put(("sqlite", "path"), parts.path)
    else:
        carried = parts.components()
        warnings.extend(_encoded_name_warning(layer, uri, parts.database))
        explicit = [c for c in PG_COMPONENTS if c in newdb and newdb[c] is not CLEAR]
        for comp in explicit:
            if layer.kind == "env" or comp in carried:
                warnings.append(_ignored_part(layer, comp, whole=layer.kind == "env"))
                if comp not in carried:
                    del newdb[comp]
                    where.pop(("database", comp), None)
        for comp, value in carried.items():
            if comp == "options":
                existing = newdb.get("options")
                for opt, optval in value.items():
                    if isinstance(existing, dict) and opt in existing:
                        warnings.append(_ignored_part(layer, f"options.{opt}", whole=False))
                    put(("database", "options", opt), optval)
                continue
            if comp == "password" and layer.kind == "env":
                value = Secret(  # noqa: PLW2901 - the env layer carries a reference, not the text
                    "env", uri_where.removeprefix("env "), "database.password", part="password"
                )
            put(("database", comp), value)
    expanded = Layer(
        label=layer.label,
        tree=tree,
        positions=positions,
        kind=layer.kind,
        where=where,
    )
    return expanded, frozenset(derived), [], warnings


def merge_layers(layers: Sequence[Layer]) -> tuple[Merged, list[Problem], list[Problem]]:
    """Merge layers lowest first (see module doc): the result, URI problems, warnings."""
    tree: dict[str, Any] = {}
    trails: dict[KeyPath, tuple[Step, ...]] = {}
    problems: list[Problem] = []
    warnings: list[Problem] = []
    sources: list[str] = []
    for raw in layers:
        layer, derived, found, warned = expand_uri(raw)
        problems.extend(found)
        warnings.extend(warned)
        if layer.tree or layer.kind in ("defaults", "file"):
            sources.append("defaults" if layer.kind == "defaults" else layer.label)
        _apply(tree, trails, layer, layer.tree, (), derived)
    return Merged(tree=tree, trails=trails, sources=tuple(sources)), problems, warnings


def _apply(
    tree: dict[str, Any],
    trails: dict[KeyPath, tuple[Step, ...]],
    layer: Layer,
    values: dict[str, Any],
    prefix: KeyPath,
    derived: frozenset[KeyPath],
) -> None:
    for key, value in values.items():
        path = (*prefix, key)
        if not prefix and key == "extends":
            continue
        from_uri = path in derived
        if value is CLEAR:
            _clear(tree, trails, layer, path, from_uri)
            continue
        step = _step(layer, path, from_uri=from_uri)
        trails[path] = (*trails.get(path, ()), step)
        if isinstance(value, dict) and path not in SECRET_PATHS:
            if not isinstance(tree.get(key), dict):
                tree[key] = {}
            _apply(tree[key], trails, layer, value, path, derived)
        else:
            tree[key] = value


def _clear(
    tree: dict[str, Any],
    trails: dict[KeyPath, tuple[Step, ...]],
    layer: Layer,
    path: KeyPath,
    from_uri: bool,
) -> None:
    """Clear ``path`` back to its default (and, for database.uri, what URIs carried)."""
    key = path[-1]
    trail = trails.get(path, ())
    if from_uri and trail and not trail[-1].from_uri:
        return  # a URI only clears what a URI set (an explicit part stays)
    step = _step(layer, path, from_uri=from_uri, cleared=True)
    model = KEYS_BY_PATH.get(".".join(path))
    if model is not None and model.default is not None:
        tree[key] = model.default
    else:
        tree.pop(key, None)
    trails[path] = (*trail, step)
    if path == URI_PATH:
        for comp in (*PG_COMPONENTS, "options"):
            comp_path: KeyPath = ("database", comp)
            comp_trail = trails.get(comp_path)
            if comp_trail and comp_trail[-1].from_uri:
                tree.pop(comp, None)
                trails[comp_path] = (*comp_trail, step)
        options = tree.get("options")
        if isinstance(options, dict):
            for opt in list(options):
                sub = ("database", "options", opt)
                sub_trail = trails.get(sub)
                if sub_trail and sub_trail[-1].from_uri:
                    del options[opt]
                    trails[sub] = (*sub_trail, step)
