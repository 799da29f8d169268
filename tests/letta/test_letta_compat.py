"""Letta 0.16.8 compatibility: Letta's own code and dbprofile, on the same environments.

The Letta side runs in ``.letta-venv`` (``scripts/letta-env``) through
``tests/letta/probe.py``, once per session for every case of ``tests/letta/cases.py``;
the dbprofile side runs here (``tests/letta/dbprofile_side.py``). Both intercept only
the drivers' network step. Results are normalized to the same fields (:data:`FIELDS`)
and compared; a disagreement must be explained, field by field, by rows of
``docs/letta-differences.md``, each of which has a predicate in :data:`PREDICATES`
that checks its specific difference and returns the fields it accounts for.

``python -m tests.letta.test_letta_compat`` prints every unexplained disagreement,
grouped, with one example each.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from tests.letta.cases import generate
from tests.letta.dbprofile_side import run_cases, run_specs

# Runs Letta 0.16.8 in .letta-venv on 375 deployments (~15 s): scripts/test runs it.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LETTA_PYTHON = ROOT / ".letta-venv" / "bin" / "python"
PROBE = Path(__file__).with_name("probe.py")
DIFFERENCES = ROOT / "docs" / "letta-differences.md"
OS_USER = pwd.getpwuid(os.getuid()).pw_name  # libpq's and asyncpg's default user
PROBE_TIMEOUT = 600

FIELDS = (
    "error",
    "engine",
    "hosts",
    "database",
    "user",
    "password",
    "sslmode",
    "application_name",
    "extra",
    "connect_timeout",
    "prepared_statements",
    "pool_class",
    "pool_size",
    "max_overflow",
    "pool_timeout",
    "pool_recycle",
    "use_lifo",
    "pre_ping",
    "echo",
    "monitoring_enabled",
    "monitoring_interval",
    "encryption_key",
    "sync",
)
CONNECTION = frozenset(
    {
        "engine",
        "hosts",
        "database",
        "user",
        "password",
        "sslmode",
        "application_name",
        "extra",
        "connect_timeout",
        "prepared_statements",
    }
)
IDENTITY = frozenset({"error", "hosts", "database", "user", "password", "sync"})
PARTS = ("LETTA_PG_DB", "LETTA_PG_USER", "LETTA_PG_PASSWORD", "LETTA_PG_HOST", "LETTA_PG_PORT")
LIBPQ_ONLY = ("application_name", "connect_timeout", "options", "target_session_attrs")
ASYNCPG_ONLY = frozenset(
    {"command_timeout", "statement_cache_size", "max_cached_statement_lifetime"}
)
# libpq parameters with a field of their own (the rest go to "extra").
LIBPQ_KNOWN = frozenset(
    ("host", "port", "dbname", "user", "password", "sslmode", "application_name", "connect_timeout")
)


# ----------------------------------------------------------------------------- running


def run_probe(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Letta's results for ``cases`` (a subprocess on .letta-venv's Python)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LETTA_")}
    proc = subprocess.run(
        [str(LETTA_PYTHON), str(PROBE)],
        input=json.dumps([{"environ": c["environ"]} for c in cases]),
        capture_output=True,
        text=True,
        env=env,
        timeout=PROBE_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"probe failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    assert len(results) == len(cases)
    return results


# ----------------------------------------------------------------------------- normalizing


def _host(host: str | None) -> str | None:
    """DNS names compare case-insensitively (Letta lower-cases them); paths do not."""
    return host if host is None or host.startswith("/") else host.lower()


def _sslmode(hosts: list[Any], mode: str | None) -> str | None:
    """No TLS on Unix sockets: there, libpq's and asyncpg's prefer/allow mean disable.
    asyncpg spells the verify modes with an underscore (its enum's names)."""
    mode = None if mode is None else mode.replace("_", "-")
    if hosts and all(str(h).startswith("/") for h in hosts) and mode in ("prefer", "allow"):
        return "disable"
    return mode


def _blank() -> dict[str, Any]:
    return dict.fromkeys(FIELDS)


def letta_sync(raw: dict[str, Any]) -> Any:
    sync = raw.get("sync")
    if sync is not None and sync["engine"] == "sqlite":
        return "sqlite"
    if sync is None or "error" in sync or "connect" not in sync:
        return "error"
    c = sync["connect"]
    host, port = c["host"], c["port"]
    if c["unix_sock"]:
        host, _, name = c["unix_sock"].rpartition("/")
        port = int(name.rpartition(".")[2])
    user = c["user"]
    return {
        "host": _host(host),
        "port": port,
        "database": c["database"] or user,
        "user": user,
        "password": c["password"],
        "sslmode": _sslmode([host], c["sslmode"]),
    }


def norm_letta(raw: dict[str, Any]) -> dict[str, Any]:
    out = _blank()
    out["error"] = raw["error"] is not None
    out["sync"] = letta_sync(raw)
    if out["error"]:
        return out
    s, c, pool = raw["settings"], raw["connect"], raw["pool"]
    server_settings = dict(c.get("server_settings") or {})
    extra: dict[str, Any] = {k: v for k, v in server_settings.items() if k != "application_name"}
    if c.get("target_session_attrs") not in (None, "any"):
        extra["target_session_attrs"] = c["target_session_attrs"]
    if c.get("command_timeout") is not None:
        extra["command_timeout"] = c["command_timeout"]
    queue = "size" in pool
    readers = raw.get("readers", {})
    hosts = [[_host(h), p] for h, p in c["addrs"]]
    out.update(
        engine=raw["engine"],
        hosts=hosts,
        database=c["database"],
        user=c["user"],
        password=c["password"],
        sslmode=_sslmode([h for h, _ in hosts], c["sslmode"]),
        application_name=server_settings.get("application_name"),
        extra=extra,
        connect_timeout=c["timeout"],
        prepared_statements=bool(c["statement_cache_size"] or c["prepared_statement_cache_size"]),
        pool_class="QueuePool" if queue else "NullPool",
        pool_size=pool.get("size"),
        max_overflow=pool.get("max_overflow"),
        pool_timeout=pool.get("timeout"),
        pool_recycle=pool.get("recycle") if queue else None,
        use_lifo=pool.get("use_lifo"),
        pre_ping=pool["pre_ping"],
        echo=bool(raw["echo"]),
        monitoring_enabled=s["enable_db_pool_monitoring"],
        # Letta reads the interval nowhere (the probe searched its sources): no effect.
        monitoring_interval=(
            s["db_pool_monitoring_interval"] if readers.get("db_pool_monitoring_interval") else None
        ),
        encryption_key=s["encryption_key"] or None,
    )
    return out


def _libpq_hosts(params: dict[str, str]) -> list[list[Any]]:
    hosts = params.get("host", "").split(",") if params.get("host") else [None]
    ports = [int(p) for p in params.get("port", "").split(",") if p] or [5432]
    if len(ports) == 1:
        ports *= len(hosts)
    return [[_host(h), p] for h, p in zip(hosts, ports, strict=False)]


def _libpq_identity(params: dict[str, str]) -> dict[str, Any]:
    user = params.get("user") or OS_USER
    hosts = _libpq_hosts(params)
    return {
        "hosts": hosts,
        "database": params.get("dbname") or user,
        "user": user,
        "password": params.get("password"),
        "sslmode": _sslmode([h for h, _ in hosts], params.get("sslmode", "prefer")),
    }


def dbprofile_sync(raw: dict[str, Any]) -> Any:
    if raw["error"] is not None and raw["error"]["stage"] != "connect":
        return "error"
    if raw.get("engine") == "sqlite":
        return "sqlite"
    sync = raw.get("sync") or {}
    if "error" in sync or "params" not in sync:
        return "error"
    ident = _libpq_identity(sync["params"])
    (host, port), *_ = ident.pop("hosts")
    return {"host": host, "port": port, **ident}


def norm_dbprofile(raw: dict[str, Any]) -> dict[str, Any]:
    out = _blank()
    out["error"] = raw["error"] is not None
    out["sync"] = dbprofile_sync(raw)
    if out["error"]:
        return out
    pool = raw["pool"]
    queue = "size" in pool
    out.update(
        engine=raw["engine"],
        pool_class="QueuePool" if queue else "NullPool",
        pool_size=pool.get("size"),
        max_overflow=pool.get("max_overflow"),
        pool_timeout=pool.get("timeout"),
        pool_recycle=pool.get("recycle") if queue else None,
        use_lifo=pool.get("use_lifo"),
        pre_ping=pool["pre_ping"],
        echo=raw["echo"],
        monitoring_enabled=raw["monitoring"]["enabled"],
        monitoring_interval=raw["monitoring"]["interval"],
        encryption_key=raw.get("encryption_key") or None,
    )
    if raw["engine"] == "postgresql":
        a = raw["async"]
        params = a["params"]
        out.update(_libpq_identity(params))
        out.update(
            application_name=params.get("application_name"),
            extra={k: v for k, v in params.items() if k not in LIBPQ_KNOWN},
            connect_timeout=a["timeout"],
            prepared_statements=a["prepare_threshold"] is not None,
        )
    return out


def differing(letta: dict[str, Any], dbp: dict[str, Any]) -> list[str]:
    """Fields that disagree. When either side failed, only the failure and the
    migrations path compare (the other fields do not exist)."""
    keys = ("error", "sync") if letta["error"] or dbp["error"] else FIELDS
    return [k for k in keys if letta[k] != dbp[k]]


# ----------------------------------------------------------------------------- the table


def read_differences(path: Path = DIFFERENCES) -> dict[str, list[str]]:
    """``{id: [cells...]}`` from the markdown table whose first column is ``Dnn``."""
    rows: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and re.fullmatch(r"D\d{2}", cells[0]):
            assert cells[0] not in rows, f"duplicate row {cells[0]} in {path}"
            rows[cells[0]] = cells[1:]
    return rows


# ----------------------------------------------------------------------------- classifier


@dataclass
class Comparison:
    case_id: str
    environ: dict[str, str]
    letta: dict[str, Any]  # the probe's raw result
    dbp: dict[str, Any]  # dbprofile_side's raw result
    l: dict[str, Any] = field(init=False)  # noqa: E741 - normalized Letta
    d: dict[str, Any] = field(init=False)  # normalized dbprofile
    diff: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.l = norm_letta(self.letta)
        self.d = norm_dbprofile(self.dbp)
        self.diff = differing(self.l, self.d)

    # What Letta read (None when its settings did not load).
    @property
    def settings(self) -> dict[str, Any] | None:
        s: dict[str, Any] | None = self.letta.get("settings")
        return s

    @property
    def letta_uri(self) -> str | None:
        return self.settings["pg_uri"] if self.settings and self.settings["pg_uri"] else None

    @property
    def letta_parts(self) -> dict[str, Any]:
        s = self.settings or {}
        return {p: s.get(p.removeprefix("LETTA_").lower()) for p in PARTS}

    @property
    def letta_pooled(self) -> bool:
        return bool(self.settings) and not self.settings["disable_sqlalchemy_pooling"]  # type: ignore[index]

    def error(self, side: str) -> dict[str, str] | None:
        raw = self.letta if side == "letta" else self.dbp
        err: dict[str, str] | None = raw.get("error")
        return err


def _uri_query(uri: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(uri).query, keep_blank_values=True))


