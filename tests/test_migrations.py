"""Migrations through the compiled profile: examples/alembic on real SQLite and PostgreSQL."""

from __future__ import annotations

import io
import logging
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbprofile.cli import main
from tests.pg import free_port

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "alembic"
REPO = EXAMPLE.parents[1]


@pytest.fixture(autouse=True)
def isolated_logging() -> Iterator[None]:
    """env.py runs logging.config.fileConfig in-process: put logging and sys.path back."""
    manager = logging.Logger.manager
    saved = {
        name: (lg.level, list(lg.handlers), lg.disabled, lg.propagate)
        for name, lg in manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    root = logging.getLogger()
    root_state = (root.level, list(root.handlers))
    path = list(sys.path)
    yield
    for name, lg in manager.loggerDict.items():
        if isinstance(lg, logging.Logger):
            level, handlers, disabled, propagate = saved.get(
                name, (logging.NOTSET, [], False, True)
            )
            lg.setLevel(level)
            lg.handlers[:] = handlers
            lg.disabled = disabled
            lg.propagate = propagate
    root.setLevel(root_state[0])
    root.handlers[:] = root_state[1]
    sys.path[:] = path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of examples/alembic, made the working directory."""
    dest = tmp_path / "project"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("build", "__pycache__"))
    monkeypatch.chdir(dest)
    return dest


def migrate(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["migrate", *argv], environ=environ or {}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def sqlite_tables(path: Path) -> dict[str, list[str]]:
    with sqlite3.connect(path) as conn:
        names = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not r[0].startswith("sqlite_")
        ]
        return {n: [c[1] for c in conn.execute(f'PRAGMA table_info("{n}")')] for n in names}


def pg_tables(pg: Any, database: str) -> dict[str, list[str]]:
    rows = pg.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
        database=database,
    )
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    """Exit 1 and a single ``error:`` line (besides the ``migrate:`` progress line)."""
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# ------------------------------------------------------------------------ SQLite


def test_example_upgrades_to_head_and_downgrades_to_base_on_sqlite(project: Path) -> None:
    db = project / "build" / "example.db"
    code, _, err = migrate("--profile", "local", "upgrade", "head")
    assert code == 0, err
    assert "migrate: upgrade on sqlite:///build/example.db (profile local)" in err
    assert sqlite_tables(db) == {
        "alembic_version": ["version_num"],
        "notes": ["id", "title", "created_at", "body"],
    }

    code, out, err = migrate("--profile", "local", "current")
    assert (code, out.strip()) == (0, "0002 (head)"), err

    # The models and the migrations agree.
    code, out, err = migrate("--profile", "local", "check")
    assert code == 0, err
    assert "No new upgrade operations detected" in out

    code, _, err = migrate("--profile", "local", "downgrade", "base")
    assert code == 0, err
    assert sqlite_tables(db) == {"alembic_version": ["version_num"]}


def test_offline_sql_goes_to_stdout(project: Path) -> None:
    code, out, err = migrate("--profile", "local", "upgrade", "head", "--sql")
    assert code == 0, err
    assert "CREATE TABLE notes" in out
    assert "ALTER TABLE notes ADD COLUMN body TEXT" in out
    assert not (project / "build" / "example.db").exists()


def test_plain_alembic_uses_the_profile_named_by_x_argument(project: Path) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(project / "alembic.ini"), cmd_opts=_x_opts(["profile=local"]))
    command.upgrade(config, "head")
    assert "notes" in sqlite_tables(project / "build" / "example.db")


def _x_opts(x: list[str]) -> Any:
    import argparse

    return argparse.Namespace(x=x)


def test_an_unknown_revision_is_one_line(project: Path) -> None:
    code, _, err = migrate("--profile", "local", "downgrade", "nope")
    assert_one_line_error(code, err, "migrate: downgrade:", "nope")


def test_a_failing_migration_is_one_line_without_traceback(project: Path) -> None:
    broken = project / "migrations" / "versions" / "0003_broken.py"
    broken.write_text(
        '"""broken"""\n'
        "from alembic import op\n"
        'revision = "0003"\n'
        'down_revision = "0002"\n'
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        "def upgrade():\n"
        '    op.execute("INSERT INTO no_such_table VALUES (1)")\n\n\n'
        "def downgrade():\n"
        "    pass\n"
    )
    code, _, err = migrate("--profile", "local", "upgrade", "head")
    line = assert_one_line_error(code, err, "migrate: upgrade failed:", "no such table")
    assert "[SQL" not in line
    # Revisions before the failing one stay applied.
    code, out, _ = migrate("--profile", "local", "current")
    assert out.strip() == "0002"


def test_traceback_flag_shows_the_traceback(project: Path) -> None:
    from alembic.util import CommandError

    with pytest.raises(CommandError):
        main(
            ["--traceback", "migrate", "--profile", "local", "downgrade", "nope"],
            environ={},
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )


def test_without_alembic_ini_it_says_where_it_looked(project: Path) -> None:
    (project / "alembic.ini").unlink()
    code, _, err = migrate("--profile", "local", "upgrade", "head")
    assert_one_line_error(code, err, "alembic.ini: does not exist in ", "-c/--config")


def test_an_alembic_ini_that_is_not_a_file_is_one_line(project: Path) -> None:
    import os

    (project / "alembic.ini").unlink()
    os.mkfifo(project / "alembic.ini")  # reading it would wait for a writer for ever
    code, _, err = migrate("--profile", "local", "upgrade", "head")
    line = assert_one_line_error(code, err, "alembic.ini: not a regular file")
    assert "does not exist" not in line


def test_config_option_points_at_another_directory(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project.parent)
    code, _, err = migrate(
        "--profile",
        "local",
        "--profiles-dir",
        "project/profiles",
        "-c",
        "project/alembic.ini",
        "upgrade",
        "head",
    )
    assert code == 0, err
    assert (project.parent / "build" / "example.db").exists()  # relative to the cwd


def test_without_an_alembic_command_it_is_a_usage_error(project: Path) -> None:
    code, _, err = migrate("--profile", "local")
    assert code == 2
    assert err.startswith("usage: migrate: give an alembic command")


def test_an_unknown_alembic_command_is_a_usage_error(project: Path) -> None:
    code, _, err = migrate("--profile", "local", "upgradee", "head")
    assert code == 2
    assert "invalid choice: 'upgradee'" in err


def test_migrate_help_describes_the_command() -> None:
    code, out, _ = migrate("--help")
    assert code == 0
    for needle in ("ALEMBIC_ARGS", "--profile", "-c FILE, --config FILE", "upgrade head"):
        assert needle in out


def test_the_console_script_prints_one_line_on_failure(project: Path) -> None:
    exe = Path(sys.executable).with_name("dbprofile")
    proc = subprocess.run(
        [str(exe), "migrate", "--profile", "local", "downgrade", "nope"],
        capture_output=True,
        text=True,
        check=False,
        cwd=project,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "error: migrate: downgrade: Can't locate revision identified by 'nope'" in proc.stderr


# -------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_example_upgrades_and_downgrades_on_postgresql_with_sslmode_in_the_url(
    pg: Any, project: Path
) -> None:
    # Letta's env-only configuration: one LETTA_PG_URI with an SSL option, which Letta's
    # pg8000 migrations reject (issue #3219). Driverless, as Letta users write it.
    db = pg.create_database("example_env")
    uri = pg.url(db).replace("postgresql+psycopg://", "postgresql://") + "?sslmode=disable"
    environ = {"LETTA_PG_URI": uri}
    code, _, err = migrate("upgrade", "head", environ=environ)
    assert code == 0, err
    assert pg.password not in err
    assert pg_tables(pg, db) == {
        "alembic_version": ["version_num"],
        "notes": ["id", "title", "created_at", "body"],
    }
    index = pg.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'notes'", database=db)
    assert ("ix_notes_title",) in index

    code, out, err = migrate("current", environ=environ)
    assert (code, out.strip()) == (0, "0002 (head)"), err
    code, out, err = migrate("check", environ=environ)
    assert code == 0, err

    code, _, err = migrate("downgrade", "base", environ=environ)
    assert code == 0, err
    assert pg_tables(pg, db) == {"alembic_version": ["version_num"]}


PASSWORD = "s3cr%t:/@#word"


@pytest.fixture
def example_role(pg: Any) -> dict[str, str]:
    """The example's postgres profile: role 'example' with an awkward password."""
    pg.create_role("example", PASSWORD)
    pg.create_database("example", owner="example")
    return {
        "LETTA_PG_PORT": str(pg.port),
        "LETTA_PG_PASSWORD": PASSWORD,
    }


@pytest.mark.postgres
def test_the_postgres_profile_resolves_its_password_and_never_prints_it(
    pg: Any,
    project: Path,
    example_role: dict[str, str],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        code, out, err = migrate("--profile", "postgres", "upgrade", "head", environ=example_role)
        assert code == 0, err
        # alembic prints the URL itself here ("Current revision(s) for ...").
        code3, out3, err3 = migrate(
            "--profile", "postgres", "current", "--verbose", environ=example_role
        )
        assert code3 == 0, err3
        assert "Current revision(s) for postgresql+psycopg://example:***@" in out3
        code2, out2, err2 = migrate(
            "--profile", "postgres", "downgrade", "base", environ=example_role
        )
        assert code2 == 0, err2
    captured = capfd.readouterr()
    assert "migrate: upgrade on postgresql+psycopg://example:***@127.0.0.1" in err
    assert "sslmode=disable" in err
    everything = out + err + out2 + err2 + out3 + err3 + captured.out + captured.err + caplog.text
    assert "***" in everything
    for form in (PASSWORD, "s3cr%25t", "s3cr"):
        assert form not in everything


@pytest.mark.postgres
def test_a_wrong_password_is_one_line_naming_what_to_check(
    pg: Any, project: Path, example_role: dict[str, str]
) -> None:
    environ = {**example_role, "LETTA_PG_PASSWORD": "wrong-" + PASSWORD}
    code, _, err = migrate("--profile", "postgres", "upgrade", "head", environ=environ)
    line = assert_one_line_error(
        code,
        err,
        "migrate: upgrade failed: cannot connect: authentication failed: connection to server",
        "(postgresql+psycopg://example:***@127.0.0.1:",
    )
    assert "LETTA_PG_PASSWORD" in line
    assert "s3cr" not in err


def test_nothing_listening_is_one_line_naming_host_and_port(project: Path) -> None:
    environ = {"LETTA_PG_PORT": str(free_port()), "LETTA_PG_PASSWORD": PASSWORD}
    code, _, err = migrate("--profile", "postgres", "upgrade", "head", environ=environ)
    line = assert_one_line_error(
        code,
        err,
        "cannot connect: nothing listening",
        "check database.host (LETTA_PG_HOST), database.port (LETTA_PG_PORT)",
    )
    assert "s3cr" not in err
    assert "Connection refused" in line or "connection refused" in line.lower()


@pytest.mark.postgres
def test_a_failing_migration_on_postgresql_names_the_server_error_and_rolls_back(
    pg: Any, project: Path, example_role: dict[str, str]
) -> None:
    (project / "migrations" / "versions" / "0003_broken.py").write_text(
        '"""broken"""\n'
        "from alembic import op\n"
        'revision = "0003"\n'
        'down_revision = "0002"\n'
        "branch_labels = None\n"
        "depends_on = None\n\n\n"
        "def upgrade():\n"
        '    op.execute("CREATE TABLE half_done (id int)")\n'
        '    op.execute("INSERT INTO no_such_table VALUES (1)")\n\n\n'
        "def downgrade():\n"
        "    pass\n"
    )
    code, _, err = migrate("--profile", "postgres", "upgrade", "head", environ=example_role)
    assert_one_line_error(
        code,
        err,
        'migrate: upgrade failed: UndefinedTable: relation "no_such_table" does not exist',
    )
    assert "LINE 1" not in err
    # Transactional DDL, one transaction per run (alembic's default): nothing is left
    # behind, not even the revisions before the failing one.
    assert pg_tables(pg, "example") == {}
    assert migrate("--profile", "postgres", "current", environ=example_role)[1].strip() == ""


def test_a_missing_password_variable_is_one_line(project: Path) -> None:
    code, _, err = migrate("--profile", "postgres", "upgrade", "head", environ={})
    assert_one_line_error(code, err, "LETTA_PG_PASSWORD")


def test_offline_sql_for_postgresql_needs_no_secret(project: Path) -> None:
    code, out, err = migrate("--profile", "postgres", "upgrade", "head", "--sql", environ={})
    assert code == 0, err
    assert "CREATE TABLE notes" in out
    assert "CREATE INDEX ix_notes_title ON notes (title)" in out


def test_run_migrations_helper_builds_psycopg_urls_with_nullpool() -> None:
    from sqlalchemy.pool import NullPool

    from dbprofile.migrations import migration_engine, migration_url
    from dbprofile.spec import DatabaseSpec, EngineSpec, Secret

    spec = EngineSpec(
        engine="postgresql",
        url="(display)",
        database=DatabaseSpec(
            name="app",
            user="u",
            host="db",
            port=5433,
            password=Secret("env", "PW", "database.password"),
            options=(("sslmode", "require"), ("target_session_attrs", "read-write")),
        ),
    )
    url = migration_url(spec, environ={"PW": PASSWORD})
    assert url.drivername == "postgresql+psycopg"
    assert url.password == PASSWORD
    assert str(url) == (
        "postgresql+psycopg://u:***@db:5433/app?sslmode=require&target_session_attrs=read-write"
    )
    engine = migration_engine(spec, environ={"PW": PASSWORD})
    assert isinstance(engine.pool, NullPool)
    assert PASSWORD not in repr(engine)
    engine.dispose()
    assert migration_url(spec, environ={}, resolve=False).password is None


def test_the_migration_engine_leaves_sqlite_foreign_keys_off(tmp_path: Path) -> None:
    # Batch mode rebuilds tables (DROP + rename); with foreign_keys=ON, dropping a parent
    # table would cascade-delete its children's rows.
    import sqlalchemy as sa

    from dbprofile.migrations import migration_engine
    from dbprofile.spec import EngineSpec, SqliteSpec

    path = tmp_path / "sub" / "app.db"
    spec = EngineSpec(engine="sqlite", url=f"sqlite:///{path}", sqlite=SqliteSpec(str(path)))
    engine = migration_engine(spec, environ={})
    with engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 0
    engine.dispose()
    assert path.parent.is_dir()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("connection failed: password=hunter22 host=db", "connection failed: password=*** host=db"),
        ("bad url postgresql://u:hunter22@db/x", "bad url postgresql://u:***@db/x"),
        ("quoted password = 'a b c' end", "quoted password = *** end"),
        ("the literal s3cr%t:/@#word leaked", "the literal *** leaked"),
    ],
)
def test_failure_messages_are_scrubbed_of_credentials(message: str, expected: str) -> None:
    from dbprofile.pgurl import scrub

    assert scrub(message, (PASSWORD,)) == expected
