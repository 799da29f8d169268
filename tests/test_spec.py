"""load_spec: compiled JSON back to an EngineSpec, with clear errors naming the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dbprofile import SpecError, load_spec
from dbprofile.spec import (
    SPEC_VERSION,
    DatabaseSpec,
    EngineSpec,
    PoolSpec,
    Secret,
    SqliteSpec,
    render_url,
    spec_to_dict,
    structure_spec,
)


def sample_spec() -> EngineSpec:
    db = DatabaseSpec(
        name="letta",
        user="letta",
        host="db",
        port=5432,
        password=Secret(source="file", ref="/run/secrets/pg", key_path="database.password"),
        options=(("sslmode", "require"), ("host", "a:5432"), ("host", "b:5432")),
        pgbouncer=True,
    )
    return EngineSpec(
        engine="postgresql",
        url=render_url(db),
        profile="prod",
        database=db,
        pool=PoolSpec(enabled=True, size=50, max_overflow=20, timeout=60.0, recycle=3600),
        sources=("defaults", "profiles/prod.yaml"),
    )


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "db.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_spec_round_trips_through_json(tmp_path: Path) -> None:
    spec = sample_spec()
    assert load_spec(write(tmp_path, spec_to_dict(spec))) == spec
    assert load_spec(spec_to_dict(spec)) == spec
    assert load_spec(str(write(tmp_path, spec_to_dict(spec)))) == spec


def test_a_toml_spec_as_compile_writes_it_loads_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from dbprofile.cli import main
    from dbprofile.compiler.pipeline import compile_profile

    shutil.copytree(Path(__file__).resolve().parents[1] / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    for name in ("dev", "test", "prod"):
        assert main(["compile", "-p", name, "--no-env", "-o", f"{name}.toml"], environ={}) == 0
        assert (tmp_path / f"{name}.toml").read_text(encoding="utf-8").startswith("version = 1")
        assert load_spec(f"{name}.toml") == compile_profile(name, environ=None)


def test_not_json_names_the_file_and_position(tmp_path: Path) -> None:
    path = write(tmp_path, '{"version": 1,\n  oops}')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}:2:3: not a spec: invalid JSON")


def test_json_that_is_not_an_object_is_not_a_spec(tmp_path: Path) -> None:
    path = write(tmp_path, "[1, 2]")
    with pytest.raises(SpecError, match="expected a JSON object, got a list"):
        load_spec(path)


def test_newer_format_version_is_a_clear_error(tmp_path: Path) -> None:
    data = spec_to_dict(sample_spec())
    data["version"] = SPEC_VERSION + 1
    path = write(tmp_path, data)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == (
        f"{path}: spec format version {SPEC_VERSION + 1} is newer than this dbprofile reads "
        f"(version {SPEC_VERSION}); upgrade dbprofile or compile with the same version"
    )


def test_object_without_version_is_not_a_dbprofile_spec(tmp_path: Path) -> None:
    path = write(tmp_path, {"url": "postgresql://x"})
    with pytest.raises(SpecError, match="no 'version' key"):
        load_spec(path)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    data = spec_to_dict(sample_spec())
    data["pool"]["sise"] = 3
    with pytest.raises(SpecError, match="sise"):
        load_spec(write(tmp_path, data))


def test_wrong_type_is_named(tmp_path: Path) -> None:
    data = spec_to_dict(sample_spec())
    data["pool"]["size"] = "many"
    with pytest.raises(SpecError, match=r"pool\.size: must be an integer"):
        load_spec(write(tmp_path, data))


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: does not exist"


def test_postgresql_spec_without_database_is_invalid(tmp_path: Path) -> None:
    data = spec_to_dict(sample_spec())
    data["database"] = None
    with pytest.raises(SpecError, match="'database' is null"):
        load_spec(write(tmp_path, data))


def test_load_spec_imports_no_yaml_jsonschema_compiler_or_sqlalchemy(tmp_path: Path) -> None:
    path = write(tmp_path, spec_to_dict(sample_spec()))
    code = (
        "import sys\n"
        "from dbprofile import load_spec\n"
        f"load_spec({str(path)!r})\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('yaml', 'ruamel', 'jsonschema', 'sqlalchemy', 'psycopg')"
        " or m.startswith('dbprofile.compiler')]\n"
        "print(sorted(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_runtime_never_imports_the_compiler() -> None:
    code = (
        "import sys\n"
        "import dbprofile.runtime.engines, dbprofile.runtime.diagnose, dbprofile.runtime.drivers\n"
        "import dbprofile.spec, dbprofile.runtime.resolve, dbprofile.runtime.sqlite\n"
        "import dbprofile.cli.runtime_cmds\n"
        "print(sorted(m for m in sys.modules if m.startswith('dbprofile.compiler')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def literal_and_encrypted_spec() -> EngineSpec:
    from attrs import evolve

    from dbprofile.spec import EncryptionSpec, MonitoringSpec, Origin

    base = sample_spec()
    assert base.database is not None
    db = evolve(
        base.database,
        password=Secret(source="encrypted", ref="enc:v1:abc:def", key_path="database.password"),
        port=None,
    )
    return evolve(
        base,
        database=db,
        encryption=EncryptionSpec(
            key=Secret(source="literal", ref="profiles/dev.toml:9", key_path="encryption.key")
        ),
        monitoring=MonitoringSpec(enabled=False, interval=5),
        provenance=(
            ("pool.size", Origin("profiles/prod.yaml:20", ("profiles/base.toml:3", "default"))),
            ("database.host", Origin("env LETTA_PG_HOST")),
        ),
        fingerprint="sha256:00",
        sqlite=SqliteSpec(path="~/.letta/sqlite.db"),
        echo=True,
    )


@pytest.mark.parametrize(
    "spec",
    [
        sample_spec(),
        literal_and_encrypted_spec(),
        EngineSpec(
            engine="sqlite",
            url="sqlite:///x",
            sqlite=__import__("dbprofile.spec").spec.SqliteSpec("x"),
        ),
    ],
)
def test_the_reader_reads_what_the_writer_writes(spec: EngineSpec) -> None:
    data = json.loads(json.dumps(spec_to_dict(spec)))
    assert structure_spec(data) == spec


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("pool", "size"), "5", "pool.size: must be an integer, got a string"),
        (("database", "port"), "5432", "database.port: must be an integer, got a string"),
        (("echo",), 0, "echo: must be true or false, got int"),
        (("pool", "sizes"), 5, "pool.sizes: unknown key"),
        (("database", "options"), [["a"]], "database.options[0]: must be a [name, value] pair"),
    ],
)
def test_a_wrong_value_is_an_error_naming_its_key_path(
    tmp_path: Path, path: tuple[str, ...], value: Any, message: str
) -> None:
    data = spec_to_dict(sample_spec())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, data))
    assert str(caught.value) == f"{write(tmp_path, data)}: not a valid spec: {message}"


def test_a_number_where_a_float_is_expected_is_read_as_a_float(tmp_path: Path) -> None:
    data = spec_to_dict(sample_spec())
    data["pool"]["timeout"] = 7
    assert load_spec(write(tmp_path, data)).pool.timeout == 7.0


def test_a_compiled_spec_loads_without_importing_cattrs(tmp_path: Path) -> None:
    path = write(tmp_path, spec_to_dict(literal_and_encrypted_spec()))
    code = (
        "import sys\n"
        "from dbprofile import load_spec\n"
        f"load_spec({str(path)!r})\n"
        "print('cattrs' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_the_reader_reads_compiler_output(tmp_path: Path) -> None:
    from dbprofile.compiler.pipeline import compile_profile

    environ = {
        "LETTA_PG_URI": "postgres://letta:pw@db:5432/letta?sslmode=require&application_name=x",
        "LETTA_PG_POOL_SIZE": "40",
        "LETTA_DISABLE_SQLALCHEMY_POOLING": "false",
        "LETTA_ENCRYPTION_KEY": "k",
    }
    spec = compile_profile(None, profiles_dir=tmp_path, environ=environ)
    data = json.loads(json.dumps(spec_to_dict(spec)))
    assert structure_spec(data) == spec
    assert load_spec(data).pool.size == 40
