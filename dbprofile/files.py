"""The one guarded way to read and to write a file a user names (profiles, secret
files, key files, specs, schema files, documents to edit, --output), and standard input.

A user's path may name anything: a FIFO (which would block a plain ``open``), a device
(``/dev/zero`` never ends), a directory, a huge file, bytes that are not UTF-8. Every
read goes through :func:`read_user_file` / :func:`read_user_stream`, which accept only a
regular file (links followed), bounded in size, as UTF-8 text, and otherwise raise
:class:`UserFileError` whose ``reason`` is one line for the caller's message.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import stat
from collections.abc import Mapping
from typing import BinaryIO

from attrs import evolve, field, frozen

__all__ = [
    "MAX_FILE_BYTES",
    "UserFileError",
    "read_user_bytes",
    "read_user_file",
    "read_user_stream",
]

MAX_FILE_BYTES = 1024 * 1024


class UserFileError(Exception):
    """A file a user named cannot be read as text; ``reason`` says why in one line, and
    ``line``/``col`` point at an undecodable byte."""

    def __init__(self, path: str, reason: str, line: int = 0, col: int = 0) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.line = line
        self.col = col


def read_user_bytes(path: str | os.PathLike[str], *, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file (links followed), at most ``limit``; never blocks."""
    label = os.fspath(path)
    if "\0" in label:
        raise UserFileError(label.replace("\0", "\\0"), "a path cannot contain a NUL byte")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat on the open file
        # (not stat on the name) so the file checked is the file read.
        fd = os.open(label, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UserFileError(label, _missing(label)) from None
    except IsADirectoryError:
        raise UserFileError(label, "is a directory, not a file") from None
    except OSError as exc:
        raise UserFileError(label, f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise UserFileError(label, "is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise UserFileError(label, "not a regular file (a device, FIFO or socket)")
        if st.st_size > limit:
            raise UserFileError(label, f"file too large: {st.st_size} bytes (limit {limit})")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise UserFileError(label, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UserFileError(label, f"file too large: over {limit} bytes")
    return data


def _missing(label: str) -> str:
    """Why a path that cannot be found is missing: a dangling link, or nothing there."""
    if os.path.islink(label):
        return "is a broken symbolic link (its target does not exist)"
    return "does not exist"


def _decode(label: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UserFileError(
            label, f"not UTF-8 text: invalid byte 0x{data[exc.start]:02x}", line, col
        ) from None


def read_user_file(
    path: str | os.PathLike[str], *, what: str = "file", limit: int = MAX_FILE_BYTES
) -> str:
    """The UTF-8 text of a regular file a user named (see module doc)."""
    del what  # callers name the file kind in their own message
    return _decode(os.fspath(path), read_user_bytes(path, limit=limit))


def read_user_stream(
    stream: BinaryIO, *, label: str = "standard input", limit: int = MAX_FILE_BYTES
) -> str:
    """Standard input (or another stream), bounded like a file."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise UserFileError(label, f"input too large: over {limit} bytes")
    return _decode(label, data)


# ----------------------------------------------------------------------- writing
#
# The one guarded way to write a file a user names (--output, in-place edits):
# - through a symlink, the real file is replaced (the link stays a link);
# - a target that exists must be a regular file (never a FIFO, a device, a directory);
# - the new file keeps the old one's mode and owner; a new file gets 0666 less umask;
# - a read-only target is refused unless ``force``; for in-place edits a hard-linked
#   file is refused (the old text would live on under its other name) and a file that
#   changed since it was read is refused (a concurrent edit is never lost);
# - the text goes to a temporary file beside the target, fsynced, then renamed over it.


@frozen
class Snapshot:
    """What a file was when it was read, to detect a change before replacing it."""

    real: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    # The text began with a UTF-8 byte-order mark (kept when rewritten); not part of
    # the identity that detects a change.
    bom: bool = field(default=False, eq=False)


def _real_target(path: str | os.PathLike[str]) -> str:
    label = os.fspath(path)
    if "\0" in label:
        raise UserFileError(label.replace("\0", "\\0"), "a path cannot contain a NUL byte")
    return os.path.realpath(label)


def snapshot_of(path: str | os.PathLike[str]) -> Snapshot:
    """The :class:`Snapshot` of an existing file (links followed)."""
    real = _real_target(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise UserFileError(os.fspath(path), _missing(os.fspath(path))) from None
    except OSError as exc:
        raise UserFileError(os.fspath(path), f"cannot read: {exc.strerror or exc}") from None
    return Snapshot(real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def read_for_edit(path: str | os.PathLike[str]) -> tuple[str, Snapshot]:
    """The text of a file about to be edited in place, and its snapshot (taken first, so
    a change made while reading is caught too)."""
    before = snapshot_of(path)
    data = read_user_bytes(path)
    text = _decode(os.fspath(path), data)
    return text, evolve(before, bom=data.startswith(codecs.BOM_UTF8))


def _check_target(label: str, real: str, *, force: bool, in_place: bool) -> os.stat_result | None:
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserFileError(label, f"cannot write: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserFileError(label, "is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise UserFileError(label, "not a regular file (a device, FIFO or socket): not replaced")
    if not force and not st.st_mode & stat.S_IWUSR:
        raise UserFileError(label, "is read-only; make it writable first (chmod u+w)")
    if in_place and st.st_nlink > 1:
        raise UserFileError(
            label,
            f"has {st.st_nlink} hard links: the old text would stay under the other "
            "name(s); copy it to a file of its own first",
        )
    return st


def _stage(real: str, text: str, st: os.stat_result | None) -> str:
    directory = os.path.dirname(real) or "."
    import tempfile  # only when writing: compiling to stdout never loads it

    fd, tmp = tempfile.mkstemp(
        prefix=f".{os.path.basename(real)}.", suffix=".dbprofile-tmp", dir=directory
    )
    try:
        if st is not None:
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, 0):
                os.fchown(fd, st.st_uid, st.st_gid)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _unchanged(path: str | os.PathLike[str], before: Snapshot | None) -> None:
    if before is not None and snapshot_of(path) != before:
        raise UserFileError(os.fspath(path), "changed since it was read; nothing was written")


def replace_files(
    texts: Mapping[str | os.PathLike[str], tuple[str, Snapshot | None]],
    *,
    force: bool = False,
) -> None:
    """Replace each file with its text, all or none (see the section comment). A target
    given with a :class:`Snapshot` is edited in place: it must be unchanged since."""
    staged: list[tuple[str, str]] = []
    try:
        for path, (text, before) in texts.items():
            label = os.fspath(path)
            real = _real_target(path)
            st = _check_target(label, real, force=force, in_place=before is not None)
            _unchanged(path, before)
            try:
                staged.append((_stage(real, text, st), real))
            except OSError as exc:
                raise UserFileError(label, f"cannot write: {exc.strerror or exc}") from None
        for path, (_, before) in texts.items():  # once more, as late as possible
            _unchanged(path, before)
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    for tmp, real in staged:
        os.replace(tmp, real)
    for directory in {os.path.dirname(real) or "." for _, real in staged}:
        _fsync_dir(directory)


def write_user_file(path: str | os.PathLike[str], text: str, *, force: bool = False) -> None:
    """Write ``text`` to a file a user named (``--output``), guarded as above; parent
    directories are created."""
    real = _real_target(path)
    parent = os.path.dirname(real)
    if parent:
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise UserFileError(os.fspath(path), f"cannot write: {exc.strerror or exc}") from None
    replace_files({path: (text, None)}, force=force)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
