"""Filling numpy arrays from files and streams without intermediate copies."""

from __future__ import annotations

import errno
import os
import struct
import threading
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, Any

import numpy as np

_fast_zlib: Any
try:  # zlib-ng (a runtime dependency): the same CRC-32, about 5x faster (SIMD) than zlib's
    from zlib_ng import zlib_ng as _fast_zlib
except ImportError:  # pragma: no cover - optional speed-up
    _fast_zlib = zlib

#: Errors that mean "the source's bytes are bad", wherever they surface.
CORRUPT_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    struct.error,
    ValueError,
    OSError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
)


def crc32(data: bytes | memoryview, value: int = 0) -> int:
    """zlib's CRC-32 of ``data``, continued from ``value`` (zlib-ng's when installed).

    Checking a stored 0.5 GB stack took 0.27 s with zlib's and takes 0.06 s with
    zlib-ng's -- a fifth of the uncompressed conversion's time.
    """
    return int(_fast_zlib.crc32(data, value))


def byte_view(out: np.ndarray) -> memoryview:
    """A byte view of a C-contiguous array (empty arrays included; read-only if the array is)."""
    if not out.nbytes:
        return memoryview(bytearray())
    return memoryview(out.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


class MappedFiles:
    """Which memory is a read-only mapping of which file, so a block can be copied inside the kernel.

    A reader that serves views of a mapped file registers the mapping; a writer
    asks :meth:`span` where a C-contiguous block lies in that file and hands the
    copy to ``copy_file_range`` (:func:`copy_span`). Copying 0.5 GB that way took
    0.17 s here, against 0.75 s for ``pwrite`` from the mapping (every page
    faulted in first); ``cp`` is 0.16 s.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._regions: dict[int, tuple[int, int, int]] = {}  # address -> (nbytes, fd, file offset)

    def add(self, array: np.ndarray, fd: int, file_offset: int) -> None:
        """``array`` (C-contiguous) is the mapping of ``fd``'s bytes from ``file_offset``."""
        if array.nbytes:
            with self._lock:
                self._regions[int(array.ctypes.data)] = (int(array.nbytes), fd, file_offset)

    def remove(self, array: np.ndarray) -> None:
        with self._lock:
            self._regions.pop(int(array.ctypes.data), None)

    def span(self, block: np.ndarray) -> tuple[int, int] | None:
        """``(fd, file offset)`` of ``block`` when it lies wholly inside a registered mapping."""
        if not block.nbytes or not block.flags.c_contiguous:
            return None
        address = int(block.ctypes.data)
        with self._lock:
            for start, (nbytes, fd, file_offset) in self._regions.items():
                if start <= address and address + block.nbytes <= start + nbytes:
                    return fd, file_offset + (address - start)
        return None


#: The process's registry (readers add their mappings, writers look blocks up).
MAPPED_FILES = MappedFiles()


def copy_span(src_fd: int, src_offset: int, dst_fd: int, dst_offset: int, nbytes: int) -> bool:
    """Copy ``nbytes`` between two files inside the kernel; ``False`` if this pair cannot.

    ``copy_file_range`` is refused across some filesystems (``EXDEV``) and on
    old kernels (``ENOSYS``); the caller then writes the bytes itself. A partial
    copy before such an error is harmless: the caller rewrites the whole block.
    """
    if not hasattr(os, 'copy_file_range'):
        return False
    done = 0
    try:
        while done < nbytes:
            got = os.copy_file_range(src_fd, dst_fd, nbytes - done, src_offset + done, dst_offset + done)
            if got <= 0:
                raise EOFError(f'source file ends after {src_offset + done} bytes')
            done += got
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):
            return False
        raise
    return True


def pread_into(fd: int, offset: int, view: memoryview) -> None:
    """Fill ``view`` from file descriptor ``fd`` at ``offset`` (positioned reads, no seek)."""
    filled = 0
    while filled < len(view):
        got = os.preadv(fd, [view[filled:]], offset + filled)
        if got <= 0:
            raise EOFError(f'file ends after {offset + filled} bytes')
        filled += got


def read_into(stream: IO[bytes], out: np.ndarray) -> None:
    """Fill ``out`` from a sequential stream, failing clearly if the stream ends early."""
    view = byte_view(out)
    filled = 0
    while filled < len(view):
        got = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not got:
            raise EOFError(f'array data ends after {filled} of {len(view)} bytes')
        filled += got


class BackgroundCrc:
    """CRC-32 of a buffer, computed in order on a background thread while the caller works.

    A stored 0.5 GB stack costs about 0.1 s of CRC; on a second core that
    overlaps the copy instead of adding to it (zlib-ng releases the GIL).
    ``release(first, stop)`` is called after each step with the byte range just
    checked (to unmap it again). :meth:`result` waits and returns the CRC (or
    re-raises what went wrong); :meth:`stop` abandons the pass.
    """

    STEP = 16 << 20

    def __init__(
        self, data: memoryview, initial: int = 0, release: Callable[[int, int], None] | None = None
    ) -> None:
        self._data: memoryview | None = data
        self._value = initial
        self._release = release
        self._error: BaseException | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name='ptychopinn-crc32', daemon=True)
        self._thread.start()

    def _run(self) -> None:
        data = self._data
        assert data is not None
        try:
            value = self._value
            for first in range(0, len(data), self.STEP):
                if self._stopped.is_set():
                    return
                stop = min(first + self.STEP, len(data))
                value = crc32(data[first:stop], value)
                if self._release is not None:
                    self._release(first, stop)
            self._value = value
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._error = exc
        finally:
            del data
            self._data = None

    def result(self) -> int:
        """The CRC-32 of the whole buffer (continued from ``initial``)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value

    def stop(self) -> None:
        """Abandon the pass (if still running) and wait for the thread."""
        self._stopped.set()
        self._thread.join()
