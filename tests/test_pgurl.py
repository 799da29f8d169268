"""The PostgreSQL URL value: laws, and agreement with SQLAlchemy's own URL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import URL, make_url

from dbprofile.pgurl import (
    MASK,
    PgUrl,
    SqliteUri,
    UriError,
    mask_uri,
    parse_uri,
    scrub,
    url_password,
)

DATA = Path(__file__).resolve().parent / "data"

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=12,
)
hostnames = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){0,2}", fullmatch=True)
ipv6 = st.sampled_from(["::1", "2001:db8::1", "fe80::1:2"])
# libpq parameters that stay options (user, dbname and password become components).
option_names = st.sampled_from(
    ["sslmode", "application_name", "sslrootcert", "target_session_attrs", "options"]
)


@st.composite
def pg_urls(draw: st.DrawFn) -> PgUrl:
    multi = draw(st.booleans())
    hosts = draw(st.lists(hostnames, min_size=2, max_size=3)) if multi else []
    query = [(name, draw(text)) for name in draw(st.lists(option_names, max_size=3, unique=True))]
    query += [("host", f"{h}:{draw(st.integers(1, 65535))}") for h in hosts]
    return PgUrl(
        user=draw(text),
        password=draw(st.none() | text),
        host=None if multi else draw(hostnames | ipv6),
        port=None if multi else draw(st.none() | st.integers(1, 65535)),
        database=draw(text.filter(lambda s: not s.startswith("/"))),
        query=tuple(query),
    )


def canonical(url: PgUrl) -> PgUrl:
    """The same URL with its query in rendering order (sorted by key, stable)."""
    order = sorted(range(len(url.query)), key=lambda i: url.query[i][0])
    return PgUrl(
        url.user,
        url.password,
        url.host,
        url.port,
        url.database,
        tuple(url.query[i] for i in order),
        url.drivername,
    )


@given(pg_urls())
def test_parse_of_render_is_the_identity(url: PgUrl) -> None:
    rendered = url.render(hide_password=False)
    assert parse_uri(rendered) == canonical(url)
    assert url_password(rendered) == url.password


@given(pg_urls())
def test_the_masked_render_never_holds_the_password(url: PgUrl) -> None:
    shown = url.render()
    if url.password is not None:
        # The masked text does not depend on the password at all, and shows *** for it.
        assert shown == url.with_password("another").render()
        assert shown.split("://", 1)[1].rsplit("@", 1)[0].endswith(":" + MASK)
    assert repr(url) == repr(url.with_password(None))  # repr never depends on the password


@given(pg_urls())
def test_render_is_exactly_sqlalchemys_render_as_string(url: PgUrl) -> None:
    expected = URL.create(**url.create_args())
    assert url.render(hide_password=False) == expected.render_as_string(hide_password=False)
    assert url.render() == expected.render_as_string(hide_password=True)


def golden_uris() -> list[str]:
    found: set[str] = set()
    for path in (DATA / "valid").rglob("*"):
        if path.is_file() and path.suffix in (".toml", ".yaml", ".yml", ".json"):
            text_ = path.read_text(encoding="utf-8", errors="replace")
            found.update(re.findall(r"postgres[a-z0-9+]*://[^\"'\s]+", text_))
    # A libpq multi-host netloc (h1:5432,h2:5433) is not SQLAlchemy's form: not compared.
    return sorted(u for u in found if MASK not in u and "," not in u.split("/")[2])


@pytest.mark.parametrize("uri", golden_uris())
def test_every_golden_uri_parses_as_sqlalchemys_make_url(uri: str) -> None:
    parsed = parse_uri(uri)
    assert isinstance(parsed, PgUrl)
    theirs = make_url(uri)
    assert (parsed.user, parsed.password, parsed.port) == (
        theirs.username,
        theirs.password,
        theirs.port,
    )
    # SQLAlchemy keeps a percent-encoded database name as written; libpq, and dbprofile,
    # decode it (docs/letta-differences.md, D20).
    assert parsed.database == (theirs.database and re.sub("%20", " ", theirs.database))
    expected_host = theirs.host
    assert parsed.host == expected_host or (parsed.host is None and "host" in theirs.query)
    ours = {k: v for k, v in parsed.query_dict().items() if k != "sslmode"}
    theirs_query = {k: v for k, v in theirs.query.items() if k not in ("ssl", "sslmode")}
    assert ours == theirs_query


def test_sqlite_uris() -> None:
    assert parse_uri("sqlite:///x/y.db") == SqliteUri("x/y.db")
    assert parse_uri("sqlite:////abs.db") == SqliteUri("/abs.db")
    assert parse_uri("sqlite://") == SqliteUri(":memory:")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("mysql://u@h/d", "dialect 'mysql' is not supported"),
        ("postgresql+foo://u@h/d", "driver 'foo' is not supported"),
        ("postgresql://u@h:99999/d", "port must be a number from 1 to 65535"),
        ("postgresql://u@[::1/d", "unclosed '['"),
        ("postgresql://u:p#w@h/d", "contains '#'"),
        ("postgresql://u:p/w@h/d", "has '/' or '?' before its '@'"),
        ("postgresql://u:a@h/d?password=b", "a password both in its user part and as ?password="),
    ],
)
def test_a_bad_uri_says_why_without_the_password(uri: str, message: str) -> None:
    with pytest.raises(UriError, match=re.escape(message)) as caught:
        parse_uri(uri)
    assert "p#w" not in str(caught.value)


def test_libpq_query_forms_are_components() -> None:
    url = parse_uri("postgresql://h/d?password=s3cr%40t&user=u&ssl=true&dbname=other")
    assert isinstance(url, PgUrl)
    assert (url.user, url.password, url.database) == ("u", "s3cr@t", "other")
    assert url.query == (("sslmode", "require"),)


@pytest.mark.parametrize(
    ("text_", "shown"),
    [
        ("postgresql://u:S3CR3T@h/d", "postgresql://u:***@h/d"),
        ("postgresql://u:p@ss@h/d", "postgresql://u:***@h/d"),
        (
            "host=db user=letta password=S3CR3T dbname=letta",
            "host=db user=letta password=*** dbname=letta",
        ),
        ("password='a b c' end", "password=*** end"),
        (
            "jdbc:postgresql://db/letta?user=letta&password=S3CR3T",
            "jdbc:postgresql://db/letta?user=letta&password=***",
        ),
        ("postgresql://letta:S3CR3T/letta", "postgresql://letta:***/letta"),
        ("postgresql://h:5432/d?sslpassword=S3CR3T", "postgresql://h:5432/d?sslpassword=***"),
        ("postgresql://h:5432/d", "postgresql://h:5432/d"),
    ],
)  # fmt: skip
def test_mask_uri_masks_every_credential_shape(text_: str, shown: str) -> None:
    assert mask_uri(text_) == shown


def test_scrub_also_masks_given_secrets_in_every_encoding() -> None:
    secret = "p@ss w/rd"
    message = f"failed for p%40ss%20w%2Frd and {secret} and p%40ss+w%2Frd"
    assert scrub(message, (secret,)) == "failed for *** and *** and ***"