def _letta_fallback(c: Comparison) -> bool:
    """Letta configured no PostgreSQL and connects to its hard-coded server."""
    return (
        c.settings is not None
        and c.letta["database_engine"] == "sqlite"
        and not c.l["error"]
        and c.l["hosts"] == [["localhost", 5432]]
        and (c.l["user"], c.l["password"], c.l["database"]) == ("letta", "letta", "letta")
    )


def d01_no_postgres_setting(c: Comparison) -> set[str]:
    if not _letta_fallback(c) or c.d["error"] or c.d["engine"] != "sqlite":
        return set()
    if any(c.letta_parts.values()):  # partial parts: D10
        return set()
    return set(CONNECTION)


def d02_parts_f_string(c: Comparison) -> set[str]:
    p = c.letta_parts
    if c.letta_uri or not all(p.values()) or c.d["error"]:
        return set()
    want = {
        "hosts": [[_host(p["LETTA_PG_HOST"]), p["LETTA_PG_PORT"]]],
        "database": p["LETTA_PG_DB"],
        "user": p["LETTA_PG_USER"],
        "password": p["LETTA_PG_PASSWORD"],
    }
    if any(c.d[k] != v for k, v in want.items()):
        return set()  # dbprofile did not use the parts as written either
    if not c.l["error"] and all(c.l[k] == v for k, v in want.items()):
        return set()  # Letta's f-string survived
    return set(IDENTITY)


