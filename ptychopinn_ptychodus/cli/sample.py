"""A small, physically consistent simulated PtychoPINN dataset for demos and tests.

Far-field ptychography on the object grid: each pattern is
``|FFT(probe * object patch)|`` with the zero frequency centred, the patch
centred on (``xcoords``, ``ycoords``) in object pixels, exactly as PtychoPINN
lays its data out. The nominal positions (``*_start``) differ from the actual
ones by a small known jitter, like a position-corrected reconstruction.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..npz.archive import write_npz


def simulate(
    *,
    pattern_px: int = 32,
    scan_side: int = 8,
    step_px: int = 6,
    probe_modes: int = 1,
    photons: float = 1e5,
    seed: int = 0,
    object_kind: Literal['checkerboard', 'star'] = 'checkerboard',
) -> dict[str, np.ndarray]:
    """Arrays of a canonical dataset: NHW float32 amplitudes, 2D (or modal) probe.

    ``object_kind='star'`` (the demo's) is a Siemens star, the usual resolution
    target, with a smooth phase; the checkerboard stays the tests' object.
    """
    rng = np.random.default_rng(seed)
    n = pattern_px
    margin = n // 2 + 2
    span = step_px * (scan_side - 1)
    height, width = span + 2 * margin + 3, span + 2 * margin  # deliberately not square
    yy, xx = np.mgrid[:height, :width]
    if object_kind == 'star':
        obj = siemens_star(height, width)
    else:
        phase = 0.8 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
        amplitude = 0.7 + 0.3 * ((xx // 8 + yy // 8) % 2)
        obj = (amplitude * np.exp(1j * phase)).astype(np.complex64)

    py, px = np.mgrid[:n, :n] - (n - 1) / 2
    radius = np.hypot(px, py)
    probe = (np.exp(-((radius / (0.22 * n)) ** 2)) * np.exp(1j * radius**2 / (2.0 * n))).astype(np.complex64)
    if probe_modes > 1:
        weights = np.linspace(1.0, 0.3, probe_modes)[:, None, None]
        tilt = np.exp(1j * np.arange(probe_modes)[:, None, None] * py / n)
        probe = (probe[None] * weights * tilt).astype(np.complex64)

    grid = np.arange(scan_side) * step_px + margin
    ys, xs = np.meshgrid(grid, grid, indexing='ij')
    xcoords = xs.ravel().astype(np.float64)
    ycoords = ys.ravel().astype(np.float64)
    num = xcoords.size
    jitter = rng.uniform(-1.5, 1.5, size=(2, num))

    patterns = np.empty((num, n, n), dtype=np.float32)
    probes = probe if probe.ndim == 3 else probe[None]
    for k in range(num):
        top = int(ycoords[k]) - n // 2
        left = int(xcoords[k]) - n // 2
        patch = obj[top : top + n, left : left + n]
        waves = np.fft.fftshift(np.fft.fft2(probes * patch, norm='ortho'), axes=(-2, -1))
        patterns[k] = np.sqrt(np.sum(np.abs(waves) ** 2, axis=0))
    scale = np.sqrt(photons / np.mean(np.sum(patterns**2, axis=(1, 2))))
    return {
        'diffraction': (patterns * scale).astype(np.float32),
        'probeGuess': probe,
        'objectGuess': obj,
        'xcoords': xcoords,
        'ycoords': ycoords,
        'xcoords_start': xcoords + jitter[0],
        'ycoords_start': ycoords + jitter[1],
        'scan_index': np.zeros(num, dtype=np.int64),
    }


def siemens_star(height: int, width: int, spokes: int = 18) -> np.ndarray:
    """A Siemens star: absorbing/phase-shifting spokes on a thin film, softened at the edges.

    A formula rather than an image from scikit-image, so the demo needs no extra
    dependency; the spokes' phase follows their amplitude as for one material.
    """
    yy, xx = np.mgrid[:height, :width]
    dy, dx = yy - (height - 1) / 2, xx - (width - 1) / 2
    radius = np.hypot(dx, dy) / (0.45 * min(height, width))
    spoke = 0.5 + 0.5 * np.tanh(4.0 * np.cos(spokes * np.arctan2(dy, dx)))
    inside = 0.5 - 0.5 * np.tanh((radius - 1.0) * 12.0)
    material = spoke * inside * (radius > 0.06)
    amplitude = 1.0 - 0.45 * material
    phase = -1.2 * material + 0.3 * np.exp(-(radius**2) / 2.0)
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def write_sample(
    path: str | os.PathLike[str],
    *,
    key: Literal['diffraction', 'diff3d'] = 'diffraction',
    layout: Literal['NHW', 'HWN', 'NHW1'] = 'NHW',
    counts: bool = False,
    compress: bool = False,
    **options: Any,
) -> dict[str, np.ndarray]:
    """Write a sample NPZ in one of the flavours found in the wild; returns its arrays."""
    arrays = simulate(**options)
    stack = arrays.pop('diffraction')
    if counts:
        rng = np.random.default_rng(options.get('seed', 0) + 1)
        stack = rng.poisson(stack.astype(np.float64) ** 2).astype(np.uint16)
    if layout == 'HWN':
        stack = np.ascontiguousarray(np.moveaxis(stack, 0, -1))
    elif layout == 'NHW1':
        stack = stack[..., None]
    arrays[key] = stack
    write_npz(path, dict(arrays), compress=compress)
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='Write a simulated PtychoPINN NPZ.')
    parser.add_argument('output', type=Path)
    parser.add_argument('--layout', choices=('NHW', 'HWN', 'NHW1'), default='NHW')
    parser.add_argument('--key', choices=('diffraction', 'diff3d'), default='diffraction')
    parser.add_argument('--counts', action='store_true', help='uint16 photon counts')
    parser.add_argument('--pattern-px', type=int, default=64)
    parser.add_argument('--scan-side', type=int, default=10)
    args = parser.parse_args(argv)
    write_sample(
        args.output, key=args.key, layout=args.layout, counts=args.counts,
        pattern_px=args.pattern_px, scan_side=args.scan_side,
    )
    print(args.output)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
