"""All-or-nothing file output.

Every file we produce is written to a hidden temporary file in the destination
folder and renamed over the destination only once it is complete, so an error,
a signal, a killed process or a full disk never leaves a half-written product
that later loads as if it were whole.

Durability against a crash of the machine itself is the caller's choice
(``fsync=True``, the CLI's ``--fsync``): the file is then on disk before it gets
its name. It is off by default, as in h5py, numpy, Ptychodus and PtychoPINN,
because it costs the disk's whole write time -- 0.9 s for 0.5 GB on this machine
(``dd`` + fsync), more than the conversion itself. Without it, a power cut
within the kernel's write-back delay (about 30 s) can leave the newest outputs
truncated: such a file fails to open; it does not read as whole.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..facts.errors import OutputError
from .cancellation import raise_if_interrupted, signals_held

logger = logging.getLogger(__name__)

TEMP_SUFFIX = '.ptychopinn-tmp'


def make_fresh(path: str | os.PathLike[str]) -> Path:
    """Remove the (normally empty, reserved) file at ``path`` so that its writer creates it anew.

    Writers then open exclusively (h5py and zipfile mode ``'x'``): a name that
    reappears meanwhile is an error, never overwritten. Why not truncate the
    reserved file instead: ext4 (``auto_da_alloc``) writes out a file that was
    truncated on opening when it is closed -- measured 0.2 s for 0.5 GB with a bare
    write and 0.6 s in h5py's close, time a new file does not cost (it is written
    back later, or by the fsync before publishing when one is asked for).
    """
    target = Path(path)
    target.unlink(missing_ok=True)
    return target


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


def check_distinct(paths: Sequence[str | os.PathLike[str] | None], inputs: Sequence[Path] = ()) -> None:
    """Refuse outputs that name the same file as each other or as an input, before any work.

    Two outputs at one path would overwrite each other (only one survives), and an
    output over an input would replace the data while it is being read.
    """
    seen: dict[str, Path] = {os.path.realpath(p): p for p in inputs}
    for path in paths:
        if path is None:
            continue
        dest = Path(path)
        key = os.path.realpath(dest)
        if key in seen:
            if seen[key] in inputs:
                raise OutputError(dest, 'is also the input: write the output to another file')
            raise OutputError(dest, 'is given for two outputs: give each output its own file name')
        seen[key] = dest


def create_folder(path: str | os.PathLike[str]) -> Path | None:
    """Create the folder an output goes into; return it if it was missing (the caller says so)."""
    parent = Path(path).parent
    if str(parent) in ('', '.') or parent.exists():
        return None
    try:
        parent.mkdir(parents=True)
    except FileExistsError:
        return None
    except OSError as exc:
        raise OutputError(path, f'cannot create folder {parent}: {describe_os_error(exc)}') from exc
    return parent


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
def atomic_output(
    path: str | os.PathLike[str], *, overwrite: bool, fsync: bool = False
) -> Iterator[Path]:
    """Yield a temporary path; on success it becomes ``path``, on failure it vanishes.

    ``fsync``: wait until the file is on disk before it gets its name (see the module).

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
        _publish(tmp, dest, overwrite=overwrite, fsync=fsync)
    except OSError as exc:
        if tmp is not None:
            _discard(tmp)
        raise OutputError(dest, f'write failed: {describe_os_error(exc)}') from exc
    except BaseException:
        if tmp is not None:
            _discard(tmp)
        raise


@contextmanager
def atomic_outputs(
    paths: Sequence[str | os.PathLike[str]], *, overwrite: bool, fsync: bool = False
) -> Iterator[list[Path]]:
    """Several outputs of one conversion, published together or not at all.

    Yields one temporary path per destination. Nothing is published until every
    file is complete; if publishing one fails, those already published are
    removed again (and a file they replaced is put back), so the destinations end
    as they were before.
    """
    check_distinct(paths)
    dests = [check_destination(path, overwrite=overwrite) for path in paths]
    temps: list[Path] = []
    try:
        with signals_held():
            for dest in dests:
                temps.append(_create_temporary(dest))
        yield temps
        raise_if_interrupted()
        with signals_held():  # the publish (and its rollback) runs to the end
            _publish_all(temps, dests, overwrite=overwrite, fsync=fsync)
    except OSError as exc:
        for tmp in temps:
            _discard(tmp)
        # name the output whose file failed when the error says; otherwise (h5py often does not)
        # name them all rather than blame the wrong one
        failed = [d for d, t in zip(dests, temps, strict=False) if exc.filename in (str(t), str(d))]
        where = failed[0] if failed else ', '.join(str(d) for d in dests)
        raise OutputError(where, f'write failed: {describe_os_error(exc)}') from exc
    except BaseException:
        for tmp in temps:
            _discard(tmp)
        raise


def _publish_all(temps: list[Path], dests: list[Path], *, overwrite: bool, fsync: bool) -> None:
    """Publish each temporary; on a failure, undo the ones already published."""
    done: list[tuple[Path, Path | None]] = []  # (destination, backup of what it replaced)
    try:
        for tmp, dest in zip(temps, dests, strict=True):
            backup: Path | None = None
            if overwrite and dest.exists():
                backup = _create_temporary(dest)
                try:
                    os.replace(dest, backup)
                except BaseException:
                    _discard(backup)
                    raise
            try:
                _publish(tmp, dest, overwrite=overwrite, fsync=fsync)
            except BaseException:
                if backup is not None:
                    os.replace(backup, dest)
                raise
            done.append((dest, backup))
    except BaseException:
        for dest, backup in reversed(done):
            if backup is not None:
                os.replace(backup, dest)
            else:
                _discard(dest)
        raise
    for _, backup in done:
        if backup is not None:
            _discard(backup)


def _create_temporary(dest: Path) -> Path:
    """The hidden temporary file next to ``dest`` (``.<name>.<random>.ptychopinn-tmp``)."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f'.{dest.name}.', suffix=TEMP_SUFFIX, dir=dest.parent)
    except OSError as exc:
        raise OutputError(dest, f'cannot create a file here: {describe_os_error(exc)}') from exc
    os.close(fd)
    return Path(tmp_name)


def _publish(tmp: Path, dest: Path, *, overwrite: bool, fsync: bool) -> None:
    if fsync:
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
