"""Commands: keygen, encrypt, decrypt, rotate-key, encrypt-column.

Secrets never reach stdout or stderr except where the operator asks for exactly that
(``keygen`` prints a new key, ``decrypt`` a plaintext, ``encrypt --path`` a ciphertext).
Messages name keys, variables, files and key ids, never values.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from dbprofile.cli.common import Context, add_profile_options, add_subparser, compile_from_args
from dbprofile.errors import (
    ConnectionCheckError,
    DatabaseTimeoutError,
    DecryptionError,
    SecretError,
    UsageError,
)
from dbprofile.keys import env_of
from dbprofile.text import shown

if TYPE_CHECKING:
    from dbprofile.editing import ProfileDocument

KEY_ENV = env_of("encryption.key")
MAX_BATCH = 100_000  # rows per transaction

_KEY_HELP = """\
The key comes from --key-env VAR (default $(env:encryption.key)) or --key-file PATH:
any string (UTF-8); `dbprofile keygen` makes a good one. Keep it out of profiles."""


GROUP = "secrets"  # the heading of these commands in dbprofile --help


def register(sub: Any, ctx: Context) -> None:
    """Add this module's subcommands to the parser."""
    p = add_subparser(
        sub,
        ctx,
        "keygen",
        summary="print a new random encryption key",
        description="""\
Print a new random key (32 bytes from the operating system, URL-safe base64) for
$(env:encryption.key). Store it in your secret manager, not in a profile.

examples:
  dbprofile keygen
  export $(env:encryption.key)="$(dbprofile keygen)\"""",
    )
    p.set_defaults(handler=cmd_keygen)

    p = add_subparser(
        sub,
        ctx,
        "encrypt",
        summary="encrypt a secret in a profile file, or a value from stdin",
        description=f"""\
Encrypt a secret as an enc:v1: value (AES-256-GCM; the key path is bound to it, so
the value only opens at that key).

  --in-place FILE KEY.PATH   encrypt the literal at KEY.PATH in FILE and write the
                             file back (comments, order and layout kept; atomic)
  --path KEY.PATH            read the value on stdin (one trailing newline dropped)
                             and print the encrypted string

KEY.PATH must be a secret field (database.password; not encryption.key). A value
that is already encrypted, or a reference ({{env = ...}}, {{file = ...}}), is refused.
{_KEY_HELP}

examples:
  dbprofile encrypt --in-place profiles/prod.yaml database.password
  printf %s "$PGPASSWORD" | dbprofile encrypt --path database.password""",
    )
    p.add_argument("--in-place", action="store_true", help="edit FILE in place")
    p.add_argument(
        "--path", metavar="KEY.PATH", help="key path the stdin value is for (prints the value)"
    )
    p.add_argument("file", nargs="?", metavar="FILE", help="profile file (with --in-place)")
    p.add_argument("key_path", nargs="?", metavar="KEY.PATH", help="e.g. database.password")
    _add_key_options(p)
    p.set_defaults(handler=cmd_encrypt)

    p = add_subparser(
        sub,
        ctx,
        "decrypt",
        summary="print the plaintext of an encrypted value",
        description=f"""\
Print the plaintext of the enc:v1: value at KEY.PATH in FILE (or, with --path, of
the value read on stdin). Meant for operators; the plaintext goes to stdout.
{_KEY_HELP}

examples:
  dbprofile decrypt profiles/prod.yaml database.password
  echo "enc:v1:…" | dbprofile decrypt --path database.password""",
    )
    p.add_argument("--path", metavar="KEY.PATH", help="decrypt the value on stdin, for KEY.PATH")
    p.add_argument("file", nargs="?", metavar="FILE", help="profile file")
    p.add_argument("key_path", nargs="?", metavar="KEY.PATH", help="e.g. database.password")
    _add_key_options(p)
    p.set_defaults(handler=cmd_decrypt)

    p = add_subparser(
        sub,
        ctx,
        "rotate-key",
        summary="re-encrypt every encrypted value in profile files with a new key",
        description=f"""\
Re-encrypt every enc:v1: value in the FILEs from the current key to the new key
(--new-key-env VAR or --new-key-file PATH). Every value is opened and re-encrypted
before anything is written; any problem leaves all files untouched. Files are then
replaced atomically: a kill leaves each file wholly old or wholly new, and running the
same command again finishes the rotation (values already under the new key are
verified and kept).
{_KEY_HELP}

examples:
  export NEW_KEY="$(dbprofile keygen)"   # $(env:encryption.key) holds the current key
  dbprofile rotate-key --new-key-env NEW_KEY profiles/*.yaml profiles/*.toml""",
    )
    new_key = p.add_mutually_exclusive_group(required=True)
    new_key.add_argument(
        "--new-key-env", metavar="VAR", help="environment variable holding the new key"
    )
    new_key.add_argument(
        "--new-key-file",
        metavar="PATH",
        help="file holding the new key (a mounted secret; one trailing newline is dropped)",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="profile files to rotate")
    _add_key_options(p)
    p.set_defaults(handler=cmd_rotate_key)

    p = add_subparser(
        sub,
        ctx,
        "encrypt-column",
        summary="encrypt a table column in Letta's format (resumable backfill)",
        description="""\
Encrypt SOURCE_COLUMN into TARGET_COLUMN of TABLE, in Letta's ciphertext format, for
every row whose target is empty or holds legacy plaintext. Rows are read in primary-key
order (keyset pagination, no OFFSET: no row is skipped), each batch committed on its
own; a killed run can simply be run again, and a re-run changes nothing. Rows whose
target looks encrypted but does not open with the key are reported and left alone
(exit 1). SOURCE and TARGET may be the same column (encrypt in place).

The database and the key come from the profile (encryption.key, normally
{env = "$(env:encryption.key)"}); a progress bar goes to stderr.

examples:
  dbprofile encrypt-column --profile prod providers api_key api_key_enc --dry-run
  dbprofile encrypt-column --profile prod providers api_key api_key_enc --batch 1000""",
    )
    add_profile_options(p)
    p.add_argument("table", metavar="TABLE")
    p.add_argument("source", metavar="SOURCE_COLUMN")
    p.add_argument("target", metavar="TARGET_COLUMN")
    p.add_argument("--schema", metavar="SCHEMA", help="database schema holding TABLE")
    p.add_argument(
        "--batch", type=int, default=500, metavar="N", help="rows per transaction (default 500)"
    )
    p.add_argument("--dry-run", action="store_true", help="count what would change; write nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(handler=cmd_encrypt_column)


def _add_key_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--key-env",
        metavar="VAR",
        default=KEY_ENV,
        help="environment variable holding the key (default: $(env:encryption.key))",
    )
    group.add_argument("--key-file", metavar="PATH", help="file holding the key")


