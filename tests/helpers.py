"""Plain helpers shared by the test modules (no tests, no fixtures here): import them by name.

Fixtures (anything that needs ``tmp_path`` or a set-up and tear-down) live in
``conftest.py``; everything else that more than one test module uses lives here,
once.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.lib.format as npy_format

# -- data sets ------------------------------------------------------------------------------------

#: Options of ``write_sample`` for a small simulated scan: 16 px patterns, 3 x 3 = 9 positions.
SMALL = {'pattern_px': 16, 'scan_side': 3}
#: Options of :func:`minimal_arrays` for a dataset of a few KB (6 positions, 8 px).
TINY = {'num': 6, 'n': 8}


def minimal_arrays(num: int = 9, n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """A minimal valid PtychoPINN dataset built by hand, without the simulator.

    float32 amplitudes in ``diffraction`` (NHW, non-integral), a complex64 probe,
    a complex64 object and positions well inside the object. Deterministic for a
    given ``seed``.
    """
    rng = np.random.default_rng(seed)
    return {
        'diffraction': (rng.random((num, n, n)) * 3 + 0.05).astype(np.float32),
        'probeGuess': (rng.random((n, n)) + 1j * rng.random((n, n))).astype(np.complex64),
        'objectGuess': np.exp(1j * rng.random((3 * n, 3 * n + 2))).astype(np.complex64),
        'xcoords': rng.uniform(n, 2 * n, num),
        'ycoords': rng.uniform(n, 2 * n, num),
    }


def to_nhw(stack: np.ndarray, layout: str) -> np.ndarray:
    """A diffraction stack stored in ``layout`` (NHW, HWN or NHW1) as N x H x W."""
    if layout == 'HWN':
        return np.moveaxis(stack, -1, 0)
    if layout == 'NHW1':
        return stack[..., 0]
    return stack


def write_json(path: Path, values: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(values), encoding='utf-8')
    return path


# -- hand-made archives (including hostile ones) -------------------------------------------------

#: Archives written by these helpers are byte-for-byte reproducible (no wall-clock timestamps).
FIXED_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


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


class CreatesFile:
    """A pickle payload: unpickling it runs ``open(marker, 'w')``, so the marker file
    appearing proves that something unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, 'w'))


