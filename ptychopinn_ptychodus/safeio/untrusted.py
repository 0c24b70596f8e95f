"""Guards for files from elsewhere, shared by the NPZ and HDF5 readers.

A path must be a regular file (FIFOs block, devices never end, folders are
not datasets), and an HDF5 file's metadata is first walked in a child process
because some corrupt files make libhdf5 loop forever inside C code that no
signal can interrupt.
"""

from __future__ import annotations

import os
import select
import signal
import threading
from pathlib import Path
from typing import Any

import h5py

from ..facts.errors import InvalidInputError

#: How long libhdf5 may take to walk a file's metadata in the watchdog child.
PROBE_SECONDS_VARIABLE = 'PTYCHOPINN_HDF5_PROBE_SECONDS'
DEFAULT_PROBE_SECONDS = 10.0


def check_regular_file(path: Path, what: str) -> None:
    """Refuse a missing path, a folder or a special file, naming ``what`` we expected."""
    if not path.exists():
        raise InvalidInputError(path, 'no such file')
    if path.is_dir():
        raise InvalidInputError(path, f'is a directory, not {what}')
    if not path.is_file():
        raise InvalidInputError(path, 'is not a regular file')


def _walk_metadata(path: Path) -> None:
    with h5py.File(path, 'r') as h5:
        dict(h5.attrs)

        def visit(name: str, item: Any) -> None:
            dict(item.attrs)
            if isinstance(item, h5py.Dataset):
                _ = (item.shape, item.dtype, item.chunks, item.compression)

        h5.visititems(visit)


def _single_threaded() -> bool:
    """No other Python thread exists that could hold h5py's lock across a fork.

    Native helper threads (BLAS pools) are harmless: they never call h5py.
    """
    return threading.active_count() == 1


def check_hdf5_terminates(path: Path, timeout_s: float | None = None) -> None:
    """Walk an untrusted HDF5 file's metadata in a child process first.

    The child takes the risk of a libhdf5 hang or crash; the parent gives up
    after ``timeout_s`` (default: ``$PTYCHOPINN_HDF5_PROBE_SECONDS`` or 10 s)
    and refuses the file. Only done where forking is safe: a single-threaded
    process on a POSIX system (a GUI has other threads; it skips the check).
    """
    if not hasattr(os, 'fork') or not _single_threaded():
        return
    if timeout_s is None:
        timeout_s = float(os.environ.get(PROBE_SECONDS_VARIABLE, DEFAULT_PROBE_SECONDS))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report 0 (walked) or 1 (raised); a crash reports nothing
        os.close(read_end)
        try:
            _walk_metadata(path)
            status = b'0'
        except BaseException:  # noqa: BLE001 - the parent reads the file itself for the message
            status = b'1'
        os.write(write_end, status)
        os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], timeout_s)
        if not ready:
            raise InvalidInputError(
                path,
                f'libhdf5 did not finish reading the file metadata within {timeout_s:g} s '
                '(a corrupt file can make it loop forever)',
            )
        if not os.read(read_end, 1):
            raise InvalidInputError(path, 'libhdf5 crashed while reading the file metadata (corrupt file)')
    finally:
        os.close(read_end)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def check_untrusted_h5(path: Path, *, check_terminates: bool = True) -> None:
    """Refuse what is not a regular file, then (optionally) run the libhdf5 watchdog."""
    check_regular_file(path, 'a product file')
    if check_terminates:
        check_hdf5_terminates(path)