def _uri_surgery_failure(c: Comparison, applies: Callable[[str], bool]) -> set[str]:
    uri = c.letta_uri
    err = c.error("letta")
    if uri is None or not applies(uri) or err is None or err["stage"] != "engine":
        return set()
    if c.d["error"]:
        return set()
    return {"error", "sync"}


def d03_ipv6_uri(c: Comparison) -> set[str]:
    def applies(uri: str) -> bool:
        return "[" in urlsplit(uri).netloc and any(":" in h for h, _ in c.d["hosts"] or [])

    return _uri_surgery_failure(c, applies)


def d04_unix_socket_uri(c: Comparison) -> set[str]:
    uri = c.letta_uri
    if uri is None or urlsplit(uri).hostname is not None or c.d["error"]:
        return set()
    if not any((h or "").startswith("/") for h, _ in c.d["hosts"]):
        return set()
    err = c.error("letta")
    if err is not None and err["stage"] != "engine":
        return set()
    # Letta re-assembled the URL without the empty host: it fails to parse, or the user
    # becomes the host (`letta@/db` -> `//letta/db`) and asyncpg falls back to the OS user.
    return set(IDENTITY)


def d05_postgres_scheme(c: Comparison) -> set[str]:
    def applies(uri: str) -> bool:
        err = c.error("letta") or {}
        return urlsplit(uri).scheme.split("+")[0] == "postgres" and (
            err.get("type") == "NoSuchModuleError"
        )

    return _uri_surgery_failure(c, applies)


