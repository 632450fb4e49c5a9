"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from cnnlab.engine.errors import CnnlabError

# What the storage itself can answer a write with: a full disk, a quota, a file too big, an I/O
# error, a read-only file system. Other OSErrors (a stalled download feeding the file) are the
# caller's to explain.
_STORAGE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    except OSError as err:
        raise CnnlabError(
            f"cannot write {path}: {err.strerror or err}; choose a writable folder"
        ) from None
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno in _STORAGE_ERRORS:  # path is unchanged
            raise CnnlabError(
                f"cannot write {path}: {err.strerror or err}; {path.name} is left as it was, "
                "free some space or choose another folder"
            ) from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def open_regular_file(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for reading, refusing anything but a regular file: reading a FIFO would
    wait for ever for a writer, and a device may never end. ``OSError`` when it cannot be
    opened at all."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once instead of waiting
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kinds = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO"}
            kind = kinds.get(stat.S_IFMT(mode), "a device or socket")
            raise CnnlabError(f"{path}: is {kind}, not a regular file; give the path of a file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refused (``CnnlabError``, one line) when it is
    not a regular file or holds more than ``limit`` bytes; a link to ``/dev/zero`` or a FIFO
    costs nothing. ``OSError`` when it cannot be opened at all."""
    with open_regular_file(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise CnnlabError(
            f"{path}: refused: more than {limit:,} bytes, more than such a file ever holds"
        )
    return data
