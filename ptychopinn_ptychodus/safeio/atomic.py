"""All-or-nothing file output.

Every file we produce is written to a hidden temporary file in the destination
folder and renamed over the destination only once it is complete, so a crash,
a signal or a full disk never leaves a half-written product that later loads
as if it were whole.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..facts.errors import OutputError
from .cancellation import raise_if_interrupted, signals_held

logger = logging.getLogger(__name__)

TEMP_SUFFIX = '.ptychopinn-tmp'


def check_destination(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Refuse destinations we could not (or must not) replace, before any work."""
    dest = Path(path)
    parent = dest.parent if str(dest.parent) else Path('.')
    if dest.is_dir():
        raise OutputError(dest, 'destination is a directory')
    if dest.exists() and not overwrite:
        raise OutputError(dest, 'destination exists (use --overwrite to replace it)')
    if not parent.exists():
        raise OutputError(dest, f'folder {parent} does not exist')
    if not parent.is_dir():
        raise OutputError(dest, f'{parent} is not a folder')
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(dest, f'folder {parent} is not writable')
    return dest


def check_size_limit(path: str | os.PathLike[str], upper_bound_bytes: int) -> None:
    """Refuse up front when the process file-size limit (RLIMIT_FSIZE) is too small.

    libhdf5 does not survive a write failing with EFBIG mid-file (it can crash
    while closing), so a limit that the output might exceed is an error before
    anything is written. The bound is the uncompressed size, so this errs on the
    side of refusing.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY and upper_bound_bytes > soft:
        raise OutputError(
            path, f'file size limit exceeded: the limit is {soft} bytes and this output '
            f'may need up to {upper_bound_bytes} bytes'
        )


def describe_os_error(exc: OSError) -> str:
    text = str(exc).lower()
    if exc.errno == errno.ENOSPC or 'no space left' in text:
        return 'no space left on device'
    if exc.errno == errno.EFBIG or 'file too large' in text:
        return 'file size limit exceeded'
    if exc.errno == errno.EDQUOT:
        return 'disk quota exceeded'
    if exc.errno in (errno.EACCES, errno.EPERM):
        return 'permission denied'
    return exc.strerror or str(exc)


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path; on success it becomes ``path``, on failure it vanishes.

    SIGINT/SIGTERM are held back while the temporary file is created and its
    name stored: a handler raising between ``mkstemp`` creating the file and
    this function knowing its name would leak it. A held signal is delivered
    inside the ``try`` below, where the clean-up is in charge.
    """
    dest = check_destination(path, overwrite=overwrite)
    tmp: Path | None = None
    try:
        with signals_held():
            tmp = _create_temporary(dest)
        yield tmp
        raise_if_interrupted()  # a signal swallowed somewhere must still stop the publish
        _publish(tmp, dest, overwrite=overwrite)
    except OSError as exc:
        if tmp is not None:
            _discard(tmp)
        raise OutputError(dest, f'write failed: {describe_os_error(exc)}') from exc
    except BaseException:
        if tmp is not None:
            _discard(tmp)
        raise


def _create_temporary(dest: Path) -> Path:
    """The hidden temporary file next to ``dest`` (``.<name>.<random>.ptychopinn-tmp``)."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f'.{dest.name}.', suffix=TEMP_SUFFIX, dir=dest.parent)
    except OSError as exc:
        raise OutputError(dest, f'cannot create a file here: {describe_os_error(exc)}') from exc
    os.close(fd)
    return Path(tmp_name)


def _publish(tmp: Path, dest: Path, *, overwrite: bool) -> None:
    with open(tmp, 'rb+') as handle:
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o666 & ~_umask())
    if overwrite:
        os.replace(tmp, dest)
        return
    # No-clobber publish: link() fails if someone else created dest meanwhile.
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise OutputError(dest, 'destination appeared while writing (not replaced)') from None
    except OSError:
        if dest.exists():
            raise OutputError(dest, 'destination exists (use --overwrite to replace it)') from None
        os.replace(tmp, dest)
        return
    tmp.unlink()


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # pragma: no cover - nothing more we can do
        logger.error('could not remove temporary file %s: %s', tmp, exc)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
