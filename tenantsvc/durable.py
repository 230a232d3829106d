"""A file that appears under its name only whole, and only once it is on disk.

An export is what an operator keeps before ``drop --purge``: ``tenantctl export acme acme.tar
&& tenantctl drop acme --purge``. Written straight to its name, a crash or a ``kill -9``
mid-way left a truncated file there, which looked like an export; and a crash just after the
command left one whose pages were still in the operating system's cache, lost with the power,
while the purge had been committed to the database's disk.

So it is written beside its name, fsynced, then linked to its name (which fails if a file has
taken that name meanwhile: an export never overwrites), and the directory fsynced, so that the
name itself is on disk too before the command says it is done. Where the filesystem has no
hard links (FAT and exFAT drives, some network and FUSE mounts), the name is claimed with an
empty file instead (which fails too if a file has it), and the whole file renamed over it.
"""

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def published(path: Path) -> Iterator[Path]:
    """The path to write to; at the block's end, published as ``path``. If the block raises,
    nothing is left, under either name."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with writing_to(str(partial)):
            yield partial
        _fsync(partial)
        _publish(partial, path)
    except OSError as exc:
        if exc.filename != str(partial):
            raise
        # An error opening, writing or linking the file, told of the file the operator named.
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    finally:
        partial.unlink(missing_ok=True)
    _fsync(path.parent)


# What writing a file fails with: the disk full, a quota or the size limit reached, a
# read-only or failing filesystem. A write() names no file, and tenantctl took such an error
# for the database's ("database: [Errno 28] No space left on device").
_WRITING = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


@contextmanager
def writing_to(name: str) -> Iterator[None]:
    """An error writing in the block, told of ``name``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno not in _WRITING:
            raise
        raise OSError(exc.errno, exc.strerror, name) from exc


# What link() says on a filesystem that has no hard links.
_NO_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})


def _publish(partial: Path, path: Path) -> None:
    """FileExistsError rather than replace what is at ``path``."""
    try:
        os.link(partial, path)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        try:
            os.replace(partial, path)  # over the empty file just made: the name is never torn
        except OSError:
            path.unlink(missing_ok=True)  # ours: no empty file left under the name
            raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