def d06_ssl_text_surgery(c: Comparison) -> set[str]:
    url = (c.settings or {}).get("letta_pg_uri_no_default")  # the URI, or the parts' f-string
    if not url or c.d["error"]:
        return set()
    before_query = url.split("?", 1)[0]
    explained: set[str] = set()
    identity = ("user", "password", "database")
    if "sslmode=" in before_query and not c.l["error"] and any(c.l[k] != c.d[k] for k in identity):
        explained |= set(identity)
    ls, ds = c.l["sync"], c.d["sync"]
    if (
        "ssl=" in before_query
        and isinstance(ls, dict)
        and isinstance(ds, dict)
        and any(ls[k] != ds[k] for k in identity)
    ):
        explained.add("sync")
    return explained


def d07_forced_ssl_substring(c: Comparison) -> set[str]:
    if not c.letta_pooled or c.l["error"] or c.d["error"]:
        return set()
    if "ssl" in c.letta["connect_args"]:
        return set()  # Letta did force it
    uri = c.letta_uri or ""
    if {"ssl", "sslmode"} & set(_uri_query(uri)):
        return set()  # explicitly configured
    if c.l["sslmode"] == "prefer" and c.d["sslmode"] == "require":
        return {"sslmode"}
    return set()


def d08_use_lifo(c: Comparison) -> set[str]:
    if not c.letta_pooled or c.l["error"] or c.d["error"] or c.l["pool_class"] != "QueuePool":
        return set()
    asked = c.settings["pool_use_lifo"]  # type: ignore[index]
    if c.l["use_lifo"] is False and asked is True and c.d["use_lifo"] is True:
        return {"use_lifo"}
    return set()


def d09_monitoring_interval(c: Comparison) -> set[str]:
    if c.l["error"] or c.d["error"] or c.letta["readers"]["db_pool_monitoring_interval"]:
        return set()
    if c.l["monitoring_interval"] is None and (
        c.d["monitoring_interval"] == c.settings["db_pool_monitoring_interval"]  # type: ignore[index]
    ):
        return {"monitoring_interval"}
    return set()


def d10_partial_parts(c: Comparison) -> set[str]:
    p = c.letta_parts
    if c.letta_uri or not any(p.values()) or all(p.values()) or not _letta_fallback(c):
        return set()
    err = c.error("dbprofile")
    if err is not None:
        return set(FIELDS) if "missing" in err["message"] else set()
    given_host = p["LETTA_PG_HOST"]
    if c.d["engine"] == "postgresql" and given_host and c.d["hosts"][0][0] == _host(given_host):
        return set(FIELDS)
    return set()


def d12_pooled_prepared_statements(c: Comparison) -> set[str]:
    if not c.letta_pooled or c.l["error"] or c.d["error"] or c.d["engine"] != "postgresql":
        return set()
    connect = c.letta["connect"]
    pgbouncer = any(
        k.upper() == "LETTA_PG_PGBOUNCER" and v.strip().lower() in ("1", "true", "yes", "on")
        for k, v in c.environ.items()
    )
    if (
        connect["statement_cache_size"] == 0
        and connect["prepared_statement_cache_size"] == 0
        and c.d["prepared_statements"] is True
        and not pgbouncer
    ):
        return {"prepared_statements"}
    return set()


_UNEXPECTED_KW = re.compile(r"unexpected keyword argument '(\w+)'")


def d13_libpq_options(c: Comparison) -> set[str]:
    uri = c.letta_uri
    if uri is None or c.d["error"]:
        return set()
    query = _uri_query(uri)
    explained: set[str] = set()
    err = c.error("letta")
    m = _UNEXPECTED_KW.search(err["message"]) if err and err["type"] == "TypeError" else None
    if m and m.group(1) in LIBPQ_ONLY and m.group(1) in query:
        params = c.dbp["async"]["params"]
        if m.group(1) in params:
            explained.add("error")
    sync_err = (c.letta.get("sync") or {}).get("error")
    sm = _UNEXPECTED_KW.search(sync_err["message"]) if sync_err else None
    if sm and sm.group(1) in LIBPQ_ONLY and sm.group(1) in query and c.d["sync"] != "error":
        explained.add("sync")
    return explained


