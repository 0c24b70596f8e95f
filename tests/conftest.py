"""Shared fixtures for the converter tests.

Everything is generated in ``tmp_path``; real data is read (never copied into the
repository) from ``../shared/data``. Products are always checked with
Ptychodus's own readers (``ptychodus.api.io``), not with our code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from ptychopinn_ptychodus.sample import write_sample

SHARED_DATA = Path(__file__).resolve().parents[2] / 'shared' / 'data'
CONSOLE_SCRIPT = 'convert_to_ptychodus_product'

# Small on purpose: 16 px patterns, 3x3 scan = 9 positions.
SMALL = {'pattern_px': 16, 'scan_side': 3}


@pytest.fixture
def sample_npz(tmp_path: Path) -> Callable[..., tuple[Path, dict[str, np.ndarray]]]:
    """Factory: ``sample_npz(name='x.npz', key=..., layout=..., counts=..., compress=..., **simulate_opts)``.

    Writes a simulated PtychoPINN NPZ into ``tmp_path`` and returns ``(path, arrays)``,
    where ``arrays`` are exactly what was written (diffraction in its stored layout).
    """

    def make(name: str = 'sample.npz', **options: Any) -> tuple[Path, dict[str, np.ndarray]]:
        opts = {**SMALL, **options}
        path = tmp_path / name
        arrays = write_sample(path, **opts)
        return path, arrays

    return make


@pytest.fixture
def npz_from_arrays(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``npz_from_arrays('name.npz', compress=False, **arrays)`` via ``numpy.savez``."""

    def make(name: str, *, compress: bool = False, **arrays: Any) -> Path:
        path = tmp_path / name
        (np.savez_compressed if compress else np.savez)(path, **arrays)
        assert path.exists()
        return path

    return make


@pytest.fixture
def base_arrays() -> Callable[..., dict[str, np.ndarray]]:
    """Factory for a minimal, valid set of PtychoPINN arrays built by hand.

    ``base_arrays(num=9, n=16)`` returns float32 amplitudes in ``diffraction``
    (non-integral), a complex64 probe, a complex64 object and positions well
    inside the object.
    """

    def make(num: int = 9, n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        diffraction = (rng.random((num, n, n)) * 3 + 0.05).astype(np.float32)
        probe = (rng.random((n, n)) + 1j * rng.random((n, n))).astype(np.complex64)
        obj = np.exp(1j * rng.random((n * 3, n * 3 + 2))).astype(np.complex64)
        xcoords = rng.uniform(n, 2 * n, num)
        ycoords = rng.uniform(n, 2 * n, num)
        return {
            'diffraction': diffraction,
            'probeGuess': probe,
            'objectGuess': obj,
            'xcoords': xcoords,
            'ycoords': ycoords,
        }

    return make


def ptychodus_pixels(product: Any) -> tuple[np.ndarray, np.ndarray]:
    """Object-pixel coordinates of a loaded Ptychodus product, computed by Ptychodus."""
    geometry = product.object_.get_geometry()
    positions = product.probe_positions
    return (
        np.asarray(geometry.map_probe_positions_to_object_x_px(positions)),
        np.asarray(geometry.map_probe_positions_to_object_y_px(positions)),
    )


@pytest.fixture
def product_pixels() -> Callable[[Any], tuple[np.ndarray, np.ndarray]]:
    """``product_pixels(path_or_product)``: positions mapped to object pixels by Ptychodus.

    A path is loaded with ``ptychodus.api.io.load_product`` first.
    """
    from ptychodus.api.io import load_product

    def load(source: Any) -> tuple[np.ndarray, np.ndarray]:
        product = load_product(Path(source)) if isinstance(source, (str, os.PathLike)) else source
        return ptychodus_pixels(product)

    return load


@pytest.fixture
def h5_attrs() -> Callable[[Path, str], dict[str, Any]]:
    """``h5_attrs(path, '/')``: the attributes of one HDF5 object as a plain dict."""

    def read(path: Path, name: str = '/') -> dict[str, Any]:
        with h5py.File(path, 'r') as h5:
            return {key: _plain(value) for key, value in h5[name].attrs.items()}

    return read


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


@pytest.fixture(scope='session')
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f'the ../shared/data folder is missing ({SHARED_DATA}); real-data tests need it')
    return SHARED_DATA


@pytest.fixture
def no_leftovers() -> Callable[[Path], None]:
    """``no_leftovers(folder)``: assert no temporary files of an atomic write remain."""

    def check(folder: Path) -> None:
        leftovers = [p.name for p in Path(folder).iterdir() if p.name.endswith('.ptychopinn-tmp')]
        assert leftovers == [], f'temporary files left behind: {leftovers}'

    return check


class CliResult:
    def __init__(self, completed: subprocess.CompletedProcess[str]) -> None:
        self.returncode = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def __repr__(self) -> str:
        return f'CliResult(rc={self.returncode}, stdout={self.stdout!r}, stderr={self.stderr!r})'


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., CliResult]:
    """Run the converter in a subprocess from ``tmp_path`` (so nothing lands in the repo).

    ``run_cli(*args, script=False)``: ``python -m ptychopinn_ptychodus`` by default,
    the installed console script next to ``sys.executable`` with ``script=True``.
    """

    def run(*args: str | os.PathLike[str], script: bool = False, timeout: float = 120) -> CliResult:
        if script:
            exe = Path(sys.executable).parent / CONSOLE_SCRIPT
            assert exe.exists(), f'console script {exe} is not installed'
            command = [str(exe)]
        else:
            command = [sys.executable, '-m', 'ptychopinn_ptychodus']
        completed = subprocess.run(
            [*command, *(str(a) for a in args)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, 'PYTHONDONTWRITEBYTECODE': '1'},
        )
        return CliResult(completed)

    return run


def write_json(path: Path, values: dict[str, Any]) -> Path:
    path.write_text(json.dumps(values), encoding='utf-8')
    return path


@pytest.fixture
def json_file(tmp_path: Path) -> Callable[[str, dict[str, Any]], Path]:
    def make(name: str, values: dict[str, Any]) -> Path:
        return write_json(tmp_path / name, values)

    return make
