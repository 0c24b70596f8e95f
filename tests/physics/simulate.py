"""Simulate a PtychoPINN NPZ dataset with a known object (physics check, issue 11).

Everything here is written from the conventions stated below; no code is taken
from PtychoPINN or Ptychodus.

Conventions (all lengths in *object pixels*; the probe is sampled on the object grid)
-------------------------------------------------------------------------------------
* Arrays are indexed ``[row, column]`` = ``[y, x]``; ``x`` is the column (axis 1),
  ``y`` the row (axis 0); pixel ``(i, j)`` sits at ``(y, x) = (i, j)`` (origin at
  array index 0, pixel centres at integers).
* Object: ``H x W = 200 x 200`` complex128 ground truth ``amplitude * exp(1j*phase)``.
  Both are *band-limited and periodic* on the 200 x 200 grid (smooth Gaussian
  features, a Gaussian-filtered random texture, a soft-edged ring and a soft
  phase step, all built in Fourier space or decaying to a constant far from the
  edges), so a Fourier sub-pixel shift of the object is exact.
  Amplitude in ~[0.57, 1.0], phase in ~[-1.3, 1.06] rad (seed 11).
* Probe: ``N = 64``. Built in the far field as a disc pupil (radius 9 frequency
  pixels of the 64-pixel grid, 2 px tanh edge) with a quadratic (defocus) phase
  of 0.05 rad per (frequency px)^2, transformed to the sample plane (centred on
  array index ``N//2``): an out-of-focus probe with an RMS radius of ~6.6 px
  (~20 px across) whose amplitude at the window edge is < 1e-3 of its peak.
  The pupil (radius 9 < 32) keeps the far field well inside the detector.
  Perturbed probe: extra defocus 0.02 rad/px^2 and a 1 px Gaussian blur, same
  power (normalised overlap with the true probe ~0.88).
* Scan: 16 x 16 raster with step 8 px, nominal positions 40, 48, ..., 160 in x
  and y, plus independent uniform jitter in [-1, +1] px on every coordinate
  (seeded). ``xcoords``/``ycoords`` are these float positions; the patch of every
  position lies inside the object (>= 7 px margin) and the probe is well inside.
  ``xcoords_start``/``ycoords_start`` equal ``xcoords``/``ycoords``.
* Patch rule (PtychoPINN's, ``get_image_patches`` in ``ptycho/raw_data.py``,
  re-derived here): object pixel ``(ycoords, xcoords)`` is patch index
  ``(N//2, N//2)``, i.e. ``patch[r, c] = O(ycoords - N//2 + r, xcoords - N//2 + c)``
  ("object translated by -offset, padded by N//2, cropped to ``[:N, :N]``").
  Sub-pixel positions are handled by multiplying the object's spectrum by a
  phase ramp (exact Fourier shift of the band-limited periodic object), then
  cutting the integer part.
* Far field: ``psi = fftshift(fft2(probe * patch))`` with NumPy's forward FFT
  (``exp(-2 pi i k.r / N)``, no normalisation, no ``ifftshift`` on the input), so
  zero frequency is at pattern index ``(N//2, N//2)``.
* Counts: the expected intensity ``|psi|**2`` is scaled by one global factor so
  that the *mean* total count per pattern is ``photons`` (default 1e6); the
  counts are Poisson samples of it (seeded). The stored ``diffraction`` is the
  **amplitude** ``sqrt(counts)``, float32, layout NHW ``(M, N, N)`` -- as in
  PtychoPINN's canonical NPZ.
* ``probeGuess`` in the "true probe" file is the probe rescaled by
  ``sqrt(scale)``: with the true object it predicts exactly the expected counts
  (so a fixed true probe is consistent with the data in power, too).
  The "perturbed probe" file holds the same probe, further defocused and blurred,
  renormalised to the same total power.
* ``objectGuess`` is all ones (200 x 200, complex64), the initial guess.
  ``scan_index`` is all zeros (int64). Positions are float64.

Files written by :func:`simulate` (``outdir``):
``sim_true_probe.npz`` and ``sim_perturbed_probe.npz`` (PtychoPINN NPZs, identical
except for ``probeGuess``), ``truth.npz`` (``object`` complex128, ``probe`` the
scaled true probe, ``xcoords``, ``ycoords``, ``illumination`` = summed
``|probe|**2`` over all positions on the object grid by the same patch rule
(nearest whole pixel), ``scale``, ``mean_counts``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

OBJECT_SHAPE = (200, 200)
PROBE_N = 64
SCAN_SIDE = 16
SCAN_STEP = 8.0
SCAN_START = 40.0
JITTER_PX = 1.0
PHOTONS = 1e6


def _freq_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies in cycles/pixel (NumPy FFT order) along rows (ky) and columns (kx)."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    return ky, kx


def _smooth_noise(shape: tuple[int, int], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """Periodic Gaussian-filtered white noise, zero mean, unit max |value|."""
    ky, kx = _freq_grid(shape)
    noise = rng.standard_normal(shape)
    filt = np.exp(-2 * (np.pi * sigma_px) ** 2 * (kx**2 + ky**2))
    out = np.fft.ifft2(np.fft.fft2(noise) * filt).real
    out -= out.mean()
    return out / np.abs(out).max()


def _blob(yy: np.ndarray, xx: np.ndarray, y0: float, x0: float, sigma: float) -> np.ndarray:
    return np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * sigma**2))


def _lowpass(image: np.ndarray, sigma_px: float) -> np.ndarray:
    ky, kx = _freq_grid(image.shape)
    return np.fft.ifft2(np.fft.fft2(image) * np.exp(-2 * (np.pi * sigma_px) ** 2 * (kx**2 + ky**2))).real


def make_object(rng: np.random.Generator) -> np.ndarray:
    """The 200 x 200 complex ground truth (band-limited, periodic)."""
    h, w = OBJECT_SHAPE
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    # amplitude: smooth absorbing blobs + fine texture
    amp = 1.0 - 0.35 * _blob(yy, xx, 80, 120, 14) - 0.25 * _blob(yy, xx, 135, 70, 9)
    amp -= 0.12 * (_smooth_noise(OBJECT_SHAPE, 2.0, rng) + 1) / 2
    # phase: a soft ring, a soft step, blobs and a finer texture
    r = np.hypot(yy - 95, xx - 90)
    ring = _lowpass(((r > 22) & (r < 30)).astype(float), 1.2)
    step = _lowpass(((xx > 125) & (xx < 160) & (yy > 110) & (yy < 150)).astype(float), 1.5)
    phase = 0.8 * ring - 0.9 * step + 0.5 * _blob(yy, xx, 60, 60, 10) - 0.4 * _blob(yy, xx, 150, 140, 7)
    phase += 0.35 * _smooth_noise(OBJECT_SHAPE, 1.5, rng)
    # everything is periodic: blobs/ring/step vanish long before the borders,
    # noise and low-pass are circular
    return amp * np.exp(1j * phase)


def make_probe(n: int = PROBE_N, pupil_radius: float = 9.0, defocus: float = 5.0e-2) -> np.ndarray:
    """Defocused disc-pupil probe, unit peak amplitude, (n, n) complex128.

    ``defocus`` is the quadratic phase in the pupil, rad per (frequency pixel)^2.
    The probe is centred on index ``n//2`` in real space (fftshift of the
    inverse transform) -- its exact centre is irrelevant to the physics check.
    """
    k = np.arange(n) - n // 2
    kr2 = k[:, None] ** 2 + k[None, :] ** 2
    pupil = _soft_disc(np.sqrt(kr2), pupil_radius, edge=2.0) * np.exp(1j * defocus * kr2)
    probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pupil)))
    return probe / np.abs(probe).max()


def _soft_disc(r: np.ndarray, radius: float, edge: float = 1.0) -> np.ndarray:
    return 0.5 * (1 - np.tanh((r - radius) / edge))


def perturb_probe(probe: np.ndarray, extra_defocus: float = 2.0e-2, blur_px: float = 1.0) -> np.ndarray:
    """The true probe with extra defocus and a Gaussian blur, same total power."""
    n = probe.shape[0]
    k = np.arange(n) - n // 2
    kr2 = k[:, None] ** 2 + k[None, :] ** 2
    spec = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(probe)))
    spec *= np.exp(1j * extra_defocus * kr2)
    out = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(spec)))
    out = _lowpass(out.real, blur_px) + 1j * _lowpass(out.imag, blur_px)
    return out * np.sqrt(np.sum(np.abs(probe) ** 2) / np.sum(np.abs(out) ** 2))


def make_positions(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row-major raster (x fastest), ±JITTER_PX uniform jitter, float64 object pixels."""
    nominal = SCAN_START + SCAN_STEP * np.arange(SCAN_SIDE)
    yy, xx = np.meshgrid(nominal, nominal, indexing='ij')
    x = xx.ravel() + rng.uniform(-JITTER_PX, JITTER_PX, xx.size)
    y = yy.ravel() + rng.uniform(-JITTER_PX, JITTER_PX, yy.size)
    return x.astype(np.float64), y.astype(np.float64)