def d14_ssl_breaks_migrations(c: Comparison) -> set[str]:
    uri = c.letta_uri
    sync_err = (c.letta.get("sync") or {}).get("error")
    if uri is None or sync_err is None or c.d["sync"] in ("error", "sqlite"):
        return set()
    m = _UNEXPECTED_KW.search(sync_err["message"])
    if m and m.group(1) == "sslmode" and {"ssl", "sslmode"} & set(_uri_query(uri)):
        return {"sync"}
    return set()


_FIELD_LINE = re.compile(r"^(\w+)\n  Input should be", re.MULTILINE)


def d15_empty_or_none(c: Comparison) -> set[str]:
    err = c.error("letta")
    if err is None or err["type"] != "ValidationError" or c.d["error"]:
        return set()
    env = {k.upper(): v for k, v in c.environ.items()}
    bad = _FIELD_LINE.findall(err["message"])
    if bad and all(env.get(f"LETTA_{name.upper()}") in ("", "None") for name in bad):
        return {"error", "sync"}
    return set()


def d17_pooled_migrations_tls(c: Comparison) -> set[str]:
    if not c.letta_pooled or c.d["error"]:
        return set()
    if {"ssl", "sslmode"} & set(_uri_query(c.letta_uri or "")):
        return set()
    ls, ds = c.l["sync"], c.d["sync"]
    if not (isinstance(ls, dict) and isinstance(ds, dict)):
        return set()
    same = all(ls[k] == ds[k] for k in ls if k != "sslmode")
    if same and ls["sslmode"] in ("prefer", None) and ds["sslmode"] == "require":
        return {"sync"}
    return set()


_LIMIT = re.compile(r"^env (\w+): [\w.]+: must be (>=|>|<=) ")


def d18_out_of_range(c: Comparison) -> set[str]:
    err = c.error("dbprofile")
    if err is None or c.l["error"]:
        return set()
    lines = err["message"].split("\n")
    if lines and all(_LIMIT.match(line) for line in lines):
        return {"error", "sync"}
    return set()


def d19_uri_without_user(c: Comparison) -> set[str]:
    uri = c.letta_uri
    err = c.error("dbprofile")
    if (
        uri is None
        or err is None
        or c.l["error"]
        or "database.user is missing" not in err["message"]
    ):
        return set()
    if urlsplit(uri).username is None and "user" not in _uri_query(uri):
        return {"error", "sync"}
    return set()


def d20_encoded_database_name(c: Comparison) -> set[str]:
    uri = c.letta_uri
    if uri is None or c.l["error"] or c.d["error"]:
        return set()
    raw = urlsplit(uri).path[1:]
    if "%" not in raw or c.l["database"] != raw or c.d["database"] != unquote(raw):
        return set()
    explained = {"database"}
    if isinstance(c.l["sync"], dict) and c.l["sync"]["database"] == raw:
        explained.add("sync")
    return explained


def d21_asyncpg_only_options(c: Comparison) -> set[str]:
    uri = c.letta_uri
    if uri is None or c.l["error"] or c.d["error"]:
        return set()
    only = ASYNCPG_ONLY & set(_uri_query(uri))
    if not only or not set(c.l["extra"]) & only or set(c.d["extra"]) & only:
        return set()
    explained = {"extra"}
    if c.l["sync"] == "error" and isinstance(c.d["sync"], dict):
        explained.add("sync")
    return explained


def d22_fractional_pool_timeout(c: Comparison) -> set[str]:
    err = c.error("letta")
    if err is None or err["type"] != "ValidationError" or c.d["error"]:
        return set()
    env = {k.upper(): v for k, v in c.environ.items()}
    bad = _FIELD_LINE.findall(err["message"])
    value = env.get("LETTA_PG_POOL_TIMEOUT", "")
    try:
        number = float(value)
    except ValueError:
        return set()
    if bad == ["pg_pool_timeout"] and c.d["pool_timeout"] == number:
        return {"error", "sync"}
    return set()


