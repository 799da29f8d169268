"""Fuzz targets: the loaders, the environment layer, the --set parser, the URI parser and
the spec reader take any input and either succeed or raise their one clean error type.

A bounded number of examples per target runs in CI; ``scripts/fuzz`` runs many more
(``DBPROFILE_FUZZ_EXAMPLES``, default 100 here).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbprofile.compiler.load import load_layer
from dbprofile.compiler.overrides import env_layer, set_layer
from dbprofile.errors import Problem, ProblemsFound, SpecError
from dbprofile.keys import KEYS
from dbprofile.pgurl import UriError, parse_uri
from dbprofile.spec import spec_to_dict, structure_spec

EXAMPLES = int(os.environ.get("DBPROFILE_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Fragments a profile is made of, so random texts get past the first character.
TOML_BITS = [
    "[database]\n",
    "[pool]\n",
    "size = ",
    "uri = ",
    '"',
    "'",
    "[",
    "]",
    "{",
    "}",
    "=",
    ".",
    "\n",
    "1",
    "9" * 50,
    "true",
    "# c\n",
    "extends = ",
    ",",
    "\\",
    "\x00",
    "é",
]
YAML_BITS = [
    "database:\n",
    "pool:\n",
    "  ",
    "size: ",
    "- ",
    "&a ",
    "*a",
    "<<: ",
    "!!omap",
    "{",
    "}",
    "[",
    "]",
    ":",
    "\n",
    "'",
    '"',
    "1",
    "9" * 50,
    "\t",
    "\x07",
    "---\n",
]


def one_line_problems(exc: ProblemsFound) -> None:
    for problem in exc.problems:
        assert "\n" not in problem.render()


@FUZZ
@given(
    st.lists(st.sampled_from(TOML_BITS) | st.text(max_size=5), max_size=60),
    st.sampled_from([".toml", ".yaml"]),
)
def test_the_loader_takes_any_text(bits: list[str], suffix: str) -> None:
    text = "".join(bits)
    if suffix == ".yaml":
        text = text.replace("[database]\n", "database:\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"p{suffix}"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            load_layer(path)
        except ProblemsFound as exc:
            one_line_problems(exc)


@FUZZ
@given(st.lists(st.sampled_from(YAML_BITS) | st.text(max_size=5), max_size=60))
def test_the_yaml_loader_takes_any_text(bits: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.yaml"
        path.write_text("".join(bits), encoding="utf-8", errors="surrogateescape")
        try:
            load_layer(path)
        except ProblemsFound as exc:
            one_line_problems(exc)


ENV_NAMES = st.sampled_from([k.env for k in KEYS if k.env] + ["LETTA_PG_POOLSIZE", "letta_pg_uri"])


@FUZZ
@given(st.dictionaries(ENV_NAMES, st.text(max_size=80), max_size=8))
def test_the_environment_layer_takes_any_values(environ: dict[str, str]) -> None:
    _, problems, warnings = env_layer(environ)
    for problem in [*problems, *warnings]:
        assert isinstance(problem, Problem)
        assert "\n" not in problem.render()


@FUZZ
@given(st.lists(st.text(max_size=60), max_size=5))
def test_the_set_parser_takes_any_assignment(assignments: list[str]) -> None:
    _, problems = set_layer(assignments)
    assert all("\n" not in p.render() for p in problems)


URI_BITS = [
    "postgresql://",
    "postgres://",
    "sqlite:///",
    "u",
    ":",
    "@",
    "/",
    "?",
    "#",
    "&",
    "=",
    "[",
    "]",
    "::1",
    "%",
    "%2",
    "%zz",
    "h",
    "5432",
    "99999",
    ",",
    "password=x",
]


@FUZZ
@given(st.lists(st.sampled_from(URI_BITS) | st.text(max_size=4), max_size=20))
def test_the_uri_parser_takes_any_text(bits: list[str]) -> None:
    with contextlib.suppress(UriError):  # the one clean error; anything else fails
        parse_uri("".join(bits))


SPEC = {"version": 1, "engine": "sqlite", "url": "sqlite:///x", "sqlite": {"path": "x"}}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@FUZZ
@given(
    st.sampled_from(
        [
            "version",
            "engine",
            "url",
            "sqlite",
            "pool",
            "database",
            "monitoring",
            "encryption",
            "provenance",
            "extra",
            "sources",
            "echo",
            "junk",
        ]
    ),
    json_values,
)
def test_the_spec_reader_takes_any_data(key: str, value: Any) -> None:
    data = {**SPEC, key: value}
    try:
        spec = structure_spec(json.loads(json.dumps(data)))
    except SpecError:  # the one clean error; anything else fails
        return
    assert structure_spec(spec_to_dict(spec)) == spec
