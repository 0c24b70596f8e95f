"""Filling numpy arrays from files and streams without intermediate copies."""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
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
    """A writable byte view of a C-contiguous array (empty arrays included)."""
    if not out.nbytes:
        return memoryview(bytearray())
    return memoryview(out.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


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
