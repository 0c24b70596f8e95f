"""Shared helpers for the ``test_hardening_*`` suites (this module holds no tests).

The hardening suites check what the README promises for hostile, broken and
interrupted runs: one line on stderr, a non-zero exit, nothing at the
destination and no ``*.ptychopinn-tmp`` file left behind.
"""

from __future__ import annotations

import ctypes
import io
import json
import logging
import os
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.lib.format as npy_format
import pytest

TEMP_SUFFIX = '.ptychopinn-tmp'
CLI = [sys.executable, '-m', 'ptychopinn_ptychodus']
#: Every physical quantity given, so a successful run logs no "unknown; using default"
#: warning and stderr holds exactly the one failure line.
FULL_META = [
    '--object-pixel-size-m', '5e-8',
    '--probe-energy-eV', '8000',
    '--detector-distance-m', '1.5',
    '--detector-pixel-size-m', '7.5e-5',
]
IS_ROOT = os.geteuid() == 0
#: Archives written by these helpers are byte-for-byte reproducible (no wall-clock timestamps).
FIXED_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


def temp_files(folder: Path) -> list[Path]:
    """Every leftover of an atomic write below ``folder`` (recursively)."""
    return sorted(p for p in Path(folder).rglob(f'*{TEMP_SUFFIX}'))


def assert_no_temp_files(folder: Path) -> None:
    left = temp_files(folder)
    assert left == [], f'temporary files left behind: {[str(p) for p in left]}'


def stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def run_cli(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    timeout: float = 60,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *(str(a) for a in args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
        env={**os.environ, 'PYTHONDONTWRITEBYTECODE': '1'},
    )


def assert_one_line_failure(
    result: subprocess.CompletedProcess[str], *, names: Sequence[str] = (), absent: Sequence[Path] = ()
) -> str:
    """Exit status 1, exactly one stderr line naming ``names``, no traceback, no outputs."""
    described = f'rc={result.returncode}\nstdout={result.stdout!r}\nstderr={result.stderr!r}'
    assert result.returncode > 0, f'expected a non-zero exit (not a signal death): {described}'
    assert result.returncode == 1, f'expected exit status 1: {described}'
    lines = stderr_lines(result.stderr)
    assert len(lines) == 1, f'expected exactly one line on stderr: {described}'
    assert 'Traceback' not in result.stderr + result.stdout, described
    assert 'internal error' not in lines[0], f'a bug, not a refusal: {described}'
    for name in names:
        assert name in lines[0], f'{name!r} is not named in the error line: {described}'
    for path in absent:
        assert not Path(path).exists(), f'{path} was written: {described}'
    return lines[0]


def drop_file_permission_override() -> None:
    """``preexec_fn``: a root child loses CAP_DAC_OVERRIDE/DAC_READ_SEARCH/FOWNER.

    Dropping them from the bounding set before ``exec`` means the new program runs
    as uid 0 without them, so file modes (``chmod 000``, a 0o500 folder) apply to
    it exactly as to an ordinary user. A no-op when not root.
    """
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), 'prctl(PR_CAPBSET_DROP) failed')


# -- tiny hand-built archives ---------------------------------------------------------------------


def tiny_arrays(num: int = 6, n: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """A minimal valid PtychoPINN dataset (NHW float32 amplitudes), a few KB in size."""
    rng = np.random.default_rng(seed)
    return {
        'diffraction': (rng.random((num, n, n)) * 3 + 0.05).astype(np.float32),
        'probeGuess': (rng.random((n, n)) + 1j * rng.random((n, n))).astype(np.complex64),
        'objectGuess': np.exp(1j * rng.random((3 * n, 3 * n + 2))).astype(np.complex64),
        'xcoords': rng.uniform(n, 2 * n, num),
        'ycoords': rng.uniform(n, 2 * n, num),
    }


def metadata_object(values: dict[str, Any] | None = None) -> np.ndarray:
    """PtychoPINN's ``_metadata``: a pickled 0-d object array holding one JSON string."""
    text = json.dumps(values or {'measurement_domain': 'amplitude', 'source': 'hardening-test'})
    return np.array(text, dtype=object)


def npy_bytes(array: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array(buffer, np.asanyarray(array), allow_pickle=allow_pickle)
    return buffer.getvalue()


def npy_header_bytes(shape: tuple[int, ...], descr: str = '<f4', fortran: bool = False) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array_header_2_0(buffer, {'descr': descr, 'fortran_order': fortran, 'shape': shape})
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes], *, compression: int = zipfile.ZIP_STORED) -> Path:
    """An ``.npz`` from raw member bytes (``name`` -> ``name.npy`` unless it has a suffix)."""
    with zipfile.ZipFile(path, 'w', compression=compression) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name if '.' in name else f'{name}.npy', date_time=FIXED_ZIP_TIME)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return path


def write_arrays(path: Path, arrays: dict[str, np.ndarray], *, compress: bool = False) -> Path:
    """Like ``numpy.savez`` but object arrays (pickles) are allowed, as an attacker would."""
    members = {key: npy_bytes(value, allow_pickle=True) for key, value in arrays.items()}
    return write_zip(path, members, compression=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)


# -- time guard ---------------------------------------------------------------------------------


class HangError(BaseException):
    """Raised by :func:`time_guard` when an operation runs too long (BaseException, so no
    ``except Exception`` in the code under test can swallow it)."""


@contextmanager
def time_guard(seconds: float, what: str) -> Iterator[None]:
    """Fail (raise :class:`HangError`) if the block runs longer than ``seconds``.

    The timer re-fires every second after the first expiry, so an alarm that lands
    inside a finalizer (where Python drops exceptions) is repeated.
    """

    def expire(signum: int, frame: Any) -> None:
        raise HangError(f'{what} did not finish within {seconds:g} s (hang?)')

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(autouse=True)
def restore_cli_logging() -> Iterator[None]:
    """``cli.main()`` run in-process reconfigures the package logger (handler bound to the
    then-current stderr, no propagation, --quiet level); put it back so later tests'
    ``caplog`` and stderr are unaffected."""
    package = logging.getLogger('ptychopinn_ptychodus')
    saved = (package.handlers[:], package.propagate, package.level)
    try:
        yield
    finally:
        package.handlers[:], package.propagate = saved[0], saved[1]
        package.setLevel(saved[2])
