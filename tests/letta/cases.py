"""Env-only Letta deployments for the compatibility suite: deterministic, >= 300 of them.

Each case is ``{"id": str, "environ": {LETTA_*: value}}`` — the complete ``LETTA_*``
environment of a deployment with no profile files. Ids are stable (a family name and a
number); the seeded random part only combines values from the lists below, so the
same code always yields the same cases. ``python -m tests.letta.cases`` prints them.
"""

from __future__ import annotations

import json
import random
from typing import Any
from urllib.parse import quote

SEED = 9  # issue 9
HOST = "db.internal"
BASE_URI = f"postgresql://letta:s3cret@{HOST}:5432/letta"

SCHEMES = (
    "postgresql",
    "postgres",
    "postgresql+asyncpg",
    "postgresql+psycopg2",
    "postgresql+pg8000",
    "postgresql+psycopg",
)
# (netloc host part, what it means)
HOSTS = (
    HOST,
    f"{HOST}:6543",
    "10.1.2.3:5432",
    "[::1]",
    "[::1]:5433",
    "[2001:db8::7]:5432",
    "DB.Internal",
)
QUERIES = (
    "",
    "sslmode=require",
    "sslmode=disable",
    "sslmode=verify-full",
    "ssl=require",
    "application_name=letta-server",
    "connect_timeout=5",
    "command_timeout=10",
    "target_session_attrs=read-write",
    "options=-c%20statement_timeout%3D5000",
    "sslmode=require&application_name=letta",
)
UNIX_URIS = (
    "postgresql:///letta?host=/run/postgresql",
    "postgresql://letta:s3cret@/letta?host=/run/postgresql",
    "postgresql://letta@/letta?host=/var/run/postgresql&port=5433",
    "postgresql:///letta?host=/run/postgresql&user=letta",
)
NASTY_PASSWORDS = (
    "p@ss/w:rd#1 %?&",
    "p@ssword",
    "pass/word",
    "pass:word",
    "pass#word",
    "pass?word",
    "100%sure",
    "pass word",
    " leading-and-trailing ",
    "a+b=c",
    "xssl=1",
    "xsslmode=1",
    "pässwörd-日本",
    "trailing-newline\n",
    "[::1]",
    "plain-Secret_123",
)
TRUE_WORDS = ("true", "1", "yes", "on", "t", "y", "TRUE", "True", "YES", "On", "T", "Y")
FALSE_WORDS = ("false", "0", "no", "off", "f", "n", "FALSE", "False", "NO", "Off", "F", "N")
BAD_BOOLS = ("maybe", "2", " true ", "")
BOOL_VARS = (
    "LETTA_PG_ECHO",
    "LETTA_POOL_PRE_PING",
    "LETTA_POOL_USE_LIFO",
    "LETTA_DISABLE_SQLALCHEMY_POOLING",
    "LETTA_ENABLE_DB_POOL_MONITORING",
)
INT_VARS = (
    "LETTA_PG_POOL_SIZE",
    "LETTA_PG_MAX_OVERFLOW",
    "LETTA_PG_POOL_TIMEOUT",
    "LETTA_PG_POOL_RECYCLE",
    "LETTA_DB_POOL_MONITORING_INTERVAL",
)
INT_VALUES = ("30", "30.0", "1_000", "2.5", " 40 ", "+5", "7", "0", "-1", "1e3", "abc")
PARTS = {
    "LETTA_PG_DB": "letta",
    "LETTA_PG_USER": "letta",
    "LETTA_PG_PASSWORD": "s3cret",
    "LETTA_PG_HOST": HOST,
    "LETTA_PG_PORT": "5432",
}
ENCRYPTION_KEYS = (
    "test-master-key-1234567890abcdef",
    "short",
    "ключ-🔑",
    "key-with-newline\n",
    "",
    "None",
)