PREDICATES: dict[str, Callable[[Comparison], set[str]]] = {
    "D01": d01_no_postgres_setting,
    "D02": d02_parts_f_string,
    "D03": d03_ipv6_uri,
    "D04": d04_unix_socket_uri,
    "D05": d05_postgres_scheme,
    "D06": d06_ssl_text_surgery,
    "D07": d07_forced_ssl_substring,
    "D08": d08_use_lifo,
    "D09": d09_monitoring_interval,
    "D10": d10_partial_parts,
    "D12": d12_pooled_prepared_statements,
    "D13": d13_libpq_options,
    "D14": d14_ssl_breaks_migrations,
    "D15": d15_empty_or_none,
    "D17": d17_pooled_migrations_tls,
    "D18": d18_out_of_range,
    "D19": d19_uri_without_user,
    "D20": d20_encoded_database_name,
    "D21": d21_asyncpg_only_options,
    "D22": d22_fractional_pool_timeout,
}
# Rows that no environment can show, proven by another test: id -> (file, test name).
ELSEWHERE = {
    "D16": (
        "tests/runtime/test_sqlite.py",
        "test_cosine_distance_is_null_not_a_perfect_match_for_bad_input",
    ),
}


def explain(
    c: Comparison, rows: Iterable[str] | None = None
) -> tuple[dict[str, set[str]], list[str]]:
    """(row id -> fields it explains, for the rows that apply; fields nobody explains).
    ``rows`` limits the rows that may explain (default: all)."""
    allowed = set(PREDICATES) if rows is None else set(rows)
    matched = {
        rid: fields for rid, pred in PREDICATES.items() if rid in allowed and (fields := pred(c))
    }
    covered = set().union(*matched.values()) if matched else set()
    return matched, [f for f in c.diff if f not in covered]


def compare_all(
    cases: list[dict[str, Any]], letta: list[dict[str, Any]], dbp: list[dict[str, Any]]
) -> list[Comparison]:
    return [
        Comparison(case["id"], case["environ"], lr, dr)
        for case, lr, dr in zip(cases, letta, dbp, strict=True)
    ]


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(c: Comparison, fields: Iterable[str]) -> str:
    lines = [f"{c.case_id}: {_short(c.environ, 300)}"]
    for f in fields:
        lines.append(f"    {f}: letta={_short(c.l[f])} dbprofile={_short(c.d[f])}")
    for side in ("letta", "dbprofile"):
        err = c.error(side)
        if err:
            lines.append(f"    {side} error: {err['type']}: {_short(err['message'], 200)}")
    return "\n".join(lines)


def unexplained_report(comparisons: list[Comparison], rows: Iterable[str] | None = None) -> str:
    """Unexplained disagreements grouped by (case family, fields), one example each."""
    groups: dict[tuple[str, tuple[str, ...]], list[Comparison]] = {}
    for c in comparisons:
        _, left = explain(c, rows)
        if left:
            family = c.case_id.rsplit("-", 1)[0]
            groups.setdefault((family, tuple(left)), []).append(c)
    out = []
    for (family, fields), members in sorted(groups.items()):
        out.append(f"[{family}] {', '.join(fields)} — {len(members)} case(s), e.g.")
        out.append(describe(members[0], fields))
    return "\n".join(out)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def letta_python() -> Path:
    if not LETTA_PYTHON.exists():
        message = ".letta-venv is missing: run scripts/letta-env"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return LETTA_PYTHON


@pytest.fixture(scope="session")
def env_comparisons(letta_python: Path) -> list[Comparison]:
    cases = generate()
    letta = run_probe(cases)
    dbp = run_cases([c["environ"] for c in cases])
    return compare_all(cases, letta, dbp)


# ----------------------------------------------------------------------------- tests


def test_cases_are_many_distinct_and_deterministic() -> None:
    cases = generate()
    assert len(cases) >= 300
    assert cases == generate()
    assert len({c["id"] for c in cases}) == len(cases)
    assert {"id": "nothing-000", "environ": {}} in cases


def test_the_table_and_the_classifier_name_the_same_rows() -> None:
    rows = read_differences()
    assert rows, f"no D-rows in {DIFFERENCES}"
    assert all(len(cells) == 4 and all(cells) for cells in rows.values())
    assert set(rows) == set(PREDICATES) | set(ELSEWHERE)
    for rid, (path, test_name) in ELSEWHERE.items():
        assert f"def {test_name}(" in (ROOT / path).read_text(encoding="utf-8"), rid


def test_the_probe_ran_letta_for_every_case(env_comparisons: list[Comparison]) -> None:
    bugs = [c.case_id for c in env_comparisons if c.letta.get("probe_bug")]
    assert not bugs, bugs
    # Letta's code really ran: its settings loaded for the plain cases, and asyncpg parsed
    # the arguments of a connection for the default deployment.
    nothing = next(c for c in env_comparisons if c.case_id == "nothing-000")
    assert nothing.letta["database_engine"] == "sqlite"
    assert nothing.letta["connect"]["addrs"] == [["localhost", 5432]]


def test_no_side_reached_the_network(env_comparisons: list[Comparison]) -> None:
    for c in env_comparisons:
        for side in ("letta", "dbprofile"):
            kind = (c.error(side) or {}).get("type")
            assert kind not in ("OperationalError", "ConnectionRefusedError"), describe(c, [])


