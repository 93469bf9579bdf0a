"""Atomic (and optionally durable) file writes: a temporary file beside the target, renamed over it.

A failure (disk full, an exception while producing the data) removes the temporary file and leaves
the old file as it was. ``durable=True`` (annotation saves) also ``fsync``\\s the temporary file
before the rename and the folder after it (where the OS supports it), so the new file survives a
power cut. ``durable=False`` (bulk dataset writing, thousands of chunk files) skips both: the file
is complete when the call returns, and the OS flushes it later.

An existing file keeps its permission bits; a new one gets ``0o666`` minus the umask, as ``open()``
gives it (the umask is read at import, :func:`read_umask`). Missing folders are created
(``parents``); when durable, the folder holding each new folder is synced too, so the new folder
survives a power cut with the file.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Self

__all__ = [
    "AtomicFile",
    "atomic_open",
    "atomic_write_blocks",
    "atomic_write_bytes",
    "fsync_dir",
    "make_folders",
    "new_file_mode",
    "read_umask",
    "remove_if_exists",
]

COPY_PIECE_BYTES = 16 * 2**20  # fallback copy (no copy_file_range): bytes per read
_NO_COPY_RANGE = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM)
# chmod refused by file systems without Unix permissions (vfat, exFAT, some SMB/NFS mounts): the write still counts
_NO_CHMOD = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)


def _umask_from_proc() -> int | None:
    """The umask from ``/proc/self/status`` (Linux >= 4.7), without changing it; None elsewhere."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def read_umask() -> int:
    """Read the process umask (again) and keep it for :func:`new_file_mode`; done once at import.

    Reads ``/proc/self/status`` where it exists; elsewhere sets and restores ``os.umask``, which is
    process-global (another thread creating a file in between would get the temporary value), so call
    this only where no other thread creates files, e.g. after changing the umask."""
    global _umask
    mask = _umask_from_proc()
    if mask is None:
        mask = os.umask(0o022)
        os.umask(mask)
    _umask = mask
    return mask


def new_file_mode() -> int:
    """Permission bits of a new file: ``0o666`` minus the umask read by :func:`read_umask`."""
    return 0o666 & ~_umask


_umask = 0o022
read_umask()


def make_folders(folder: str | os.PathLike) -> list[Path]:
    """Create ``folder`` and its missing parents; the folders created, outermost first (none if it existed)."""
    folder = Path(folder)
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    created = []
    for f in reversed(missing):
        try:
            f.mkdir()
        except FileExistsError:
            if not f.is_dir():
                raise
            continue  # made by someone else meanwhile: theirs to sync
        created.append(f)
    return created


def fsync_dir(folder: str | os.PathLike) -> None:
    """``fsync`` a folder so a rename inside it is on disk; skipped where folders cannot be opened or
    synced (Windows, some network file systems)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EACCES, errno.EPERM):
            raise
    finally:
        os.close(fd)


def remove_if_exists(path) -> None:
    """``os.unlink`` that accepts a missing file."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class AtomicFile:
    """A temporary file beside ``path`` that replaces it on :meth:`commit` and is removed otherwise
    (leaving the ``with`` block without a commit, or :meth:`abort`).

    Writes go through the raw descriptor ``fd`` (:meth:`write`, :meth:`pwrite`), copies from another
    file through ``os.copy_file_range`` (falling back to reads and writes). ``durable`` as in the
    module docstring; ``sync_dir=False`` leaves the folder ``fsync``\\s to the caller (one per folder
    after many files, see :func:`fsync_dir`: the file's folder and the parent of each folder in
    ``created_folders``); ``parents``: create missing folders (listed in ``created_folders``).
    """

    def __init__(self, path: str | os.PathLike, *, durable: bool = True, sync_dir: bool = True, parents: bool = True):
        import tempfile

        self.path = Path(path)
        self.durable = durable
        self.sync_dir = sync_dir
        #: folders this file's creation made, outermost first
        self.created_folders: list[Path] = make_folders(self.path.parent) if parents else []
        try:
            self.mode = os.stat(self.path).st_mode & 0o777
        except FileNotFoundError:
            self.mode = new_file_mode()
        self.fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self._open = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if self._open:
            self.abort()

    def write(self, data) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            n = os.write(self.fd, view)
            view = view[n:]

    def pwrite(self, data, offset: int) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def copy_from(self, src_fd: int, offset: int, length: int) -> None:
        """Append ``length`` bytes of ``src_fd`` starting at ``offset``."""
        while length > 0:
            try:
                n = os.copy_file_range(src_fd, self.fd, length, offset)
            except OSError as err:
                if err.errno not in _NO_COPY_RANGE:
                    raise
                n = self._copy_slow(src_fd, offset, length)
            if n == 0:
                raise OSError(errno.EIO, f"source ended at byte {offset}, {length} more bytes expected")
            offset, length = offset + n, length - n

    def _copy_slow(self, src_fd: int, offset: int, length: int) -> int:
        data = os.pread(src_fd, min(length, COPY_PIECE_BYTES), offset)
        self.write(data)
        return len(data)

    def commit(self) -> None:
        """Replace ``path`` with the written file (synced first when durable)."""
        try:
            self._chmod()
            if self.durable:
                os.fsync(self.fd)
        except BaseException:
            self.abort()
            raise
        self._open = False  # the descriptor is gone even when close reports an error
        try:
            os.close(self.fd)  # NFS reports delayed write errors here
            os.replace(self.tmp, self.path)
        except BaseException:
            remove_if_exists(self.tmp)
            raise
        if self.durable and self.sync_dir:
            for folder in self.folders_to_sync():
                fsync_dir(folder)

    def folders_to_sync(self) -> list[Path]:
        """The folders whose entries this commit changes: the file's, and the parent of each created folder."""
        folders = [self.path.parent] + [f.parent for f in reversed(self.created_folders)]
        return list(dict.fromkeys(folders))

    def _chmod(self) -> None:
        """Give the temporary file ``mode``; best effort where the file system has no Unix permissions."""
        try:
            os.fchmod(self.fd, self.mode)
        except OSError as err:
            if err.errno not in _NO_CHMOD:
                raise

    def abort(self) -> None:
        """Drop the temporary file; ``path`` stays as it was."""
        if self._open:
            os.close(self.fd)
            self._open = False
        remove_if_exists(self.tmp)


@contextmanager
def atomic_open(path: str | os.PathLike, *, durable: bool = True, parents: bool = True) -> Iterator[BinaryIO]:
    """A buffered binary file object for writing ``path`` atomically; committed when the ``with`` block
    ends normally, discarded (old file kept) when it raises."""
    with AtomicFile(path, durable=durable, parents=parents) as out:
        with os.fdopen(os.dup(out.fd), "wb") as f:
            yield f
        out.commit()


def atomic_write_blocks(
    path: str | os.PathLike, blocks: Iterable, *, durable: bool = True, parents: bool = True
) -> None:
    """Write the byte blocks of ``blocks`` (consumed lazily) to ``path`` atomically."""
    with AtomicFile(path, durable=durable, parents=parents) as out:
        for block in blocks:
            out.write(block)
        out.commit()


def atomic_write_bytes(path: str | os.PathLike, data, *, durable: bool = True, parents: bool = True) -> None:
    """Write ``data`` (bytes-like) to ``path`` atomically."""
    with AtomicFile(path, durable=durable, parents=parents) as out:
        out.write(data)
        out.commit()
