"""The one guarded way to read a file a user names (profiles, secret files, key files,
specs, schema files, documents to edit) and standard input.

A user's path may name anything: a FIFO (which would block a plain ``open``), a device
(``/dev/zero`` never ends), a directory, a huge file, bytes that are not UTF-8. Every
read goes through :func:`read_user_file` / :func:`read_user_stream`, which accept only a
regular file (links followed), bounded in size, as UTF-8 text, and otherwise raise
:class:`UserFileError` whose ``reason`` is one line for the caller's message.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

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
        raise UserFileError(label, "does not exist") from None
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