def test_env_only_deployments_agree_or_differ_as_documented(
    env_comparisons: list[Comparison],
) -> None:
    report = unexplained_report(env_comparisons)
    assert not report, "unexplained disagreements with Letta 0.16.8:\n" + report


def test_every_difference_is_exercised(env_comparisons: list[Comparison]) -> None:
    seen: set[str] = set()
    for c in env_comparisons:
        matched, _ = explain(c)
        seen |= {rid for rid, fields in matched.items() if set(fields) & set(c.diff)}
    assert set(PREDICATES) - seen == set()


def test_the_classifier_accepts_nothing_when_both_sides_agree(
    env_comparisons: list[Comparison],
) -> None:
    """A predicate that fires where nothing differs would be blanket acceptance."""
    for c in env_comparisons:
        if c.diff:
            continue
        matched, _ = explain(c)
        # Rows about a value Letta ignores (D08/D09) show a difference whenever they apply.
        assert not matched, f"{sorted(matched)} fired without a difference:\n{describe(c, [])}"


# ----------------------------------------------------------------------------- profiles

PROFILE_PASSWORD = "p@ss/w:rd#1 %?& x"
# Rows that may explain a difference between `--format env` and the runtime: not those
# whose Letta failure the renderer itself can avoid (percent-encode the password and `=`,
# write postgresql://, use a URI rather than parts, leave libpq-only options out of
# LETTA_PG_URI, never write an empty value) — there the renderer is what is wrong.
RENDERER_AVOIDABLE = frozenset({"D02", "D05", "D06", "D13", "D15"})
PROFILE_ROWS = frozenset(PREDICATES) - RENDERER_AVOIDABLE
PROFILE_KEY = "compat-encryption-key"


def _profile_sets() -> list[tuple[Path, str]]:
    out = []
    for directory in [ROOT / "profiles", *sorted((ROOT / "examples").glob("*/profiles"))]:
        for path in sorted(directory.iterdir()):
            if path.suffix in (".toml", ".yaml", ".yml"):
                out.append((directory, path.stem))
    return out


PROFILE_SETS = _profile_sets()


def _dbprofile(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("dbprofile")
    proc = subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if not k.upper().startswith("LETTA_")},
        check=False,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


class Refused(Exception):
    """`--format env` exited 1: Letta cannot express the profile (stderr says why)."""


def _sourced_environ(tmp: Path, env_text: str, secrets: dict[str, str]) -> dict[str, str]:
    """Source the env output in a POSIX shell; the LETTA_* environment it leaves."""
    (tmp / "out.env").write_text(env_text, encoding="utf-8")
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    proc = subprocess.run(
        ["sh", "-c", '. ./out.env && exec "$0" -c "$1"', sys.executable, dump],
        capture_output=True,
        text=True,
        cwd=tmp,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp), **secrets},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    environ: dict[str, str] = json.loads(proc.stdout)
    return {k: v for k, v in environ.items() if k.upper().startswith("LETTA_")}


def profile_case(tmp: Path, directory: Path, name: str) -> tuple[dict[str, Any], Any, dict]:
    """(probe case, dbprofile spec, environment its secrets resolve from) for a profile.

    The profiles are copied into ``tmp``, with secret files moved there too; the spec is
    the JSON artifact (``compile --format json``, loaded with ``load_spec``), except for
    a literal secret, which by design a JSON artifact does not carry: then the in-memory
    spec, and Letta gets the literal as ``LETTA_PG_PASSWORD`` as the env output says.
    """
    import dbprofile

    profiles = tmp / "profiles"
    shutil.copytree(directory, profiles)
    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir()
    for path in profiles.iterdir():
        text = path.read_text(encoding="utf-8")
        for ref in set(re.findall(r"/run/secrets/[\w.-]+", text)):
            (secrets_dir / Path(ref).name).write_text(PROFILE_PASSWORD + "\n", encoding="utf-8")
        path.write_text(text.replace("/run/secrets/", f"{secrets_dir}/"), encoding="utf-8")
    base = ["compile", "-p", name, "--profiles-dir", str(profiles), "--no-env"]
    env_run = _dbprofile(*base, "--format", "env", cwd=tmp, ok=False)
    if env_run.returncode == 1:
        raise Refused(env_run.stderr)
    assert env_run.returncode == 0, env_run.stderr
    env_text = env_run.stdout
    (tmp / "spec.json").write_text(_dbprofile(*base, "--format", "json", cwd=tmp).stdout)
    spec = dbprofile.load_spec(tmp / "spec.json")
    # Only the variables the profile references (an unreferenced LETTA_ENCRYPTION_KEY
    # would configure Letta's key and not dbprofile's).
    values = {"LETTA_PG_PASSWORD": PROFILE_PASSWORD, "LETTA_ENCRYPTION_KEY": PROFILE_KEY}
    referenced = [spec.encryption.key, spec.database.password if spec.database else None]
    secrets = {s.ref: values[s.ref] for s in referenced if s is not None and s.source == "env"}
    password = spec.database.password if spec.database else None
    if password is not None and password.source == "literal":
        spec = dbprofile.compile_profile(name, profiles_dir=profiles, environ={})
        secrets["LETTA_PG_PASSWORD"] = spec.database.password.literal  # type: ignore[union-attr]
    elif "LETTA_PG_PASSWORD" in env_text:  # the env output names it: the shell needs it
        secrets["LETTA_PG_PASSWORD"] = PROFILE_PASSWORD
    environ = _sourced_environ(tmp, env_text, secrets)
    return {"id": _case_id(directory, name), "environ": environ}, spec, secrets