# ------------------------------------------------------------------------- helpers


def _resolve_key(args: argparse.Namespace, ctx: Context, *, label: str = "encryption key") -> str:
    from dbprofile.runtime.resolve import resolve_secret
    from dbprofile.spec import Secret

    if args.key_file:
        secret = Secret("file", args.key_file, "encryption.key")
    else:
        secret = Secret("env", args.key_env, "encryption.key")
    key = resolve_secret(secret, ctx.environ)
    if key in ("", "None"):
        raise SecretError("encryption.key", f"the {label} ({secret.describe()}) is empty")
    return key


def _read_stdin(ctx: Context, what: str) -> str:
    """The value on standard input, bounded like a file (``< /dev/zero`` is refused)."""
    from dbprofile.files import UserFileError, read_user_stream

    stream: IO[Any] = getattr(ctx, "stdin", None) or sys.stdin
    binary = stream.buffer if hasattr(stream, "buffer") else None
    try:
        if binary is not None:
            text = read_user_stream(binary, limit=MAX_STDIN)
        else:
            text = stream.read(MAX_STDIN + 1)
            if len(text) > MAX_STDIN:
                raise UserFileError("standard input", f"input too large: over {MAX_STDIN} bytes")
    except UserFileError as exc:
        raise SecretError("", f"the {what} on standard input: {exc.reason}") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if text == "":
        raise UsageError(f"no {what} on standard input")
    return text


MAX_STDIN = 64 * 1024  # a secret, not a file


def _load(path: str) -> ProfileDocument:
    from dbprofile.editing import load_document

    return load_document(path)


def _string_at(doc: ProfileDocument, key_path: str) -> str:
    value = doc.get(key_path)
    if isinstance(value, Mapping):
        kinds = "/".join(str(k) for k in value) or "table"
        raise doc.problem(key_path, f"holds a reference ({kinds}), not a literal value")
    if not isinstance(value, str):
        raise doc.problem(key_path, "is not a string")
    return str(value)


def _mode(args: argparse.Namespace, command: str) -> tuple[str | None, str]:
    """(file or None for stdin mode, key path) from the two forms of a command."""
    if args.path is not None:
        if args.file is not None or getattr(args, "in_place", False):
            raise UsageError(f"{command}: --path reads stdin; it takes no FILE or --in-place")
        return None, args.path
    if args.file is None or args.key_path is None:
        raise UsageError(
            f"{command}: give FILE KEY.PATH, or --path KEY.PATH with the value on stdin"
        )
    return args.file, args.key_path


# ------------------------------------------------------------------------ commands


def cmd_keygen(args: argparse.Namespace, ctx: Context) -> int:
    from dbprofile.crypto import generate_key

    ctx.out(generate_key())
    return 0


def _check_encryptable(key_path: str) -> None:
    """Only secret fields take enc:v1 values (the schema refuses them elsewhere), and
    the encryption key cannot be one: it is what opens them."""
    from dbprofile.keys import SECRET_PATHS

    fields = sorted(".".join(p) for p in SECRET_PATHS if ".".join(p) != "encryption.key")
    if key_path == "encryption.key":
        raise UsageError("encryption.key cannot be encrypted: it is the key that opens the others")
    if key_path not in fields:
        raise UsageError(f"{key_path} is not a secret field; encrypt takes: {', '.join(fields)}")


