"""Filling numpy arrays from files and streams without intermediate copies."""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from typing import IO

import numpy as np

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
