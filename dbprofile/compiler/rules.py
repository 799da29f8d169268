"""Production rules: ``dbprofile validate --strict`` on the production profiles.

Each rule has a code (``DBP`` + three digits) and checks the *merged* profile (its
extends chain, and the environment when ``--env`` is given); a problem is reported where
the offending value was written (``Merged.locate``) and names its origin (the ``explain``
line). Silence one rule for one key with a comment on the key's line, with a reason::

    sslmode = "disable"  # dbprofile: ignore[DBP101] the sidecar proxy terminates TLS

or project-wide with ``ignore = ["DBP101"]`` in ``[tool.dbprofile]``
(:mod:`dbprofile.project`). The catalogue is :data:`RULES`; to add a rule, write a
function ``(spec, merged) -> list[Finding]`` and list it there with its code. Timeout
keys are :data:`TIMEOUT_KEYS`: when a new timeout setting lands in the key model, add its
path there (one line) and DBP107 accepts it.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from attrs import frozen

from dbprofile.compiler.load import KeyPath
from dbprofile.compiler.merge import Merged, Step
from dbprofile.compiler.pipeline import CompileOne, compiler_for
from dbprofile.errors import Problem, ProblemsFound
from dbprofile.files import UserFileError, read_user_file
from dbprofile.keys import KEYS_BY_PATH, env_of
from dbprofile.spec import EngineSpec, Secret

__all__ = ["RULES", "TIMEOUT_KEYS", "Finding", "Rule", "check_rules", "strict_problems"]

TLS_OK = ("require", "verify-ca", "verify-full")
PGBOUNCER_PORT = 6432
PGBOUNCER_HOST = re.compile(r"bouncer", re.IGNORECASE)
# Keys that bound how long a connection attempt may wait: any one set satisfies DBP107.
TIMEOUT_KEYS: tuple[KeyPath, ...] = (
    ("database", "options", "connect_timeout"),
    *(
        tuple(path.split("."))
        for path in KEYS_BY_PATH
        if path.startswith("database.") and path.endswith("connect_timeout")
    ),
)
IGNORE_COMMENT = re.compile(r"#\s*dbprofile:\s*ignore\[([A-Z0-9, ]+)\]\s*(.*)$")


@frozen
class Finding:
    """A rule's finding: the key it is about and what is wrong."""

    path: KeyPath
    message: str


@frozen
class Rule:
    code: str
    summary: str
    check: Callable[[EngineSpec, Merged], list[Finding]]


def _options(spec: EngineSpec) -> dict[str, str]:
    return dict(spec.database.options) if spec.database else {}


def _tls(spec: EngineSpec, merged: Merged) -> list[Finding]:
    if spec.engine != "postgresql":
        return []
    mode = _options(spec).get("sslmode")
    if mode in TLS_OK:
        return []
    got = f", got {mode!r}" if mode else " (unset: libpq's default 'prefer' falls back to "
    got += "" if mode else "plain text)"
    return [
        Finding(
            ("database", "options", "sslmode"),
            f"TLS must be at least 'require' (verify-full with sslrootcert is best){got}",
        )
    ]


def _root_cert(spec: EngineSpec, merged: Merged) -> list[Finding]:
    options = _options(spec)
    mode = options.get("sslmode")
    if mode in ("verify-ca", "verify-full") and "sslrootcert" not in options:
        return [
            Finding(
                ("database", "options", "sslmode"),
                f"sslmode {mode} needs database.options.sslrootcert (the CA that signed the "
                "server's certificate)",
            )
        ]
    return []


def _secrets(spec: EngineSpec) -> list[Secret]:
    found = [spec.encryption.key]
    if spec.database is not None:
        found.append(spec.database.password)
    return [s for s in found if s is not None]


def _literal_secrets(spec: EngineSpec, merged: Merged) -> list[Finding]:
    return [
        Finding(
            tuple(s.key_path.split(".")),
            'literal secret; use {env = "VAR"}, {file = "PATH"} or `dbprofile encrypt`',
        )
        for s in _secrets(spec)
        if s.source == "literal"
    ]


def _pre_ping(spec: EngineSpec, merged: Merged) -> list[Finding]:
    if spec.engine == "postgresql" and spec.pool.enabled and not spec.pool.pre_ping:
        return [Finding(("pool", "pre_ping"), "a pooled engine must pre-ping, got false")]
    return []


def _recycle(spec: EngineSpec, merged: Merged) -> list[Finding]:
    if spec.engine == "postgresql" and spec.pool.enabled and spec.pool.recycle < 0:
        return [
            Finding(
                ("pool", "recycle"),
                "a pooled engine must recycle its connections (e.g. 1800), got -1 (never)",
            )
        ]
    return []


def _monitoring(spec: EngineSpec, merged: Merged) -> list[Finding]:
    if not spec.monitoring.enabled:
        return [Finding(("monitoring", "enabled"), "monitoring must be on, got false")]
    return []