def _uri(scheme: str, host: str, query: str = "", user: str = "letta", pw: str = "s3cret") -> str:
    auth = f"{quote(user, safe='')}:{quote(pw, safe='')}@" if pw else f"{quote(user, safe='')}@"
    return f"{scheme}://{auth}{host}/letta" + (f"?{query}" if query else "")


def _pooled(env: dict[str, str]) -> dict[str, str]:
    return {**env, "LETTA_DISABLE_SQLALCHEMY_POOLING": "false"}


def generate() -> list[dict[str, Any]]:
    """All cases, in a stable order with stable ids."""
    cases: list[dict[str, Any]] = []

    def add(family: str, environ: dict[str, str]) -> None:
        number = sum(1 for c in cases if c["id"].startswith(family + "-"))
        cases.append({"id": f"{family}-{number:03d}", "environ": environ})

    add("nothing", {})

    # URI forms: every scheme x host form; every query option, unpooled and pooled.
    for scheme in SCHEMES:
        for host in HOSTS:
            add("uri-form", {"LETTA_PG_URI": _uri(scheme, host)})
    for query in QUERIES:
        add("uri-query", {"LETTA_PG_URI": _uri("postgresql", HOST, query)})
        add("uri-query", _pooled({"LETTA_PG_URI": _uri("postgresql", HOST, query)}))
    for uri in UNIX_URIS:
        add("uri-unix", {"LETTA_PG_URI": uri})
    add("uri-form", {"LETTA_PG_URI": f"postgresql://letta:s3cret@{HOST}/letta\n"})
    add("uri-form", {"LETTA_PG_URI": f"postgresql://letta@{HOST}/letta"})
    add("uri-form", {"LETTA_PG_URI": f"postgresql://{HOST}/letta"})
    add("uri-form", {"LETTA_PG_URI": f"postgresql://us%40er:pw@{HOST}/my%2Fdb"})

    # Nasty passwords: percent-encoded in a URI, raw in LETTA_PG_PASSWORD, and raw in a
    # URI where RFC 3986 allows it (no @ / ? # %).
    for pw in NASTY_PASSWORDS:
        add("nasty-uri", {"LETTA_PG_URI": _uri("postgresql", HOST, pw=pw)})
        add("nasty-parts", {**PARTS, "LETTA_PG_PASSWORD": pw})
        if not set(pw) & set("@/?#%[]\n "):
            add("nasty-raw-uri", {"LETTA_PG_URI": f"postgresql://letta:{pw}@{HOST}/letta"})
    add("nasty-pooled", _pooled({"LETTA_PG_URI": _uri("postgresql", "ssl-proxy.internal")}))
    add("nasty-pooled", _pooled({"LETTA_PG_URI": _uri("postgresql", HOST, pw="has-ssl-inside")}))
    add("nasty-pooled", _pooled({**PARTS, "LETTA_PG_DB": "lettassl"}))

    # The five parts: together, each missing, each alone, odd hosts.
    add("parts", dict(PARTS))
    add("parts", _pooled(dict(PARTS)))
    for name, value in PARTS.items():
        add("parts-missing", {k: v for k, v in PARTS.items() if k != name})
        add("parts-alone", {name: value})
        add("parts-empty", {**PARTS, name: ""})
        add("parts-none", {**PARTS, name: "None"})
    for host in ("::1", "/run/postgresql", "10.1.2.3", "DB.Internal"):
        add("parts-host", {**PARTS, "LETTA_PG_HOST": host})
    add("parts-host", {**PARTS, "LETTA_PG_DB": "my/db"})
    add("parts-host", {**PARTS, "LETTA_PG_USER": "us@er"})

    # URI + parts in the same environment.
    for name, value in (
        ("LETTA_PG_HOST", "other.internal"),
        ("LETTA_PG_PORT", "6000"),
        ("LETTA_PG_PASSWORD", "from-parts"),
        ("LETTA_PG_DB", "otherdb"),
        ("LETTA_PG_USER", "other"),
    ):
        add("uri-and-part", {"LETTA_PG_URI": BASE_URI, name: value})
    add("uri-and-part", {"LETTA_PG_URI": BASE_URI, **{k: v + "x" for k, v in PARTS.items()}})
    add("uri-and-part", {"LETTA_PG_URI": "", **PARTS})
    add("uri-and-part", {"LETTA_PG_URI": "None", **PARTS})

    # Pooling and every tuning variable in pydantic's spellings (pooled, so they show).
    for word in TRUE_WORDS + FALSE_WORDS + BAD_BOOLS:
        add("pooling", {"LETTA_PG_URI": BASE_URI, "LETTA_DISABLE_SQLALCHEMY_POOLING": word})
    for var in BOOL_VARS:
        if var == "LETTA_DISABLE_SQLALCHEMY_POOLING":
            continue
        for word in ("t", "F", "yes", "Off", "1", "n", *BAD_BOOLS):
            add("bool", _pooled({"LETTA_PG_URI": BASE_URI, var: word}))
    for var in INT_VARS:
        for value in INT_VALUES:
            add("int", _pooled({"LETTA_PG_URI": BASE_URI, var: value}))
    for value in ("6543", "6543.0", "65_43", "0", "70000", "abc", ""):
        add("int-port", {**PARTS, "LETTA_PG_PORT": value})

    # Lower-case and mixed-case variable names.
    add("lowercase", {"letta_pg_uri": BASE_URI})
    add("lowercase", {k.lower(): v for k, v in PARTS.items()})
    add("lowercase", _pooled({"letta_pg_uri": BASE_URI, "letta_pg_pool_size": "7"}))
    add("lowercase", {"LETTA_PG_URI": BASE_URI, "Letta_Pg_Echo": "true"})
    add("lowercase", {"LETTA_PG_URI": BASE_URI, "letta_disable_sqlalchemy_pooling": "no"})
    add("lowercase", {"LETTA_PG_URI": BASE_URI, "letta_encryption_key": "k-lower"})

    # `None` and empty values.
    for var in ("LETTA_PG_URI", *INT_VARS, *BOOL_VARS):
        for value in ("", "None"):
            base = {"LETTA_PG_URI": BASE_URI} if var != "LETTA_PG_URI" else {}
            add("clear", {**base, var: value})

    # Encryption key set / unset.
    for key in ENCRYPTION_KEYS:
        add("encryption", {"LETTA_PG_URI": BASE_URI, "LETTA_ENCRYPTION_KEY": key})
    add("encryption", {"LETTA_ENCRYPTION_KEY": "no-database-key"})

    # Random deployments combining the above.
    rng = random.Random(SEED)
    for _ in range(60):
        env: dict[str, str] = {}
        if rng.random() < 0.6:
            env["LETTA_PG_URI"] = _uri(
                rng.choice(SCHEMES[:1] + SCHEMES[2:]),
                rng.choice(HOSTS[:3]),
                rng.choice(("", "", "sslmode=require", "sslmode=disable")),
                pw=rng.choice((*NASTY_PASSWORDS[-3:], "s3cret")),
            )
        else:
            env.update(PARTS)
            env["LETTA_PG_PASSWORD"] = rng.choice(("s3cret", "Pa55-word_ok", "with space"))
        for var in rng.sample(BOOL_VARS, k=rng.randint(0, 3)):
            env[var] = rng.choice(TRUE_WORDS + FALSE_WORDS)
        for var in rng.sample(INT_VARS, k=rng.randint(0, 3)):
            env[var] = rng.choice(("5", "12", "60", "3600", "2_000", "45.0"))
        if rng.random() < 0.3:
            env["LETTA_ENCRYPTION_KEY"] = rng.choice(ENCRYPTION_KEYS[:3])
        add("random", env)
    return cases


if __name__ == "__main__":
    print(json.dumps(generate(), indent=1, ensure_ascii=False))