REFUSED: dict[str, list[str]] = {}  # profile case id -> the lines `--format env` printed


def _case_id(directory: Path, name: str) -> str:
    return f"profile-{'repo' if directory == ROOT / 'profiles' else directory.parent.name}-{name}"


@pytest.fixture(scope="session")
def profile_comparisons(
    letta_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[Comparison]:
    cases, items = [], []
    for directory, name in PROFILE_SETS:
        tmp = tmp_path_factory.mktemp(f"profile-{name}")
        try:
            case, spec, secrets = profile_case(tmp, directory, name)
        except Refused as exc:
            REFUSED[_case_id(directory, name)] = str(exc).splitlines()
            continue
        cases.append(case)
        items.append((spec, secrets))
    return compare_all(cases, run_probe(cases), run_specs(items))


# Profiles Letta 0.16.8 cannot run as dbprofile does, and the reason `--format env` gives.
# The examples are dbprofile deployments: some use what Letta cannot (SQLite,
# application_name, a pooled connection without TLS), and are refused with that reason.
NO_SQLITE = "engine sqlite: Letta 0.16.x has no SQLite engine"
NO_APPNAME = "database.options.application_name: asyncpg (Letta's driver) takes no such"
EXPECTED_REFUSALS = {
    "profile-repo-base": NO_SQLITE,
    "profile-repo-dev": NO_SQLITE,
    "profile-alembic-local": NO_SQLITE,
    "profile-alembic-postgres": NO_APPNAME,
    "profile-secrets-prod": NO_APPNAME,
    "profile-service-base": NO_SQLITE,
    "profile-service-dev": NO_SQLITE,
    "profile-service-prod": NO_APPNAME,
    "profile-deploy-prod": NO_APPNAME,
    "profile-pgbouncer-prod": "database.options.sslmode=disable: a pooled Letta 0.16.8 forces",
}


def test_every_shipped_profile_is_compared_or_refused_with_a_reason(
    profile_comparisons: list[Comparison],
) -> None:
    ids = {c.case_id for c in profile_comparisons}
    assert {"profile-repo-prod", "profile-repo-test"} <= ids
    assert len(ids) + len(REFUSED) == len(PROFILE_SETS) >= 10
    assert len(ids) >= 2
    bugs = [c.case_id for c in profile_comparisons if c.letta.get("probe_bug")]
    assert not bugs, bugs
    reasons = {}
    for case_id, lines in REFUSED.items():
        name = case_id.rsplit("-", 1)[1]
        errors = [ln for ln in lines if not ln.startswith("warning: ")]
        assert errors
        assert all(ln.startswith(f"profile {name}: --format env: ") for ln in errors), errors
        reasons[case_id] = errors[0].split(": --format env: ", 1)[1]
    assert set(reasons) == set(EXPECTED_REFUSALS), reasons
    for case_id, reason in reasons.items():
        assert reason.startswith(EXPECTED_REFUSALS[case_id]), (case_id, reason)


def test_env_format_makes_letta_behave_as_the_runtime(
    profile_comparisons: list[Comparison],
) -> None:
    report = unexplained_report(profile_comparisons, PROFILE_ROWS)
    assert not report, "`dbprofile compile --format env` vs the JSON spec's runtime:\n" + report


if __name__ == "__main__":  # a report for people: every unexplained disagreement
    all_cases = generate()
    found = compare_all(
        all_cases, run_probe(all_cases), run_cases([c["environ"] for c in all_cases])
    )
    print(unexplained_report(found) or "all agree or differ as documented")