def _timeouts(spec: EngineSpec, merged: Merged) -> list[Finding]:
    if spec.engine != "postgresql":
        return []
    for path in TIMEOUT_KEYS:
        node: object = merged.tree
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return []
    names = " or ".join(".".join(p) for p in TIMEOUT_KEYS)
    return [
        Finding(
            TIMEOUT_KEYS[0],
            f"no connect timeout: set {names} (libpq waits forever for an unreachable host)",
        )
    ]


def _pgbouncer(spec: EngineSpec, merged: Merged) -> list[Finding]:
    db = spec.database
    if db is None or db.pgbouncer:
        return []
    hosts = [db.host or ""] + [v for k, v in db.options if k == "host"]
    if db.port == PGBOUNCER_PORT or any(PGBOUNCER_HOST.search(h) for h in hosts):
        why = f"port {PGBOUNCER_PORT}" if db.port == PGBOUNCER_PORT else "host name"
        return [
            Finding(
                ("database", "pgbouncer"),
                f"the server looks like PgBouncer ({why}): set database.pgbouncer = true "
                f"({env_of('database.pgbouncer')}) so prepared statements stay off",
            )
        ]
    return []


def _secret_files(spec: EngineSpec, merged: Merged) -> list[Finding]:
    found = []
    for secret in _secrets(spec):
        if secret.source != "file":
            continue
        try:
            mode = os.stat(os.path.expanduser(secret.ref)).st_mode
        except OSError:
            continue  # absent at compile time: the runtime reports it
        if mode & stat.S_IROTH:
            found.append(
                Finding(
                    tuple(secret.key_path.split(".")),
                    f"secret file {secret.ref} is world-readable (mode "
                    f"{stat.S_IMODE(mode):04o}); chmod 600 or 640 it",
                )
            )
    return found


RULES: tuple[Rule, ...] = (
    Rule("DBP101", "TLS at least sslmode=require", _tls),
    Rule("DBP102", "verify-ca/verify-full need sslrootcert", _root_cert),
    Rule("DBP103", "no literal secrets", _literal_secrets),
    Rule("DBP104", "pooled engines pre-ping", _pre_ping),
    Rule("DBP105", "pooled engines recycle connections", _recycle),
    Rule("DBP106", "monitoring on", _monitoring),
    Rule("DBP107", "a connect timeout is set", _timeouts),
    Rule("DBP108", "PgBouncer mode when the server looks like PgBouncer", _pgbouncer),
    Rule("DBP109", "secret files are not world-readable", _secret_files),
)


def check_rules(
    spec: EngineSpec, merged: Merged, enabled: Callable[[str], bool] = lambda _: True
) -> list[Problem]:
    """Every enabled rule's findings as problems, each where the value was written and
    naming its origin; findings silenced by an inline ignore comment are dropped."""
    problems: list[Problem] = []
    comments = _Comments()
    for rule in RULES:
        if not enabled(rule.code):
            continue
        for finding in rule.check(spec, merged):
            file, line, _ = merged.locate(finding.path)
            top = _top_step(merged, finding.path)
            ignored, note = comments.ignores(file, line, rule.code)
            if ignored:
                continue
            problems.append(
                Problem(
                    file or f"profile {spec.profile}",
                    line,
                    key=".".join(finding.path),
                    message=finding.message + note,
                    origin=top.origin if top is not None else "",
                    rule=rule.code,
                )
            )
    return problems


def _top_step(merged: Merged, path: KeyPath) -> Step | None:
    for i in range(len(path), 0, -1):
        step = merged.top(path[:i])
        if step is not None:
            return step
    return None


class _Comments:
    """Inline ``# dbprofile: ignore[CODE] reason`` comments, read once per file."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}

    def ignores(self, file: str, line: int, code: str) -> tuple[bool, str]:
        """(silenced, note for the message) for ``code`` at ``file:line``."""
        if not line or not file or file.startswith(("env ", "--set", "default")):
            return False, ""
        if file not in self.lines:
            try:
                self.lines[file] = read_user_file(Path(file), what="profile").splitlines()
            except UserFileError:
                self.lines[file] = []
        text = self.lines[file][line - 1] if line <= len(self.lines[file]) else ""
        match = IGNORE_COMMENT.search(text)
        if match is None:
            return False, ""
        codes = {c.strip() for c in match.group(1).split(",")}
        if code not in codes:
            return False, ""
        if not match.group(2).strip():
            return False, f"; the ignore comment on this line needs a reason after ignore[{code}]"
        return True, ""


def strict_problems(
    names: Iterable[str],
    profiles_dir: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    enabled: Callable[[str], bool] = lambda _: True,
    compile_one: CompileOne | None = None,
) -> tuple[list[Problem], int]:
    """The production rules on each named profile: (problems, profiles checked).
    A profile that does not compile reports its compile problems instead;
    ``compile_one`` as for :func:`~dbprofile.compiler.pipeline.validate_profiles`."""
    problems: list[Problem] = []
    checked = 0
    for name in names:
        try:
            compiled = (compile_one or compiler_for(environ))(name, Path(profiles_dir))
        except ProblemsFound as exc:
            problems.extend(exc.problems)
            continue
        checked += 1
        problems.extend(check_rules(compiled.spec, compiled.merged, enabled))
    return problems, checked
