"""Laws of the compiler, checked with hypothesis.

- merge: an empty layer is the identity; for scalars the last layer wins; tables deep-merge;
- precedence end to end: env beats files, --set beats env (for every scalar key);
- the spec survives unstructure → JSON → structure unchanged;
- determinism: same inputs, same bytes (fingerprint included), in-process and across
  interpreters with different hash seeds;
- the display URL is byte for byte SQLAlchemy's ``URL.create(...).render_as_string()``.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dbprofile.cli import main
from dbprofile.compiler.load import Layer
from dbprofile.compiler.merge import merge_layers
from dbprofile.compiler.pipeline import compile_layers, defaults_layer
from dbprofile.keys import KEYS, Key
from dbprofile.spec import (
    DatabaseSpec,
    EncryptionSpec,
    EngineSpec,
    MonitoringSpec,
    Origin,
    PoolSpec,
    Secret,
    SqliteSpec,
    database_url,
    fingerprint_of,
    render_url,
    spec_to_dict,
    structure_spec,
)
from tests.compiler.golden import VALID

# Scalar keys that can be set without selecting PostgreSQL or needing other keys.
TUNING_KEYS = tuple(
    k for k in KEYS if k.section in ("pool", "monitoring") or k.path in ("database.echo",)
)


def _valid_value(key: Key) -> st.SearchStrategy[Any]:
    if key.type == "boolean":
        return st.booleans()
    if key.type == "integer":
        low = int(key.minimum) if key.minimum is not None else 0
        high = int(key.maximum) if key.maximum is not None else low + 100_000
        return st.integers(min_value=low, max_value=high)
    if key.type == "number":
        high = key.maximum if key.maximum is not None else 1e6
        return st.one_of(
            st.integers(min_value=1, max_value=min(10_000, int(high))),
            st.floats(min_value=0.001, max_value=high, allow_nan=False, allow_infinity=False),
        )
    return st.text(alphabet="abcdefghijklmnopqrstuvwxyz/._-", min_size=1, max_size=20)


def _file_layer(name: str, tree: dict[str, Any]) -> Layer:
    return Layer(label=f"profiles/{name}.toml", tree=tree, positions={})


def _tree_for(key: Key, value: Any) -> dict[str, Any]:
    return {key.section: {key.name: value}}


def _get(tree: dict[str, Any], key: Key) -> Any:
    return tree.get(key.section, {}).get(key.name)


def _env_text(key: Key, value: Any) -> str:
    if key.type == "boolean":
        return str(value != key.invert_env).lower()
    return str(value)


def _set_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@st.composite
def keyed_values(draw: st.DrawFn, count: int = 1) -> tuple[Key, list[Any]]:
    key = draw(st.sampled_from(TUNING_KEYS))
    return key, [draw(_valid_value(key)) for _ in range(count)]


@st.composite
def file_trees(draw: st.DrawFn) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(TUNING_KEYS), unique=True, max_size=6)):
        tree.setdefault(key.section, {})[key.name] = draw(_valid_value(key))
    return tree


# ---------------------------------------------------------------- merge laws


@settings(deadline=None)
@given(file_trees(), st.integers(min_value=0, max_value=2))
def test_an_empty_layer_is_the_identity_of_merge(tree: dict[str, Any], where: int) -> None:
    layers = [defaults_layer(), _file_layer("p", tree)]
    with_empty = list(layers)
    with_empty.insert(where, _file_layer("empty", {}))
    plain, _, _ = merge_layers(layers)
    padded, _, _ = merge_layers(with_empty)
    assert padded.tree == plain.tree
    assert {p: t[-1].origin for p, t in padded.trails.items()} == {
        p: t[-1].origin for p, t in plain.trails.items()
    }


@settings(deadline=None)
@given(st.data(), st.integers(min_value=1, max_value=5))
def test_for_scalars_the_last_layer_wins(data: st.DataObject, count: int) -> None:
    key, values = data.draw(keyed_values(count))
    layers = [defaults_layer()] + [
        _file_layer(f"l{i}", _tree_for(key, v)) for i, v in enumerate(values)
    ]
    merged, problems, _ = merge_layers(layers)
    assert problems == []
    assert _get(merged.tree, key) == values[-1]
    trail = merged.trails[key.parts]
    assert trail[-1].origin == f"profiles/l{count - 1}.toml"
    assert len(trail) == count + (key.default is not None)


@settings(deadline=None)
@given(file_trees(), file_trees())
def test_tables_deep_merge_keys_from_both_layers(low: dict[str, Any], high: dict[str, Any]) -> None:
    merged, _, _ = merge_layers([_file_layer("low", low), _file_layer("high", high)])
    for section in set(low) | set(high):
        expected = {**low.get(section, {}), **high.get(section, {})}
        assert merged.tree[section] == expected


def _spec_value(spec: EngineSpec, key: Key) -> Any:
    holder: Any = {"pool": spec.pool, "monitoring": spec.monitoring}.get(key.section)
    if key.path == "database.echo":
        return spec.echo
    return getattr(holder, key.name)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-12)
    return bool(a == b)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_env_beats_files_and_set_beats_env_for_every_scalar_key(data: st.DataObject) -> None:
    key, (in_file, in_env, in_set) = data.draw(keyed_values(3))
    assert key.env is not None
    layers = [_file_layer("p", _tree_for(key, in_file))]
    environ = {key.env: _env_text(key, in_env)}

    only_file = compile_layers("p", layers, {}, ())
    assert _same(_spec_value(only_file.spec, key), in_file)

    with_env = compile_layers("p", layers, environ, ())
    assert _same(_spec_value(with_env.spec, key), in_env)
    assert with_env.spec.origin_of(key.path) == Origin(
        f"env {key.env}", ("profiles/p.toml", *(("default",) if key.default is not None else ()))
    )

    with_set = compile_layers("p", layers, environ, (f"{key.path}={_set_text(in_set)}",))
    assert _same(_spec_value(with_set.spec, key), in_set)
    assert with_set.spec.origin_of(key.path).origin == f"--set {key.path}"  # type: ignore[union-attr]


# ---------------------------------------------------------------- spec round trip

_text = st.text(max_size=12)
_secrets = st.builds(
    Secret,
    source=st.sampled_from(["env", "file", "encrypted", "literal"]),
    ref=_text,
    key_path=st.sampled_from(["database.password", "encryption.key"]),
    part=st.one_of(st.none(), st.just("password")),
)
_databases = st.builds(
    DatabaseSpec,
    name=_text,
    user=_text,
    host=st.one_of(st.none(), _text),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    password=st.one_of(st.none(), _secrets),
    options=st.lists(st.tuples(_text, _text), max_size=4).map(tuple),
    pgbouncer=st.booleans(),
)
_pools = st.builds(
    PoolSpec,
    enabled=st.booleans(),
    size=st.integers(1, 1000),
    max_overflow=st.integers(-1, 1000),
    timeout=st.floats(min_value=0.001, max_value=1e6),
    recycle=st.integers(-1, 10**6),
    pre_ping=st.booleans(),
    use_lifo=st.booleans(),
)


@st.composite
def specs(draw: st.DrawFn) -> EngineSpec:
    database = draw(st.one_of(st.none(), _databases))
    sqlite = None if database is not None else SqliteSpec(draw(_text))
    pool = draw(_pools)
    if not pool.enabled:  # NullPool serializes pre_ping only; the rest is Letta's default
        pool = PoolSpec(enabled=False, pre_ping=pool.pre_ping)
    spec = EngineSpec(
        engine="postgresql" if database else "sqlite",
        url=render_url(database, sqlite),
        profile=draw(st.one_of(st.none(), _text)),
        database=database,
        sqlite=sqlite,
        pool=pool,
        echo=draw(st.booleans()),
        monitoring=draw(st.builds(MonitoringSpec, st.booleans(), st.integers(1, 3600))),
        encryption=EncryptionSpec(draw(st.one_of(st.none(), _secrets))),
        sources=tuple(draw(st.lists(_text, max_size=4))),
        provenance=tuple(
            draw(
                st.dictionaries(
                    _text, st.builds(Origin, _text, st.lists(_text, max_size=3).map(tuple))
                )
            ).items()
        ),
    )
    import attrs

    return attrs.evolve(spec, fingerprint=fingerprint_of(spec))


@settings(max_examples=300, deadline=None)  # the first builds the cattrs converter
@given(specs())
def test_spec_survives_unstructure_json_structure(spec: EngineSpec) -> None:
    data = json.loads(json.dumps(spec_to_dict(spec)))
    back = structure_spec(data)
    assert back == spec
    assert spec_to_dict(back) == spec_to_dict(spec)
    assert fingerprint_of(back) == spec.fingerprint


# ---------------------------------------------------------------- determinism


@settings(max_examples=50, deadline=None)
@given(file_trees(), st.dictionaries(st.sampled_from(["LETTA_PG_POOL_SIZE"]), st.just("7")))
def test_same_inputs_give_the_same_bytes(tree: dict[str, Any], environ: dict[str, str]) -> None:
    first = compile_layers("p", [_file_layer("p", tree)], environ, ())
    second = compile_layers("p", [_file_layer("p", tree)], dict(environ), ())
    assert json.dumps(spec_to_dict(first.spec)) == json.dumps(spec_to_dict(second.spec))
    assert first.spec.fingerprint == second.spec.fingerprint
    renamed = compile_layers("q", [_file_layer("q", tree)], environ, ())
    assert renamed.spec.fingerprint == first.spec.fingerprint  # names and sources not hashed


def _compile_in_process(case: Path, env: dict[str, str]) -> str:
    out, err = io.StringIO(), io.StringIO()
    cwd = Path.cwd()
    os.chdir(case)
    try:
        code = main(["compile", "--profile", "prod"], environ=env, stdout=out, stderr=err)
    finally:
        os.chdir(cwd)
    assert code == 0, err.getvalue()
    return out.getvalue()


RUN_CLI = "from dbprofile.cli import run; run()"


def test_compile_output_is_identical_across_runs_and_hash_seeds(tmp_path: Path) -> None:
    case = VALID / "set_values_typed_by_schema"
    env = {"LETTA_PG_POOL_SIZE": "40", "LETTA_PG_PASSWORD": "x", "LETTA_POOL_USE_LIFO": "off"}
    in_process = {_compile_in_process(case, env) for _ in range(3)}
    assert len(in_process) == 1
    repo = Path(__file__).resolve().parents[2]
    outputs = set()
    for seed in ("1", "2", "random"):
        result = subprocess.run(
            [sys.executable, "-c", RUN_CLI, "compile", "--profile", "prod"],
            cwd=case,
            env={**env, "PYTHONHASHSEED": seed, "PYTHONPATH": str(repo)},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        outputs.add(result.stdout)
    assert outputs == in_process


# ---------------------------------------------------------------- display URL vs SQLAlchemy

_url_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=16)


@settings(max_examples=500, deadline=None)  # the first example imports SQLAlchemy
@given(
    user=_url_text,
    host=st.one_of(
        st.none(),
        _url_text,
        st.sampled_from(["::1", "2001:db8::5", "/run/postgresql", "db.internal", "10.0.0.1"]),
    ),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    name=_url_text,
    options=st.lists(
        st.tuples(st.sampled_from(["sslmode", "host", "application_name", "a b&c"]), _url_text),
        max_size=4,
    ),
    has_password=st.booleans(),
)
def test_display_url_is_exactly_sqlalchemys_rendering(
    user: str,
    host: str | None,
    port: int | None,
    name: str,
    options: list[tuple[str, str]],
    has_password: bool,
) -> None:
    from sqlalchemy.engine import URL

    password = Secret("env", "PGPASS", "database.password") if has_password else None
    db = DatabaseSpec(
        name=name, user=user, host=host, port=port, password=password, options=tuple(options)
    )
    expected = URL.create(
        **database_url(db, "p@ss:w/rd" if has_password else None).create_args()
    ).render_as_string()
    assert render_url(db) == expected
