"""Editor proof: the checked-in schema is what editors and third-party validators see.

- the shipped profiles and every golden valid profile file pass ``check-jsonschema``
  (a third-party validator that reads YAML and TOML), run as a separate process;
- the invalid golden cases whose fault the schema alone can see fail it;
- our small draft-07 interpreter (``validate.py``) agrees with ``jsonschema``'s
  ``Draft7Validator`` on every golden file and on generated trees;
- the schema uses only the keywords that interpreter implements, and is not stale.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from dbprofile.cli import main
from dbprofile.compiler.load import load_layer
from dbprofile.compiler.schema import build_schema, schema_text
from dbprofile.compiler.validate import SUPPORTED_KEYWORDS, validate_tree
from dbprofile.errors import ProblemsFound
from dbprofile.keys import KEYS, SECTIONS
from tests.compiler.golden import INVALID, VALID, profile_files

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "schema" / "dbprofile.schema.json"
SHIPPED = sorted((REPO / "profiles").iterdir())

# Invalid cases whose fault is visible to the schema alone (no merge, env or cross-field rule).
SCHEMA_DETECTABLE = (
    "extends_wrong_type",
    "many_problems_across_files_sorted",
    "options_enum_and_whole_number",
    "out_of_range_pool_values",
    "out_of_range_port",
    "secret_env_reference_bad_name",
    "secret_literal_next_to_other_errors_not_echoed",
    "secret_reference_extra_key",
    "secret_unknown_reference_kind",
    "secret_wrong_type_never_echoed",
    "unknown_key_did_you_mean",
    "unknown_key_without_suggestion",
    "unknown_section_did_you_mean",
    "wrong_type_boolean_for_integer",
    "wrong_type_fraction_for_integer",
    "wrong_type_option_value",
    "wrong_type_section_not_a_table",
    "wrong_type_string_for_boolean",
    "wrong_type_string_for_integer",
    "yaml_secret_both_forms_and_bad_session_attrs",
)


def _check_jsonschema(files: list[Path]) -> dict[str, Any]:
    exe = shutil.which("check-jsonschema", path=str(Path(__file__).parents[2] / ".venv" / "bin"))
    exe = exe or shutil.which("check-jsonschema")
    if exe is None:
        pytest.fail("check-jsonschema is not installed (it is in the dev extra)")
    result = subprocess.run(
        [exe, "--output-format", "json", "--schemafile", str(SCHEMA_FILE), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    report["returncode"] = result.returncode
    return report


def _failing(report: dict[str, Any]) -> set[str]:
    return {e["filename"] for e in report.get("errors", []) + report.get("parse_errors", [])}


def test_shipped_profiles_pass_check_jsonschema() -> None:
    assert {p.name for p in SHIPPED} >= {"base.toml", "dev.toml", "test.toml", "prod.yaml"}
    report = _check_jsonschema(SHIPPED)
    assert report["returncode"] == 0, report
    assert report["status"] == "ok"


def test_shipped_profiles_point_editors_at_the_schema() -> None:
    for path in SHIPPED:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        if path.suffix == ".toml":
            assert first == "#:schema ../schema/dbprofile.schema.json", path
        else:
            assert first == "# yaml-language-server: $schema=../schema/dbprofile.schema.json"


def _holds_keys(path: Path) -> bool:
    """A comment-only YAML file is a null document: dbprofile reads it as an empty
    profile, a JSON Schema validator sees null. Such files are left out here."""
    return bool(load_layer(path).tree) or path.suffix == ".toml"


def test_golden_valid_profile_files_pass_check_jsonschema() -> None:
    files = [f for f in profile_files(VALID) if _holds_keys(f)]
    assert len(files) >= 40
    report = _check_jsonschema(files)
    assert report["returncode"] == 0, report
    assert report["status"] == "ok"


def test_schema_detectable_invalid_cases_fail_check_jsonschema() -> None:
    by_case: dict[str, list[Path]] = {}
    for name in SCHEMA_DETECTABLE:
        by_case[name] = sorted((INVALID / name / "profiles").iterdir())
    report = _check_jsonschema([f for files in by_case.values() for f in files])
    failing = _failing(report)
    assert report["returncode"] == 1
    assert not report.get("parse_errors"), "these cases must fail the schema, not the parser"
    for name, files in by_case.items():
        assert any(str(f) in failing for f in files), f"check-jsonschema accepted {name}"


# ---------------------------------------------------------------- our validator vs jsonschema


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _golden_trees() -> list[tuple[str, Any]]:
    trees = []
    for kind in (VALID, INVALID):
        for path in profile_files(kind):
            try:
                tree = load_layer(path).tree
            except ProblemsFound:
                continue  # unparseable: no tree to judge
            trees.append((str(path.relative_to(kind.parent)), tree))
    return trees


def _agree(tree: Any) -> tuple[bool, bool]:
    ours = not validate_tree(tree)
    theirs = Draft7Validator(build_schema()).is_valid(tree)
    return ours, theirs


def test_our_validator_agrees_with_jsonschema_on_every_golden_file() -> None:
    trees = _golden_trees()
    assert len(trees) >= 80
    judged_invalid = 0
    for label, tree in trees:
        if not _finite(tree):
            # JSON has no inf or nan; jsonschema passes them where we refuse them on purpose
            assert validate_tree(tree), label
            continue
        ours, theirs = _agree(tree)
        assert ours == theirs, label
        judged_invalid += not ours
    assert judged_invalid >= len(SCHEMA_DETECTABLE)


def _scalar() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**40), max_value=2**40),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([0, 1, -1, -2, 65535, 65536, 0.0, 0.5, 2.0, "", "x", "5", "true"]),
        st.text(max_size=8),
    )


def _value_for(key_type: str) -> st.SearchStrategy[Any]:
    secret_ref = st.one_of(
        st.fixed_dictionaries({"env": st.sampled_from(["PGPASS", "LETTA_X", "1BAD", "a b", ""])}),
        st.fixed_dictionaries({"file": st.sampled_from(["/run/secrets/pg", ""])}),
        st.fixed_dictionaries({"env": st.just("A"), "file": st.just("/f")}),  # both: invalid
        st.dictionaries(st.sampled_from(["env", "file", "vault"]), _scalar(), max_size=2),
    )
    options = st.dictionaries(
        st.one_of(
            st.text(min_size=1, max_size=6),
            st.sampled_from(["sslmode", "target_session_attrs", "connect_timeout"]),
        ),
        st.one_of(
            st.text(max_size=6),
            st.lists(st.text(max_size=4), max_size=3),
            st.integers(),
            st.sampled_from(["require", "requir", "read-write", "10", "1234567", "ten", ""]),
        ),
        max_size=3,
    )
    if key_type == "secret":
        return st.one_of(st.text(max_size=10), secret_ref, _scalar())
    if key_type == "options":
        return st.one_of(options, _scalar())
    return _scalar()


@st.composite
def profile_trees(draw: st.DrawFn) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from([*SECTIONS, "databse"]), unique=True)):
        if draw(st.integers(0, 9)) == 0:
            tree[section] = draw(_scalar())  # a section that is not a table
            continue
        keys = [k for k in KEYS if k.section == section]
        chosen = draw(st.lists(st.sampled_from(keys), unique=True)) if keys else []
        body: dict[str, Any] = {}
        for key in chosen:
            body[key.name] = draw(_value_for(key.type))
        if draw(st.integers(0, 5)) == 0:
            body[draw(st.sampled_from(["sise", "max_overflw", "zzz"]))] = 1
        tree[section] = body
    if draw(st.booleans()):
        tree["extends"] = draw(
            st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=3), _scalar())
        )
    return tree


@settings(max_examples=400, deadline=None)
@given(profile_trees())
@pytest.mark.slow
def test_our_validator_agrees_with_jsonschema_on_generated_trees(tree: dict[str, Any]) -> None:
    ours, theirs = _agree(tree)
    assert ours == theirs


# ---------------------------------------------------------------- the schema itself


def _keywords(node: Any, found: set[str]) -> set[str]:
    """Every keyword used in a schema node (property names are not keywords)."""
    if not isinstance(node, dict):
        return found
    found.update(node)
    for sub in node.get("properties", {}).values():
        _keywords(sub, found)
    for key in ("additionalProperties", "items"):
        if isinstance(node.get(key), dict):
            _keywords(node[key], found)
    return found


def test_schema_uses_only_keywords_our_validator_implements() -> None:
    used = _keywords(build_schema(), set())
    assert used <= SUPPORTED_KEYWORDS, used - SUPPORTED_KEYWORDS
    assert {"enum", "minProperties", "maxProperties", "additionalProperties", "x-env"} <= used
    assert "oneOf" not in used  # editors word a failed oneOf as "not valid under any of ..."


def test_schema_is_valid_draft_07() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    Draft7Validator.check_schema(schema)


def test_schema_gives_every_key_a_description_default_and_env_name() -> None:
    schema = build_schema()
    for key in KEYS:
        node = schema["properties"][key.section]["properties"][key.name]
        assert node["description"], key.path
        if key.default is not None:
            assert node["default"] == key.default, key.path
        if key.env:
            assert node["x-env"] == key.env, key.path
    assert "required" not in schema  # a partial profile validates in an editor


def test_checked_in_schema_is_not_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text()
    monkeypatch.chdir(REPO)
    out, err = io.StringIO(), io.StringIO()
    assert main(["schema", "--check"], environ={}, stdout=out, stderr=err) == 0
    assert err.getvalue() == ""


def test_schema_check_fails_on_a_stale_copy(tmp_path: Path) -> None:
    stale = tmp_path / "schema.json"
    stale.write_text(schema_text().replace("Connections kept open", "Connections"))
    out, err = io.StringIO(), io.StringIO()
    code = main(["schema", "--check", "--file", str(stale)], environ={}, stdout=out, stderr=err)
    assert code == 1
    assert err.getvalue() == (f"{stale}: stale: regenerate it with `dbprofile schema > {stale}`\n")


def test_every_key_is_documented_for_editors_with_its_default_and_variable() -> None:
    schema = build_schema()
    for key in KEYS:
        node = schema["properties"][key.section]["properties"][key.name]
        assert node["title"] == key.path
        assert node["description"].startswith(key.description)
        for text, code in ((node["description"], "{}"), (node["markdownDescription"], "`{}`")):
            if key.default is not None:
                assert "Default: " + code.format(json.dumps(key.default)) in text, key.path
            if key.env:
                assert "Variable: " + code.format(key.env) in text, key.path


def test_secret_fields_take_exactly_one_reference_form_with_snippets() -> None:
    schema = build_schema()
    for key in KEYS:
        if key.type != "secret":
            continue
        node = schema["properties"][key.section]["properties"][key.name]
        assert node["type"] == ["string", "object"]
        assert set(node["properties"]) == {"env", "file"}
        assert all(p["description"] for p in node["properties"].values())
        assert node["additionalProperties"] is False
        assert node["minProperties"] == node["maxProperties"] == 1
        labels = [s["label"] for s in node["defaultSnippets"]]
        assert labels == ["{env: …}", "{file: …}"]
    validator = Draft7Validator(schema)
    for ok in ("literal", {"env": "PGPASS"}, {"file": "/run/secrets/pg"}):
        assert validator.is_valid({"database": {"password": ok}})
        assert not validate_tree({"database": {"password": ok}})
    for bad in ({}, {"env": "A", "file": "/f"}, {"vault": "x"}, 5):
        assert not validator.is_valid({"database": {"password": bad}})
        assert validate_tree({"database": {"password": bad}})


def test_options_spell_out_sslmode_session_attrs_and_connect_timeout() -> None:
    schema = build_schema()
    options = schema["properties"]["database"]["properties"]["options"]
    assert "require" in options["properties"]["sslmode"]["enum"]
    assert "read-write" in options["properties"]["target_session_attrs"]["enum"]
    assert options["additionalProperties"]  # other libpq parameters stay allowed
    messages = [
        e.message()
        for e in validate_tree({"database": {"options": {"sslmode": "requir", "x": "y"}}})
    ]
    assert messages == [
        "must be one of disable, allow, prefer, require, verify-ca or verify-full, got 'requir'"
    ]


def test_every_number_has_an_upper_bound() -> None:
    for key in KEYS:
        if key.type in ("integer", "number"):
            assert key.maximum is not None, key.path