def object_array(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """An object-dtype array of ``shape`` holding ``value`` first and 0.0 everywhere else."""
    array = np.empty(shape, dtype=object)
    array.flat[0] = value
    for i in range(1, array.size):
        array.flat[i] = 0.0
    return array


# -- the position convention the tests expect ----------------------------------------------------


def ptychopinn_offset(n: int) -> float:
    """PtychoPINN's patch centre minus Ptychodus's probe centre, in pixels, for an ``n``-pixel probe.

    PtychoPINN cuts the patch so that object pixel ``xcoords`` is patch index
    ``n // 2``; Ptychodus (and pty-chi) centre the probe at ``(n - 1) / 2``. So
    the Ptychodus object pixel under PtychoPINN's probe is ``xcoords - offset``:
    0.5 for even ``n``, 0 for odd. Stated here on purpose, never imported from the
    package, so that a wrong offset in the package fails the tests.
    """
    return n // 2 - (n - 1) / 2


def ptychopinn_pixels(
    arrays: Mapping[str, np.ndarray], *, nominal: bool = False, probe_shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The Ptychodus object pixels a PtychoPINN dataset's positions must land on under the default
    ("ptychopinn") convention: ``xcoords - ptychopinn_offset(probe width)`` and ``ycoords -
    ptychopinn_offset(probe height)`` (``x/ycoords_start`` with ``nominal``). The probe shape is
    the last two axes of ``probeGuess`` unless ``probe_shape`` (height, width) is given."""
    height, width = probe_shape or arrays['probeGuess'].shape[-2:]
    suffix = '_start' if nominal else ''
    x = np.asarray(arrays['xcoords' + suffix], dtype=np.float64)
    y = np.asarray(arrays['ycoords' + suffix], dtype=np.float64)
    return x - ptychopinn_offset(width), y - ptychopinn_offset(height)


# -- reading products back -------------------------------------------------------------------------


def h5_attrs(path: Path, name: str = '/') -> dict[str, Any]:
    """The attributes of one HDF5 object as a plain dict (bytes decoded, numpy scalars as Python)."""

    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode()
        if isinstance(value, np.generic):
            return value.item()
        return value

    with h5py.File(path, 'r') as h5:
        return {key: plain(value) for key, value in h5[name].attrs.items()}


def product_pixels(source: Any) -> tuple[np.ndarray, np.ndarray]:
    """Probe positions in object pixels, computed by Ptychodus from the product's own geometry.

    ``source`` is a loaded Ptychodus product or a path, which is loaded with
    ``ptychodus.api.io.load_product`` first.
    """
    if isinstance(source, (str, os.PathLike)):
        from ptychodus.api.io import load_product

        source = load_product(Path(source))
    geometry = source.object_.get_geometry()
    positions = source.probe_positions
    if not hasattr(geometry, 'map_probe_positions_to_object_x_px'):  # Ptychodus < 1.7: one at a time
        from ptychopinn_ptychodus.host.compat import host_object_pixels

        return host_object_pixels(geometry, positions)
    return (
        np.asarray(geometry.map_probe_positions_to_object_x_px(positions)),
        np.asarray(geometry.map_probe_positions_to_object_y_px(positions)),
    )


# -- the command line ------------------------------------------------------------------------------

CLI = [sys.executable, '-m', 'ptychopinn_ptychodus']
CONSOLE_SCRIPT = Path(sys.executable).parent / 'convert_to_ptychodus_product'
#: Every physical quantity given, so a successful run logs no "unknown; using default"
#: warning and stderr holds exactly the one failure line.
FULL_META = [
    '--object-pixel-size-m', '5e-8',
    '--probe-energy-eV', '8000',
    '--detector-distance-m', '1.5',
    '--detector-pixel-size-m', '7.5e-5',
]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: ours, without writing ``.pyc`` files, plus ``extra``."""
    return {**os.environ, 'PYTHONDONTWRITEBYTECODE': '1', **extra}


def start_cli(*args: str | os.PathLike[str], cwd: Path, env: Mapping[str, str] | None = None,
              **popen: Any) -> subprocess.Popen[str]:
    """``python -m ptychopinn_ptychodus *args`` started in the background, stdout and stderr piped."""
    return subprocess.Popen(
        [*CLI, *(str(a) for a in args)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=cli_env(**(env or {})), **popen,
    )


def stderr_lines(text: str) -> list[str]:
    """The non-blank lines of a captured stderr."""
    return [line for line in text.splitlines() if line.strip()]


def assert_one_line_failure(
    result: subprocess.CompletedProcess[str], *, status: int = 1, names: Sequence[str] = (),
    absent: Sequence[Path] = (),
) -> str:
    """A refusal as the README promises it: exit ``status`` (1; argparse's usage errors: 2),
    exactly one stderr line naming ``names``, no traceback, no "internal error", and
    nothing at the ``absent`` paths. Returns the line."""
    described = f'rc={result.returncode}\nstdout={result.stdout!r}\nstderr={result.stderr!r}'
    assert result.returncode > 0, f'expected a non-zero exit (not a signal death): {described}'
    assert result.returncode == status, f'expected exit status {status}: {described}'
    lines = stderr_lines(result.stderr)
    assert len(lines) == 1, f'expected exactly one line on stderr: {described}'
    assert 'Traceback' not in result.stderr + result.stdout, described
    assert 'internal error' not in lines[0], f'a bug, not a refusal: {described}'
    for name in names:
        assert name in lines[0], f'{name!r} is not named in the error line: {described}'
    for path in absent:
        assert not Path(path).exists(), f'{path} was written: {described}'
    return lines[0]


# -- atomic outputs --------------------------------------------------------------------------------

TEMP_SUFFIX = '.ptychopinn-tmp'


def temp_files(folder: Path) -> list[Path]:
    """Every leftover of an atomic write below ``folder`` (recursively, hidden files included)."""
    return sorted(Path(folder).rglob(f'*{TEMP_SUFFIX}'))


def assert_no_temp_files(folder: Path) -> None:
    left = temp_files(folder)
    assert left == [], f'temporary files left behind: {[str(p) for p in left]}'


def our_npz_keys(path: Path) -> dict[str, Any]:
    """Our keys in an NPZ we wrote: ``_metadata["ptychopinn_ptychodus"]``, read without unpickling.

    Since 0.3 they live in PtychoPINN's ``_metadata`` JSON (a pickled one-string
    object array, as ``ptycho/metadata.py`` writes it), not as top-level arrays.
    """
    from ptychopinn_ptychodus.npz.archive import NpzArchive

    with NpzArchive(path) as archive:
        metadata = archive.read_metadata('_metadata') or {}
    ours = metadata.get('ptychopinn_ptychodus')
    assert isinstance(ours, dict), f'{path} has no ptychopinn_ptychodus entry in _metadata'
    return ours
