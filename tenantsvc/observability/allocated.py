"""prometheus_client's multiprocess files, with their disk space taken before it is written.

With several workers each keeps its metrics in a file it maps into memory
(``PROMETHEUS_MULTIPROC_DIR``, by default under the temporary directory). The library makes
and grows those files with ``truncate``, which only sets their length: the blocks are found
when the mapping is first written. On a full filesystem the kernel then kills the process
with SIGBUS. Seen with the directory on a full tmpfs: every worker died at its next new label,
was started again, died again, and the API answered almost nothing (18 of 1,500 requests).

Here the space is taken with ``posix_fallocate`` before the library writes: on a full disk
that fails with an error instead, and the sample is dropped (logged once per run of failures)
while every request is served as before. A worker whose file could not be made at all records
nothing until it is restarted.
"""

import errno
import logging
import os
from typing import Any

from prometheus_client import mmap_dict, values

log = logging.getLogger(__name__)
_ENTRY_OVERHEAD = 28  # an entry's length field, its padding to 8 bytes, and two doubles
_failing = False


def _unrecorded(exc: OSError) -> None:
    global _failing
    if not _failing:
        log.warning("metrics are not being recorded: %s (%s); requests are served as before",
                    exc.strerror, os.environ.get("PROMETHEUS_MULTIPROC_DIR"))  # fmt: skip
    _failing = True


def _recorded() -> None:
    global _failing
    _failing = False


# Where the filesystem cannot take space ahead (musl's posix_fallocate on one without
# fallocate; glibc writes zeros instead): the library's own way, as before.
_CANNOT_RESERVE = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL})


def _allocate(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in _CANNOT_RESERVE:
            raise


def _reserve(filename: str, size: int) -> None:
    """The file's first ``size`` bytes on disk; a file made here and not reserved is removed
    (an empty one would fail every scrape that reads it)."""
    fd = os.open(filename, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        existing = os.fstat(fd).st_size
        try:
            _allocate(fd, max(size, existing))
        except OSError:
            if existing == 0:  # made here
                os.unlink(filename)
            raise
    finally:
        os.close(fd)


_Library: Any = mmap_dict.MmapedDict  # untyped


class AllocatedDict(_Library):  # type: ignore[misc]
    def __init__(self, filename: str, read_mode: bool = False) -> None:
        self._null = False
        if not read_mode:
            try:
                _reserve(filename, mmap_dict._INITIAL_MMAP_SIZE)
            except OSError as exc:
                _unrecorded(exc)
                self._null = True
                self._f: Any = None  # what the library's close() looks for
                self._m: Any = None
                return
        super().__init__(filename, read_mode)

    def _init_value(self, key: str) -> None:
        needed = self._used + len(key.encode("utf-8")) + _ENTRY_OVERHEAD
        capacity = self._capacity
        while needed > capacity:  # as the library grows it, doubling
            capacity *= 2
        if capacity > self._capacity:
            _allocate(self._f.fileno(), capacity)
        super()._init_value(key)

    def read_value(self, key: str) -> Any:
        if not self._null:
            try:
                return super().read_value(key)
            except OSError as exc:
                _unrecorded(exc)
        return 0.0, 0.0

    def write_value(self, key: str, value: float, timestamp: float) -> None:
        if self._null:
            return
        try:
            super().write_value(key, value, timestamp)
        except OSError as exc:
            _unrecorded(exc)
        else:
            if _failing:
                _recorded()


def install() -> None:
    """Before the first metric is made in this process."""
    values.MmapedDict = AllocatedDict  # type: ignore[attr-defined]
