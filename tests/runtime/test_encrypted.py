"""EncryptedText: Letta's format on disk, dual read of legacy plaintext, loud failures."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from dbprofile import crypto
from dbprofile.errors import DecryptionError, SecretError
from dbprofile.runtime.encrypted import EncryptedText
from tests.test_crypto import LETTA_VECTORS, reference_letta_decrypt

KEY = "column-key-for-tests"


def make_table(column_type: sa.types.TypeEngine[str]) -> tuple[sa.MetaData, sa.Table]:
    meta = sa.MetaData()
    table = sa.Table(
        "providers",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("api_key", column_type),
    )
    return meta, table


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield eng
    eng.dispose()


def raw_values(engine: sa.Engine) -> list[str | None]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT api_key FROM providers ORDER BY id")).scalars())


def test_writes_letta_format_that_an_independent_implementation_reads(engine: sa.Engine) -> None:
    meta, table = make_table(EncryptedText(KEY))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": 1, "api_key": "sk-abc"}, {"id": 2, "api_key": ""}])
    stored = raw_values(engine)
    assert all(v is not None and v != "sk-abc" for v in stored)
    assert [reference_letta_decrypt(v, KEY) for v in stored if v] == ["sk-abc", ""]


@pytest.mark.parametrize(
    ("key", "plaintext", "stored"), [(v[0], v[1], v[4]) for v in LETTA_VECTORS]
)
def test_letta_vectors_read_through_the_column(
    engine: sa.Engine, key: str, plaintext: str, stored: str
) -> None:
    meta, _ = make_table(sa.Text())
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO providers VALUES (1, :v)"), {"v": stored})
    _, table = make_table(EncryptedText(key))
    with engine.connect() as conn:
        assert conn.execute(sa.select(table.c.api_key)).scalar_one() == plaintext


def test_legacy_plaintext_and_null_read_back_unchanged(engine: sa.Engine) -> None:
    meta, plain = make_table(sa.Text())
    meta.create_all(engine)
    legacy = ["sk-proj-legacy", "pass word", None, "", "c2hvcnQ="]
    with engine.begin() as conn:
        conn.execute(plain.insert(), [{"id": i, "api_key": v} for i, v in enumerate(legacy)])
    _, table = make_table(EncryptedText(KEY))
    with engine.connect() as conn:
        got = list(conn.execute(sa.select(table.c.api_key).order_by(table.c.id)).scalars())
    assert got == legacy


def test_wrong_key_is_an_error_never_the_ciphertext(engine: sa.Engine) -> None:
    meta, table = make_table(EncryptedText(KEY))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), {"id": 1, "api_key": "sk-abc"})
    _, wrong = make_table(EncryptedText("not-the-key"))
    with engine.connect() as conn, pytest.raises(DecryptionError, match="wrong encryption key"):
        conn.execute(sa.select(wrong.c.api_key)).scalar_one()


def test_damaged_value_is_an_error(engine: sa.Engine) -> None:
    meta, table = make_table(EncryptedText(KEY))
    meta.create_all(engine)
    stored = crypto.letta_encrypt("sk-abc", KEY)
    raw = bytearray(base64.b64decode(stored))
    raw[-1] ^= 1
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO providers VALUES (1, :v)"), {"v": base64.b64encode(raw).decode()}
        )
    with engine.connect() as conn, pytest.raises(DecryptionError):
        conn.execute(sa.select(table.c.api_key)).scalar_one()


def test_key_is_read_from_the_environment_when_first_needed(engine: sa.Engine) -> None:
    env: dict[str, str] = {}
    column = EncryptedText(environ=env)
    meta, table = make_table(column)
    meta.create_all(engine)
    env["LETTA_ENCRYPTION_KEY"] = KEY
    with engine.begin() as conn:
        conn.execute(table.insert(), {"id": 1, "api_key": "v"})
    assert reference_letta_decrypt(raw_values(engine)[0] or "", KEY) == "v"


@pytest.mark.parametrize("unset", [None, "", "None"])
def test_writing_without_a_key_is_refused_not_stored_in_plaintext(
    engine: sa.Engine, unset: str | None
) -> None:
    # hide_parameters: otherwise SQLAlchemy itself puts the bound values in the message.
    engine = sa.create_engine(engine.url, hide_parameters=True)
    env = {} if unset is None else {"LETTA_ENCRYPTION_KEY": unset}
    meta, table = make_table(EncryptedText(environ=env))
    meta.create_all(engine)
    with pytest.raises(sa.exc.StatementError) as info, engine.begin() as conn:
        conn.execute(table.insert(), {"id": 1, "api_key": "sk-top-secret"})
    assert isinstance(info.value.orig, SecretError)
    assert "sk-top-secret" not in str(info.value)
    assert raw_values(engine) == []
    engine.dispose()


def test_reading_ciphertext_without_a_key_is_an_error(engine: sa.Engine) -> None:
    meta, _ = make_table(sa.Text())
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO providers VALUES (1, :v)"), {"v": LETTA_VECTORS[0][4]})
    _, table = make_table(EncryptedText(environ={}))
    with engine.connect() as conn, pytest.raises(DecryptionError, match="no encryption key"):
        conn.execute(sa.select(table.c.api_key)).scalar_one()


def test_columns_with_different_keys_never_share_a_compiled_statement(engine: sa.Engine) -> None:
    meta_a, table_a = make_table(EncryptedText("key-a"))
    meta_a.create_all(engine)
    _, table_b = make_table(EncryptedText("key-b"))
    with engine.begin() as conn:
        conn.execute(table_a.insert(), {"id": 1, "api_key": "a"})
        conn.execute(table_b.insert(), {"id": 2, "api_key": "b"})
    a, b = raw_values(engine)
    assert reference_letta_decrypt(a or "", "key-a") == "a"
    assert reference_letta_decrypt(b or "", "key-b") == "b"


def test_repr_never_shows_the_key() -> None:
    column = EncryptedText("super-secret-key")
    assert "super-secret-key" not in repr(column)
    assert "super-secret-key" not in repr(sa.Column("x", column))


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.text(), min_size=1, max_size=5))
def test_round_trip_through_sqlite(values: list[str]) -> None:
    eng = sa.create_engine("sqlite://")
    meta, table = make_table(EncryptedText(KEY))
    meta.create_all(eng)
    with eng.begin() as conn:
        conn.execute(table.insert(), [{"id": i, "api_key": v} for i, v in enumerate(values)])
        got = list(conn.execute(sa.select(table.c.api_key).order_by(table.c.id)).scalars())
    eng.dispose()
    assert got == values
