"""Which position convention do a file's patterns, probe and object support?

The test
--------
For every (subsampled) position the far-field amplitude is modelled as
PtychoPINN computes it: the object patch is cut so that the Ptychodus object
pixel ``coord - offset`` lies under the probe centre (probe index ``(N - 1) / 2``;
``offset`` is :func:`~ptychopinn_ptychodus.facts.geometry.patch_offset_px` of the
convention), sub-pixel parts are applied as exact Fourier shifts of a padded
local window, and the model is ``|fftshift(fft2(probe * patch))|`` (summed
incoherently over probe modes). The model error is scale invariant:
``min_s ||s * model - A|| / ||A||`` over all used patterns (one global ``s``:
probe power and detector gain are unknown). It is evaluated for each named
convention and over a small grid of global offsets (``-1 .. 1.5`` px, step
0.25, refined by a parabola) to show where the data put the minimum.

What it can tell, and what it cannot
------------------------------------
A probe shift and a position shift trade against each other: moving the probe
by ``d`` inside its array explains the same patterns at every position moved
by ``-d`` (the exit wave only moves inside the window, which leaves its
far-field amplitude alone). So the test answers a narrower question than
"what is the true placement": *which convention makes THIS probe and THIS
object explain THESE patterns*. That is what a reader needs (it will place
this probe and object at these positions), but it is no evidence about the
experiment's absolute geometry.

* A reconstruction is defined only up to moving probe and object together;
  that changes nothing here (the pair explains the patterns at the same
  positions), so a reconstruction's drift does not fool the test.
* A probe re-centred, or an object registered or cropped by a sub-pixel
  amount, after the reconstruction moves the minimum by that amount: a
  quarter pixel puts it between the conventions (``inconclusive``), half a
  pixel makes the other convention win. The test cannot tell such an edit
  from a file written with the other convention.
* For odd patch sizes the conventions coincide: nothing to tell.

The verdict is ``consistent`` only when all of these hold; otherwise
``inconclusive`` with the reason:

* the winner is better on a paired comparison over patterns: the per-pattern
  squared residuals differ with ``t >= MIN_T`` (5; the comparison noise is
  measured from the data, whatever its origin -- photon noise, reconstruction
  errors or pattern-to-pattern variation -- so no noise model is assumed);
* the errors differ by at least ``MIN_RELATIVE_CONTRAST`` (2 %) of the winner's
  error: below that, the difference is of the order of the modelling
  approximations (windowed Fourier shifts, subsampling, an imperfect
  reconstruction's structure) and not worth a verdict;
* the positions matter: the winner's error is below ``MAX_SHUFFLED_RATIO``
  (0.9) of the error with the patterns paired to permuted positions (an
  object and probe that explain the patterns equally well anywhere carry no
  placement information);
* the grid minimum lies within ``MAX_OFFSET_DISTANCE_PX`` (0.2 px, each axis)
  of the winner's offset (the conventions are half a pixel apart for even
  patch sizes, so this also makes the winner the nearest convention).

Poisson photon noise alone sets a floor of about
``0.5 * sqrt(pixels) / ||A||`` on the error of a perfect model (amplitude of
counts has a standard deviation of ~1/2); it is reported in the notes when the
squared amplitudes look like counts.

``not applicable`` (:func:`applicable`): no stack, no probe or object, a
constant (placeholder, e.g. all-ones) object or probe, a probe whose size
differs from the patterns', or no position whose window lies inside the object.
This module needs numpy only.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ..facts.geometry import DEFAULT_CONVENTION, PositionConvention, patch_offset_px
from ..facts.stack import probe_size_mismatch

Status = str  # 'consistent' | 'inconclusive' | 'not applicable'
CONSISTENT = 'consistent'
INCONCLUSIVE = 'inconclusive'
NOT_APPLICABLE = 'not applicable'

#: Minimum paired t statistic (per-pattern residuals) for a verdict.
MIN_T = 5.0
#: Minimum (error_other - error_best) / error_best for a verdict.
MIN_RELATIVE_CONTRAST = 0.02
#: The winner's error must be below this fraction of the shuffled-positions error.
MAX_SHUFFLED_RATIO = 0.9
#: The grid minimum must lie this close (px, each axis) to the winner's offset.
MAX_OFFSET_DISTANCE_PX = 0.2
#: Global offsets tried (px, in the sense of ``patch_offset_px``), each axis.
GRID_OFFSETS_PX: tuple[float, ...] = tuple(np.arange(-1.0, 1.5 + 1e-9, 0.25).tolist())
#: Padding (px) of the local window whose Fourier shift gives the sub-pixel patch.
WINDOW_PAD_PX = 16
#: Relative amplitude below which an array counts as constant (a placeholder).
CONSTANT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class PlacementVerdict:
    """What the patterns, probe and object say about the position convention.

    ``errors`` maps convention name -> model error (scale-invariant normalised
    amplitude error); ``best_offset_px`` is ``(dy, dx)`` of the grid minimum in
    the sense of ``patch_offset_px`` (Ptychodus pixel = coord - offset; the
    ptychopinn convention is ``(0.5, 0.5)`` for even patches, identity ``(0, 0)``).
    """

    status: Status
    best: str | None
    errors: dict[str, float]
    best_offset_px: tuple[float, float] | None
    disagrees_with_recorded: bool
    sentence: str
    notes: tuple[str, ...] = ()
    #: convention the file records, or the default it falls back to
    expected: str = DEFAULT_CONVENTION.value
    recorded: str | None = None
    patterns_used: int = 0
    t_statistic: float | None = None
    shuffled_error: float | None = None
    grid_errors: dict[tuple[float, float], float] = field(default_factory=dict)
    seconds: float = 0.0


# ---------------------------------------------------------------------------
# applicability
# ---------------------------------------------------------------------------


def is_constant(array: npt.ArrayLike) -> bool:
    """Whether every value equals the first to ``CONSTANT_TOLERANCE`` (a placeholder such as all ones)."""
    values = np.asarray(array).ravel()
    scale = float(np.max(np.abs(values))) if values.size else 0.0
    if scale == 0.0:
        return True
    return float(np.max(np.abs(values - values[0]))) <= CONSTANT_TOLERANCE * scale


_is_constant = is_constant  # the name convert/check.py first used


def _probe_modes(probe: npt.ArrayLike) -> npt.NDArray[np.complex64]:
    modes = np.asarray(probe)
    while modes.ndim > 3:  # (OPR, modes, N, N): the first OPR component
        modes = modes[0]
    if modes.ndim == 2:
        modes = modes[None]
    return modes.astype(np.complex64)


def applicable(
    amplitudes: npt.ArrayLike | None,
    probe: npt.ArrayLike | None,
    obj: npt.ArrayLike | None,
    xcoords: npt.ArrayLike | None = None,
    ycoords: npt.ArrayLike | None = None,
) -> str | None:
    """Why the placement test cannot be run on these arrays, or ``None`` if it can.

    Cheap: no FFT. Reasons are short phrases for a report line.

    Parameters
    ----------
    amplitudes: (M, N, N) measured amplitudes, or ``None`` when the file has no stack
    probe: (N, N) complex probe (or (K, N, N) modes), or ``None``
    obj: (H, W) complex object, or ``None``
    xcoords: (M,) file x coordinates (object pixels), optional
    ycoords: (M,) file y coordinates (object pixels), optional
    """
    if amplitudes is None:
        return 'no diffraction stack'
    stack = np.asarray(amplitudes)
    if stack.size == 0:
        return 'the diffraction stack is empty'
    if stack.ndim != 3:
        return f'the diffraction stack has {stack.ndim} dimensions, not 3'
    if probe is None:
        return 'no probe'
    if obj is None:
        return 'no object'
    modes = np.asarray(probe)
    if modes.ndim < 2:
        return 'the probe is not an image'
    mismatch = probe_size_mismatch(modes.shape, (stack.shape[1], stack.shape[2]))
    if mismatch is not None:
        return mismatch
    image = np.asarray(obj)
    while image.ndim > 2 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 2:
        return f'the object has {image.ndim} dimensions, not 2'
    if not (np.all(np.isfinite(image)) and np.all(np.isfinite(modes))):
        return 'the probe or object holds non-finite values'
    if is_constant(image):
        value = complex(image.ravel()[0])
        return f'the object is a placeholder (constant {value:g})'
    if is_constant(modes):
        return 'the probe is a placeholder (constant)'
    n_y, n_x = stack.shape[1:]
    if all(
        patch_offset_px(n, c) == patch_offset_px(n, DEFAULT_CONVENTION)
        for n in (n_y, n_x)
        for c in PositionConvention
    ):
        return f'for a {n_y}x{n_x} (odd) patch every convention places the probe alike'
    if image.shape[0] < n_y or image.shape[1] < n_x:
        return f'the object ({image.shape[0]}x{image.shape[1]}) is smaller than the probe ({n_y}x{n_x})'
    if xcoords is not None and ycoords is not None:
        x = np.asarray(xcoords, dtype=np.float64).ravel()
        y = np.asarray(ycoords, dtype=np.float64).ravel()
        if x.size != stack.shape[0] or y.size != stack.shape[0]:
            return f'{x.size} x and {y.size} y coordinates for {stack.shape[0]} patterns'
        if not _inside(x, y, (n_y, n_x), image.shape).any():
            return 'no position has its probe window inside the object'
    return None


def _inside(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], patch: tuple[int, int], shape: tuple[int, ...]
) -> npt.NDArray[np.bool_]:
    """Positions whose patch lies inside the object for every offset of the grid."""
    lo, hi = min(GRID_OFFSETS_PX), max(GRID_OFFSETS_PX)
    ok = np.ones(x.size, dtype=bool)
    for coord, n, size in ((x, patch[1], shape[1]), (y, patch[0], shape[0])):
        first = coord - hi - (n - 1) / 2  # smallest patch start over the grid
        last = coord - lo - (n - 1) / 2 + n - 1
        ok &= (np.floor(first) >= 0) & (np.ceil(last) <= size - 1)
    return ok


# ---------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------


@dataclass
class _Windows:
    """Spectra of the padded object windows around each used position."""

    spectra: npt.NDArray[np.complex64]  # (M, Wy, Wx)
    frac_y: npt.NDArray[np.float64]  # window start -> patch start, at offset 0
    frac_x: npt.NDArray[np.float64]
    patch: tuple[int, int]
    pad: int


def _windows(
    obj: npt.NDArray[np.complex64],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    patch: tuple[int, int],
    pad: int,
) -> _Windows:
    n_y, n_x = patch
    start_x = x - (n_x - 1) / 2  # patch start at offset 0 (the identity convention)
    start_y = y - (n_y - 1) / 2
    # the margin beyond the object repeats its edge: it only tapers the window, the patch is inside
    padded = np.pad(obj, pad + 2, mode='edge')
    base_x = np.rint(start_x).astype(np.int64) - pad
    base_y = np.rint(start_y).astype(np.int64) - pad
    w_y, w_x = n_y + 2 * pad, n_x + 2 * pad
    rows = base_y[:, None] + np.arange(w_y)[None, :] + pad + 2
    cols = base_x[:, None] + np.arange(w_x)[None, :] + pad + 2
    spectra = np.empty((x.size, w_y, w_x), dtype=np.complex64)
    for chunk in _chunks(x.size):
        spectra[chunk] = np.fft.fft2(padded[rows[chunk, :, None], cols[chunk, None, :]])
    return _Windows(spectra, start_y - base_y, start_x - base_x, patch, pad)


def _chunks(count: int, size: int = 32) -> list[slice]:
    return [slice(i, min(i + size, count)) for i in range(0, count, size)]


def _model_chunk(
    win: _Windows, chunk: slice, probe: npt.NDArray[np.complex64], offset_y: float, offset_x: float
) -> npt.NDArray[np.float32]:
    """Far-field amplitudes of the positions in ``chunk`` for a global offset (``patch_offset_px`` sense)."""
    n_y, n_x = win.patch
    w_y, w_x = win.spectra.shape[1:]
    ky = np.fft.fftfreq(w_y)
    kx = np.fft.fftfreq(w_x)
    # patch[r, c] = window(pad + r + gy, pad + c + gx): a small Fourier shift g, then the centre crop
    gy = win.frac_y[chunk] - offset_y - win.pad
    gx = win.frac_x[chunk] - offset_x - win.pad
    ramp_y = np.exp(2j * np.pi * gy[:, None] * ky[None, :]).astype(np.complex64)
    ramp_x = np.exp(2j * np.pi * gx[:, None] * kx[None, :]).astype(np.complex64)
    shifted = np.fft.ifft2(win.spectra[chunk] * ramp_y[:, :, None] * ramp_x[:, None, :])
    patches = shifted[:, win.pad : win.pad + n_y, win.pad : win.pad + n_x]
    intensity = np.zeros(patches.shape, dtype=np.float32)
    for mode in probe:
        far = np.fft.fft2(mode[None] * patches)
        intensity += far.real**2 + far.imag**2
    return np.fft.fftshift(np.sqrt(intensity), axes=(-2, -1))


@dataclass(frozen=True)
class _Fit:
    error: float
    per_pattern: npt.NDArray[np.float64]  # squared residual of each pattern at the global scale


def _evaluate(
    win: _Windows,
    probe: npt.NDArray[np.complex64],
    data: npt.NDArray[np.float32],
    offset: tuple[float, float],
    *,
    pairing: npt.NDArray[np.int64] | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> _Fit:
    """Scale-invariant model error ``min_s ||s model - A|| / ||A||`` for one global offset.

    ``pairing[m]`` is the pattern compared with position ``m`` (default: its own).
    Invalid pixels were set to -1 in ``data`` and are left out.
    """
    count = win.spectra.shape[0]
    pairing = np.arange(count) if pairing is None else pairing
    sums = np.zeros((count, 3))  # per pattern: model.model, model.data, data.data

    def work(chunk: slice) -> None:
        model = _model_chunk(win, chunk, probe, *offset).astype(np.float64)
        measured = data[pairing[chunk]].astype(np.float64)
        valid = measured >= 0
        model = np.where(valid, model, 0.0)
        measured = np.where(valid, measured, 0.0)
        sums[chunk, 0] = np.sum(model * model, axis=(1, 2))
        sums[chunk, 1] = np.sum(model * measured, axis=(1, 2))
        sums[chunk, 2] = np.sum(measured * measured, axis=(1, 2))

    chunks = _chunks(count)
    if pool is None:
        for chunk in chunks:
            work(chunk)
    else:
        list(pool.map(work, chunks))
    mm, ma, aa = sums.sum(axis=0)
    if mm <= 0.0 or aa <= 0.0:
        return _Fit(1.0, sums[:, 2])
    scale = ma / mm
    per_pattern = np.maximum(scale * scale * sums[:, 0] - 2 * scale * sums[:, 1] + sums[:, 2], 0.0)
    return _Fit(math.sqrt(float(per_pattern.sum()) / aa), per_pattern)


def _parabola_min(values: Sequence[float], errors: Sequence[float]) -> float:
    """Vertex of the parabola through the minimum and its neighbours (on a uniform grid)."""
    i = int(np.argmin(errors))
    if i == 0 or i == len(values) - 1:
        return float(values[i])
    e0, e1, e2 = errors[i - 1], errors[i], errors[i + 1]
    denom = e0 - 2 * e1 + e2
    if denom <= 0:
        return float(values[i])
    step = values[i + 1] - values[i]
    return float(values[i] + 0.5 * step * (e0 - e2) / denom)


def assess_placement(
    amplitudes: npt.ArrayLike,
    probe: npt.ArrayLike,
    obj: npt.ArrayLike,
    xcoords: npt.ArrayLike,
    ycoords: npt.ArrayLike,
    *,
    recorded: PositionConvention | str | None = None,
    max_patterns: int = 256,
    grid_patterns: int = 64,
    grid: bool = True,
    threads: int | None = None,
) -> PlacementVerdict:
    """Model the patterns under each convention and say which placement they support.

    Parameters
    ----------
    amplitudes: (M, N, N) measured amplitudes (square roots of intensities), zero frequency at N//2
    probe: (N, N) complex probe, or (K, N, N) incoherent modes
    obj: (H, W) complex object on the grid the coordinates refer to
    xcoords: (M,) the file's x coordinates (object pixels, column axis)
    ycoords: (M,) the file's y coordinates (object pixels, row axis)
    recorded: the convention the file records, or ``None`` when it records none (the default applies)
    max_patterns: at most this many positions are modelled for the conventions (evenly spaced)
    grid_patterns: at most this many of them are used for the offset grid
    grid: whether to scan the grid of global offsets (off: conventions only, faster)
    threads: FFT threads (default: the CPU count, at most 8)
    """
    t0 = time.perf_counter()
    recorded_name = None if recorded is None else PositionConvention(recorded).value
    expected = recorded_name or DEFAULT_CONVENTION.value
    reason = applicable(amplitudes, probe, obj, xcoords, ycoords)
    if reason is not None:
        return PlacementVerdict(
            status=NOT_APPLICABLE,
            best=None,
            errors={},
            best_offset_px=None,
            disagrees_with_recorded=False,
            sentence=f'placement test not applicable: {reason}',
            expected=expected,
            recorded=recorded_name,
            seconds=time.perf_counter() - t0,
        )
    stack = np.asarray(amplitudes)
    modes = _probe_modes(probe)
    image = np.asarray(obj)
    while image.ndim > 2:
        image = image[0]
    image = image.astype(np.complex64)
    x = np.asarray(xcoords, dtype=np.float64).ravel()
    y = np.asarray(ycoords, dtype=np.float64).ravel()
    patch = (int(stack.shape[1]), int(stack.shape[2]))
    usable = np.flatnonzero(_inside(x, y, patch, image.shape))
    if usable.size > max_patterns:
        usable = usable[np.linspace(0, usable.size - 1, max_patterns).round().astype(np.int64)]
    data = stack[usable].astype(np.float32)
    data[~(np.isfinite(data) & (data >= 0))] = -1.0  # left out of every sum
    workers = max(1, min(threads if threads is not None else (os.cpu_count() or 1), 8))
    with ThreadPoolExecutor(max_workers=workers) if workers > 1 else nullcontext() as pool:
        win = _windows(image, x[usable], y[usable], patch, WINDOW_PAD_PX)
        errors: dict[str, float] = {}
        fits: dict[str, _Fit] = {}
        offsets: dict[str, tuple[float, float]] = {}
        for convention in PositionConvention:
            off = (patch_offset_px(patch[0], convention), patch_offset_px(patch[1], convention))
            offsets[convention.value] = off
            fits[convention.value] = _evaluate(win, modes, data, off, pool=pool)
            errors[convention.value] = fits[convention.value].error
        ranked = sorted(errors, key=errors.__getitem__)
        best, other = ranked[0], ranked[1]

        # baseline: the winner's model against the patterns of positions half the scan away
        shuffled_error: float | None = None
        if usable.size > 1:
            pairing = np.roll(np.arange(usable.size), usable.size // 2)
            shuffled_error = _evaluate(win, modes, data, offsets[best], pairing=pairing, pool=pool).error

        # global offsets on a subset, one axis at a time through the winner's offset
        grid_errors: dict[tuple[float, float], float] = {}
        best_offset: tuple[float, float] | None = None
        if grid:
            take = np.linspace(0, usable.size - 1, min(grid_patterns, usable.size)).round().astype(np.int64)
            sub = _Windows(win.spectra[take], win.frac_y[take], win.frac_x[take], win.patch, win.pad)
            values = list(GRID_OFFSETS_PX)

            def scan(fixed: float, axis: int) -> float:
                row = []
                for value in values:
                    key = (fixed, value) if axis == 1 else (value, fixed)
                    grid_errors[key] = _evaluate(sub, modes, data[take], key, pool=pool).error
                    row.append(grid_errors[key])
                return _parabola_min(values, row)

            best_x = scan(offsets[best][0], axis=1)
            best_y = scan(best_x, axis=0)
            best_offset = (best_y, best_x)
    per_pattern = {name: fit.per_pattern for name, fit in fits.items()}
    notes: list[str] = [f'{usable.size} of {x.size} positions modelled']

    diff = per_pattern[other] - per_pattern[best]
    t_stat: float | None = None
    if diff.size > 1 and np.std(diff) > 0:
        t_stat = float(np.mean(diff) / (np.std(diff, ddof=1) / math.sqrt(diff.size)))
    elif diff.size > 1 and np.mean(diff) > 0:
        t_stat = math.inf

    kept = data[data >= 0].astype(np.float64)
    counts = kept**2
    if kept.size and np.all(np.abs(counts - np.rint(counts)) < 1e-3 * np.maximum(1.0, counts)):
        floor = 0.5 * math.sqrt(float(np.count_nonzero(kept))) / float(np.linalg.norm(kept))
        notes.append(f'Poisson floor of the error ~{floor:.3g} (squared amplitudes are counts)')

    problems = []
    t_text = 'undefined' if t_stat is None else f'{t_stat:.1f}'
    if t_stat is None or t_stat < MIN_T:
        problems.append(f'the conventions fit about equally well (paired t {t_text} < {MIN_T:g})')
    if errors[other] - errors[best] < MIN_RELATIVE_CONTRAST * errors[best]:
        problems.append(f'errors differ by less than {MIN_RELATIVE_CONTRAST:.0%}')
    if shuffled_error is not None and errors[best] > MAX_SHUFFLED_RATIO * shuffled_error:
        problems.append(
            'the probe and object explain the patterns no better at other positions '
            f'(shuffled {shuffled_error:.3g})'
        )
    if best_offset is not None:
        want = offsets[best]
        if max(abs(best_offset[0] - want[0]), abs(best_offset[1] - want[1])) > MAX_OFFSET_DISTANCE_PX:
            problems.append(
                f'the error is smallest at offset ({best_offset[0]:+.2f}, {best_offset[1]:+.2f}) px, '
                f'away from the {best} convention ({want[0]:+.2f}, {want[1]:+.2f})'
            )
    figures = f'error {errors[best]:.3g}; {other} {errors[other]:.3g}'
    if best_offset is not None:
        figures += f'; minimum at offset ({best_offset[0]:+.2f}, {best_offset[1]:+.2f}) px'
    if problems:
        status, winner = INCONCLUSIVE, None
        sentence = (
            f'placement inconclusive: {"; ".join(problems)} '
            f'({best} {errors[best]:.3g}, {other} {errors[other]:.3g})'
        )
        disagrees = False
    else:
        status, winner = CONSISTENT, best
        sentence = f'consistent with the {best} convention ({figures})'
        disagrees = best != expected
        if disagrees:
            source = (
                f'the file records {expected}'
                if recorded_name
                else f'the default {expected} (nothing recorded)'
            )
            sentence += f' -- disagrees with {source}'
    return PlacementVerdict(
        status=status,
        best=winner,
        errors=errors,
        best_offset_px=best_offset,
        disagrees_with_recorded=disagrees,
        sentence=sentence,
        notes=tuple(notes),
        expected=expected,
        recorded=recorded_name,
        patterns_used=int(usable.size),
        t_statistic=t_stat,
        shuffled_error=shuffled_error,
        grid_errors=grid_errors,
        seconds=time.perf_counter() - t0,
    )