def cmd_encrypt(args: argparse.Namespace, ctx: Context) -> int:
    from dbprofile import crypto
    from dbprofile.editing import write_files

    file, key_path = _mode(args, "encrypt")
    _check_encryptable(key_path)
    if file is not None and not args.in_place:
        raise UsageError("encrypt FILE KEY.PATH rewrites FILE: say so with --in-place")
    if file is None:
        value = _read_stdin(ctx, "value")
        key = _resolve_key(args, ctx)
        ctx.out(crypto.seal_value(value, key=key, key_path=key_path))
        return 0
    doc = _load(file)
    value = _string_at(doc, key_path)
    if crypto.is_encrypted(value):
        raise doc.problem(key_path, "is already encrypted; refusing to encrypt it again")
    key = _resolve_key(args, ctx)
    doc.set(key_path, crypto.seal_value(value, key=key, key_path=key_path))
    write_files([doc])
    ctx.err(f"encrypted {key_path} in {file} with key {crypto.key_id(key)}")
    return 0


def cmd_decrypt(args: argparse.Namespace, ctx: Context) -> int:
    from dbprofile import crypto

    file, key_path = _mode(args, "decrypt")
    if file is None:
        token = _read_stdin(ctx, "encrypted value")
        key = _resolve_key(args, ctx)
        ctx.out(crypto.open_value(token, key=key, key_path=key_path))
        return 0
    doc = _load(file)
    token = _string_at(doc, key_path)
    if not crypto.is_encrypted(token):
        raise doc.problem(key_path, "is not an encrypted value")
    key = _resolve_key(args, ctx)
    try:
        ctx.out(crypto.open_value(token, key=key, key_path=key_path))
    except DecryptionError as exc:
        raise doc.problem(key_path, exc.detail) from None
    return 0


def cmd_rotate_key(args: argparse.Namespace, ctx: Context) -> int:
    from dbprofile.editing import rotate_files
    from dbprofile.runtime.resolve import resolve_secret
    from dbprofile.spec import Secret

    old_key = _resolve_key(args, ctx, label="current key")
    if args.new_key_file:
        source = Secret("file", args.new_key_file, "--new-key-file")
        where = args.new_key_file
    else:
        source = Secret("env", args.new_key_env, "--new-key-env")
        where = args.new_key_env
    new_key = resolve_secret(source, ctx.environ)
    if new_key in ("", "None"):
        raise SecretError("", f"the new key ({source.describe()}) is empty")
    if new_key == old_key:
        raise SecretError("", f"the new key ({where}) is the same as the current key")
    ctx.err(rotate_files(args.files, old_key=old_key, new_key=new_key).summary())
    return 0


class _Progress:
    """A progress bar on stderr (a redrawn line on a terminal, a few lines otherwise)."""

    def __init__(self, stream: IO[str], *, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.next_percent = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        percent = 100 if total <= 0 else min(100, done * 100 // total)
        if self.tty:
            filled = percent * 30 // 100
            bar = "#" * filled + "." * (30 - filled)
            self.stream.write(f"\r[{bar}] {done}/{total} rows {percent:3d}%")
            if done >= total:
                self.stream.write("\n")
            self.stream.flush()
        elif percent >= self.next_percent:
            self.stream.write(f"progress: {done}/{total} rows ({percent}%)\n")
            self.next_percent = percent - percent % 10 + 10


def cmd_encrypt_column(args: argparse.Namespace, ctx: Context) -> int:
    import sqlalchemy as sa

    from dbprofile.runtime.encrypted import encrypt_column
    from dbprofile.runtime.engines import create_engine
    from dbprofile.runtime.resolve import resolve_encryption_key

    if not 1 <= args.batch <= MAX_BATCH:
        raise UsageError(f"--batch must be from 1 to {MAX_BATCH}, got {shown(str(args.batch))}")
    spec = compile_from_args(args, ctx)
    key = resolve_encryption_key(spec, ctx.environ)
    if key is None or key in ("", "None"):
        raise SecretError(
            "encryption.key",
            f"no encryption key configured (set {env_of('encryption.key')}, or encryption.key "
            "in the profile)",
        )
    engine = create_engine(spec, environ=ctx.environ)
    try:
        result = encrypt_column(
            engine,
            args.table,
            args.source,
            args.target,
            key=key,
            batch=args.batch,
            dry_run=args.dry_run,
            schema=args.schema,
            progress=_Progress(ctx.stderr, enabled=not args.no_progress),
        )
    except (sa.exc.SQLAlchemyError, DatabaseTimeoutError) as exc:  # incl. a failed connect
        if ctx.traceback:
            raise
        from dbprofile.runtime.diagnose import describe_failure

        kind, message = describe_failure(exc, url=spec.url, secrets=(key,))
        raise ConnectionCheckError(kind, f"encrypt-column: {message}") from None
    finally:
        engine.dispose()
    ctx.out(result.summary())
    return 1 if result.unreadable else 0
