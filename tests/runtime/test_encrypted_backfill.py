"""encrypt_column on SQLite: every row, no OFFSET, resumable, idempotent, dry run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbprofile import crypto
from dbprofile.errors import ArgumentError, SecretError
from dbprofile.runtime.encrypted import encrypt_column
from tests.test_crypto import reference_letta_decrypt

KEY = "backfill-key"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with eng.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE providers (id INTEGER PRIMARY KEY, api_key TEXT, api_key_enc TEXT)"
            )
        )
    yield eng
    eng.dispose()


def fill(engine: sa.Engine, rows: list[tuple[int, str | None, str | None]]) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO providers VALUES (:i, :s, :t)"),
            [{"i": i, "s": s, "t": t} for i, s, t in rows],
        )


def table_rows(engine: sa.Engine) -> list[tuple[int, str | None, str | None]]:
    with engine.connect() as conn:
        result = conn.execute(sa.text("SELECT id, api_key, api_key_enc FROM providers ORDER BY id"))
        return [(r[0], r[1], r[2]) for r in result]


def test_every_row_is_encrypted_with_sparse_ids_and_small_batches(engine: sa.Engine) -> None:
    ids = [i * 7 + (i % 3) for i in range(1, 251)]
    fill(engine, [(i, f"sk-{i}", None) for i in ids])
    result = encrypt_column(engine, "providers", "api_key", "api_key_enc", key=KEY, batch=7)
    assert (result.total, result.from_source, result.unreadable) == (250, 250, 0)
    for i, source, target in table_rows(engine):
        assert target is not None
        assert reference_letta_decrypt(target, KEY) == source == f"sk-{i}"


def test_rerun_is_a_no_op(engine: sa.Engine) -> None:
    fill(engine, [(i, f"sk-{i}", None) for i in range(1, 41)])
    encrypt_column(engine, "providers", "api_key", "api_key_enc", key=KEY, batch=10)
    before = table_rows(engine)
    again = encrypt_column(engine, "providers", "api_key", "api_key_enc", key=KEY, batch=10)
    assert (again.changed, again.already_encrypted) == (0, 40)
    assert table_rows(engine) == before


def test_dry_run_counts_and_changes_nothing(engine: sa.Engine) -> None:
    fill(
        engine,
        [
            (1, "sk-1", None),
            (2, "sk-2", ""),
            (3, None, None),
            (4, "sk-4", "legacy-plain"),
            (5, "sk-5", crypto.letta_encrypt("sk-5", KEY)),
        ],
    )
    before = table_rows(engine)
    result = encrypt_column(
        engine, "providers", "api_key", "api_key_enc", key=KEY, batch=2, dry_run=True
    )
    assert table_rows(engine) == before
    assert (result.from_source, result.legacy_plaintext) == (2, 1)
    assert (result.already_encrypted, result.nothing_to_encrypt) == (1, 1)
    assert result.summary().startswith("would encrypt 3 of 5 rows")


def test_legacy_plaintext_in_the_target_is_encrypted_in_place(engine: sa.Engine) -> None:
    fill(engine, [(1, "old-source", "newer-target-plain")])
    encrypt_column(engine, "providers", "api_key", "api_key_enc", key=KEY)
    ((_, _, target),) = table_rows(engine)
    assert reference_letta_decrypt(target or "", KEY) == "newer-target-plain"


def test_same_source_and_target_encrypts_in_place(engine: sa.Engine) -> None:
    fill(engine, [(1, "sk-1", None), (2, None, None)])
    result = encrypt_column(engine, "providers", "api_key", "api_key", key=KEY)
    assert (result.legacy_plaintext, result.nothing_to_encrypt) == (1, 1)
    rows = table_rows(engine)
    assert reference_letta_decrypt(rows[0][1] or "", KEY) == "sk-1"
    assert rows[1][1] is None


def test_values_under_another_key_are_reported_and_left_alone(engine: sa.Engine) -> None:
    foreign = crypto.letta_encrypt("sk-x", "some-other-key")
    fill(engine, [(1, "sk-1", None), (2, "sk-x", foreign)])
    result = encrypt_column(engine, "providers", "api_key", "api_key_enc", key=KEY)
    assert (result.from_source, result.unreadable, result.unreadable_keys) == (1, 1, [(2,)])
    assert "do not open" in result.summary()
    assert foreign not in result.summary()
    assert table_rows(engine)[1][2] == foreign


def test_composite_primary_key(tmp_path: Path) -> None:
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with eng.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (a INT, b TEXT, s TEXT, e TEXT, PRIMARY KEY (a, b))"))
        conn.execute(
            sa.text("INSERT INTO t VALUES (:a, :b, :s, NULL)"),
            [{"a": a, "b": b, "s": f"{a}{b}"} for a in range(5) for b in "xyz"],
        )
    result = encrypt_column(eng, "t", "s", "e", key=KEY, batch=4)
    assert result.from_source == 15
    with eng.connect() as conn:
        for s, e in conn.execute(sa.text("SELECT s, e FROM t")):
            assert reference_letta_decrypt(e, KEY) == s
    eng.dispose()


def test_progress_reports_each_batch(engine: sa.Engine) -> None:
    fill(engine, [(i, "v", None) for i in range(1, 11)])
    seen: list[tuple[int, int]] = []
    encrypt_column(
        engine,
        "providers",
        "api_key",
        "api_key_enc",
        key=KEY,
        batch=4,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(4, 10), (8, 10), (10, 10)]


@pytest.mark.parametrize(
    ("table", "source", "target", "message"),
    [
        ("nope", "a", "b", "table 'nope' does not exist"),
        ("providers", "nope", "api_key_enc", "no column 'nope'"),
        ("providers", "api_key", "nope", "no column 'nope'"),
    ],
)
def test_unknown_names_are_usage_errors(
    engine: sa.Engine, table: str, source: str, target: str, message: str
) -> None:
    with pytest.raises(ArgumentError, match=message):
        encrypt_column(engine, table, source, target, key=KEY)


def test_table_without_primary_key_is_refused(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE nopk (s TEXT, e TEXT)"))
    with pytest.raises(ArgumentError, match="no primary key"):
        encrypt_column(engine, "nopk", "s", "e", key=KEY)


def test_no_key_is_an_error(engine: sa.Engine) -> None:
    with pytest.raises(SecretError, match="no encryption key"):
        encrypt_column(engine, "providers", "api_key", "api_key_enc", key="")


@pytest.mark.parametrize(
    ("ddl", "message"),
    [
        ("id INTEGER PRIMARY KEY, a TEXT, b INTEGER", "the target column 'b' is INTEGER, not text"),
        ("id INTEGER PRIMARY KEY, a BLOB, b TEXT", "the source column 'a' is BLOB, not text"),
    ],
)
def test_a_column_that_is_not_text_is_refused_before_any_row(
    tmp_path: Path, ddl: str, message: str
) -> None:
    import sqlalchemy as sa

    from dbprofile.runtime.encrypted import encrypt_column

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE t ({ddl})")
        conn.exec_driver_sql("INSERT INTO t (id, a) VALUES (1, x'ff00')")
    with pytest.raises(ArgumentError, match=message):
        encrypt_column(engine, "t", "a", "b", key="k")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT b FROM t").scalar() is None
    engine.dispose()
