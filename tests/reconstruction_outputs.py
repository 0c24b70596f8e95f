"""Reconstruction outputs written exactly as PtychoPINN's scripts write them, and its stitcher in numpy.

Builders (no tests here):

* :func:`grid_lines_recon` -- ``ptycho/workflows/grid_lines_workflow.py`` ``save_recon_artifact``:
  ``np.savez(path, YY_pred=recon, amp=abs, phase=angle)`` of the squeezed complex64 canvas.
* :func:`compare_models_reconstructions` -- ``scripts/compare_models.py`` ``save_reconstruction_npz``:
  ``np.savez_compressed`` of ``ptychopinn_*``/``baseline_*`` (``None`` when absent, which numpy
  stores as a pickled object array) and ``ground_truth_*`` when a ground truth is given.
* :func:`tike_reconstruction` -- ``scripts/reconstruction/run_tike_reconstruction.py``
  ``save_tike_results``: ``reconstructed_object``, ``reconstructed_probe`` and ``metadata`` as a
  one-element object array holding a dict (pickled).
* :func:`ptychi_reconstruction` -- ``scripts/reconstruction/ptychi_reconstruct_tike.py`` ``save_results``:
  ``reconstructed_object``, ``reconstructed_probe``, ``algorithm='pty-chi'``, ``timestamp`` (0-d strings).

The stitcher (:func:`stitch`) re-implements ``ptycho/tf_helper.py`` ``shift_and_sum`` /
``reassemble_position`` with numpy, and :func:`cut_patches` ``ptycho/raw_data.py``
``get_image_patches``, both with the default XLA translation
(``ptycho/projective_warp_xla.py`` ``translate_xla``: output ``q`` samples input ``q - t``,
bilinear, zeros outside).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def translate(img: np.ndarray, tx: float, ty: float) -> np.ndarray:
    """``translate_xla``: content moves by ``+t``; bilinear; zero outside the image."""
    height, width = img.shape
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64),
                             indexing='ij')
    return bilinear(img, cols - tx, rows - ty)


def bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``img`` sampled at ``(y, x)``, bilinear, zero outside (``fill_mode='zeros'``)."""
    height, width = img.shape
    x0 = np.floor(x).astype(int)
    y0 = np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    out = np.zeros(np.shape(x), dtype=np.result_type(img.dtype, np.complex128))
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            ok = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
            value = np.where(ok, img[np.clip(yy, 0, height - 1), np.clip(xx, 0, width - 1)], 0)
            out += wy * wx * value
    return out


def cut_patches(obj: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray, n: int) -> np.ndarray:
    """``get_image_patches`` (gridsize 1): pad by ``N // 2``, translate by minus the offset, ``[:N, :N]``."""
    padded = np.pad(obj, n // 2)
    return np.stack([translate(padded, -x, -y)[:n, :n] for x, y in zip(xcoords, ycoords, strict=True)])


def stitch(patches: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray, m: int = 20) -> np.ndarray:
    """``reassemble_position(patches, offsets, M=m)``: shift-and-sum of central crops, normalised."""
    n = patches.shape[-1]
    crop = patches[:, n // 2 - m // 2 : n // 2 + m // 2, n // 2 - m // 2 : n // 2 + m // 2]
    offsets = np.stack([xcoords, ycoords], axis=1).astype(np.float32)
    com = offsets.mean(axis=0, dtype=np.float32)
    adjusted = offsets - com
    pad = int(np.ceil(np.max(np.abs(adjusted))))
    pad += pad % 2
    total = np.zeros((m + 2 * pad, m + 2 * pad), dtype=np.complex128)
    weight = np.zeros_like(total)
    ones = np.pad(np.ones(crop.shape[1:]), pad)
    for patch, (tx, ty) in zip(crop, adjusted.astype(np.float64), strict=True):
        total += translate(np.pad(patch, pad), tx, ty)
        weight += translate(ones, tx, ty)
    return (total / (1e-9 + weight)).astype(np.complex64)


def grid_lines_recon(path: Path, recon: np.ndarray) -> Path:
    recon = np.squeeze(recon)
    if recon.ndim > 2:
        recon = recon[0]
    recon = recon.astype(np.complex64)
    np.savez(path, YY_pred=recon, amp=np.abs(recon), phase=np.angle(recon))
    return path


def compare_models_reconstructions(
    path: Path, pinn: np.ndarray, baseline: np.ndarray | None = None, ground_truth: np.ndarray | None = None
) -> Path:
    def parts(value: np.ndarray | None) -> tuple[Any, Any, Any]:
        if value is None:
            return None, None, None
        squeezed = np.squeeze(value)
        return np.abs(squeezed), np.angle(squeezed), squeezed

    data: dict[str, Any] = {}
    for name, value in (('ptychopinn', pinn), ('baseline', baseline)):
        amp, phase, complex_ = parts(value)
        data.update({f'{name}_amplitude': amp, f'{name}_phase': phase, f'{name}_complex': complex_})
    if ground_truth is not None:
        amp, phase, complex_ = parts(ground_truth)
        data.update({'ground_truth_amplitude': amp, 'ground_truth_phase': phase,
                     'ground_truth_complex': complex_})
    np.savez_compressed(path, **data)
    return path


def tike_reconstruction(path: Path, obj: np.ndarray, probe: np.ndarray, extra_padding: int = 64) -> Path:
    metadata = {'algorithm': 'tike', 'parameters': {'extra_padding': extra_padding}}
    np.savez_compressed(path, reconstructed_object=obj, reconstructed_probe=probe,
                        metadata=np.array([metadata]))
    return path


def ptychi_reconstruction(path: Path, obj: np.ndarray, probe: np.ndarray) -> Path:
    np.savez_compressed(path, reconstructed_object=obj, reconstructed_probe=probe,
                        algorithm='pty-chi', timestamp='2025-01-01T00:00:00')
    return path


def tike_canvas(obj: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray, n: int, extra: int) -> np.ndarray:
    """The object as tike lays it out: ``get_padded_object`` (tike's ``ptycho/object.py``), probe corners.

    Tike pixel ``scan + 1 - floor(min scan) + extra + p`` is lit by probe pixel ``p``; PtychoPINN's
    patch pixel ``p`` is object pixel ``x - N//2 + p``, so tike pixel ``k`` is object pixel
    ``k - 1 + floor(min x) - extra - N//2`` (resampled here only at integer shifts).
    """
    low = np.floor(np.array([ycoords.min(), xcoords.min()]))
    high = np.floor(np.array([ycoords.max(), xcoords.max()]))
    height, width = (high - low + n + 2 + 2 * extra).astype(int)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
    return bilinear(obj, cols - 1 + low[1] - extra - n // 2, rows - 1 + low[0] - extra - n // 2).astype(
        np.complex64
    )


def linear_object(shape: tuple[int, int]) -> np.ndarray:
    """A complex object linear in row and column: bilinear interpolation reproduces it exactly."""
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing='ij')
    return (1 + 0.01 * cols + 0.02 * rows + 1j * (0.5 + 0.003 * cols - 0.004 * rows)).astype(np.complex128)