def cut_patches(obj: np.ndarray, x: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """PtychoPINN's patch rule with exact Fourier sub-pixel shifts.

    ``patch[r, c] = obj(y - n//2 + r, x - n//2 + c)``: object pixel ``(y, x)``
    lands on patch index ``(n//2, n//2)``.
    """
    ky, kx = _freq_grid(obj.shape)
    spectrum = np.fft.fft2(obj)
    patches = np.empty((x.size, n, n), dtype=np.complex128)
    for m, (xm, ym) in enumerate(zip(x, y, strict=True)):
        ix, iy = int(np.floor(xm)), int(np.floor(ym))
        fx, fy = xm - ix, ym - iy
        # shifted(r, c) = obj(r + fy, c + fx)
        shifted = np.fft.ifft2(spectrum * np.exp(2j * np.pi * (ky * fy + kx * fx)))
        r0, c0 = iy - n // 2, ix - n // 2
        if r0 < 0 or c0 < 0 or r0 + n > obj.shape[0] or c0 + n > obj.shape[1]:
            raise ValueError(f'position {m} ({xm:.2f}, {ym:.2f}) cuts outside the object')
        patches[m] = shifted[r0 : r0 + n, c0 : c0 + n]
    return patches


def illumination(probe: np.ndarray, x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Summed ``|probe|**2`` on the object grid, placed by the same patch rule (nearest pixel)."""
    n = probe.shape[0]
    out = np.zeros(shape)
    p2 = np.abs(probe) ** 2
    for xm, ym in zip(x, y, strict=True):
        r0, c0 = int(round(ym)) - n // 2, int(round(xm)) - n // 2
        out[r0 : r0 + n, c0 : c0 + n] += p2
    return out


def far_field_amplitude(probe: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """``|fftshift(fft2(probe * patch))|`` for every patch (expected amplitude)."""
    return np.abs(np.fft.fftshift(np.fft.fft2(probe[None] * patches), axes=(-2, -1)))


def simulate(outdir: Path, *, seed: int = 11, photons: float = PHOTONS) -> dict[str, Path]:
    """Write the two PtychoPINN NPZs and the ground truth; return their paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    obj = make_object(rng)
    probe = make_probe()
    x, y = make_positions(rng)
    patches = cut_patches(obj, x, y, PROBE_N)
    expected = far_field_amplitude(probe, patches) ** 2
    scale = photons / expected.sum(axis=(1, 2)).mean()
    counts = rng.poisson(expected * scale)
    diffraction = np.sqrt(counts).astype(np.float32)
    probe_scaled = probe * np.sqrt(scale)

    common = {
        'diffraction': diffraction,
        'objectGuess': np.ones(OBJECT_SHAPE, dtype=np.complex64),
        'xcoords': x,
        'ycoords': y,
        'xcoords_start': x.copy(),
        'ycoords_start': y.copy(),
        'scan_index': np.zeros(x.size, dtype=np.int64),
    }
    paths = {
        'true_probe': outdir / 'sim_true_probe.npz',
        'perturbed_probe': outdir / 'sim_perturbed_probe.npz',
        'truth': outdir / 'truth.npz',
    }
    np.savez(paths['true_probe'], probeGuess=probe_scaled.astype(np.complex64), **common)
    np.savez(paths['perturbed_probe'], probeGuess=perturb_probe(probe_scaled).astype(np.complex64), **common)
    np.savez(
        paths['truth'],
        object=obj,
        probe=probe_scaled,
        xcoords=x,
        ycoords=y,
        illumination=illumination(probe, x, y, OBJECT_SHAPE),
        scale=np.float64(scale),
        mean_counts=np.float64(counts.sum(axis=(1, 2)).mean()),
    )
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('outdir', type=Path)
    parser.add_argument('--seed', type=int, default=11)
    parser.add_argument('--photons', type=float, default=PHOTONS)
    args = parser.parse_args()
    paths = simulate(args.outdir, seed=args.seed, photons=args.photons)
    print(json.dumps({k: str(v) for k, v in paths.items()}))


if __name__ == '__main__':
    main()
