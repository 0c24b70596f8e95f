"""The placement test (convert/placement.py) on small synthetic data with a known placement.

The builder imitates PtychoPINN's own forward model: the patch rule of
``get_image_patches`` in PtychoPINN's ``ptycho/raw_data.py`` (object pixel
``(ycoords, xcoords)`` is patch index ``(N//2, N//2)``) and the far field of
``pad_and_diffract`` in ``ptycho/tf_helper.py`` (``sqrt(fftshift(|fft2(probe*patch)|^2))``,
amplitudes), with sub-pixel positions applied as exact Fourier shifts of a
band-limited periodic object (our own code; the full object is shifted, not a
window, so the module's windowed shift is checked against an exact reference).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ptychopinn_ptychodus.convert.placement import (
    CONSISTENT,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    applicable,
    assess_placement,
)
from ptychopinn_ptychodus.facts.geometry import PositionConvention

N = 32
SHAPE = (96, 96)


def band_limited_object(rng: np.random.Generator, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """Periodic complex object: smooth random amplitude in ~[0.6, 1] and phase in ~[-1, 1] rad."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    filt = np.exp(-2 * (np.pi * 1.5) ** 2 * (kx**2 + ky**2))

    def smooth() -> np.ndarray:
        field = np.fft.ifft2(np.fft.fft2(rng.standard_normal(shape)) * filt).real
        return field / np.abs(field).max()

    return (0.8 + 0.2 * smooth()) * np.exp(1j * smooth())


def disc_probe(n: int = N, radius: float = 5.0, defocus: float = 0.08) -> np.ndarray:
    """A defocused disc-pupil probe centred near index n//2."""
    k = np.arange(n) - n // 2
    kr2 = k[:, None] ** 2 + k[None, :] ** 2
    pupil = 0.5 * (1 - np.tanh((np.sqrt(kr2) - radius) / 1.5)) * np.exp(1j * defocus * kr2)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pupil)))


def ptychopinn_patches(obj: np.ndarray, x: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """``patch[r, c] = obj(y - n//2 + r, x - n//2 + c)``, sub-pixel by a full-object Fourier shift."""
    ky = np.fft.fftfreq(obj.shape[0])[:, None]
    kx = np.fft.fftfreq(obj.shape[1])[None, :]
    spectrum = np.fft.fft2(obj)
    out = np.empty((x.size, n, n), dtype=complex)
    for m, (xm, ym) in enumerate(zip(x, y, strict=True)):
        ix, iy = int(np.floor(xm)), int(np.floor(ym))
        shifted = np.fft.ifft2(spectrum * np.exp(2j * np.pi * (ky * (ym - iy) + kx * (xm - ix))))
        out[m] = shifted[iy - n // 2 : iy - n // 2 + n, ix - n // 2 : ix - n // 2 + n]
    return out


def simulate(*, photons: float = 1e5, seed: int = 3, probe: np.ndarray | None = None) -> dict[str, Any]:
    """A 7x7 jittered raster, PtychoPINN convention, Poisson amplitudes ``sqrt(counts)``."""
    rng = np.random.default_rng(seed)
    obj = band_limited_object(rng)
    probe = disc_probe() if probe is None else probe
    nominal = 30.0 + 6.0 * np.arange(7)
    yy, xx = np.meshgrid(nominal, nominal, indexing='ij')
    x = xx.ravel() + rng.uniform(-1, 1, xx.size)
    y = yy.ravel() + rng.uniform(-1, 1, yy.size)
    far = np.fft.fft2(probe[None] * ptychopinn_patches(obj, x, y, N))
    expected = np.fft.fftshift(np.abs(far) ** 2, axes=(-2, -1))
    scale = photons / expected.sum(axis=(1, 2)).mean()
    amplitudes = np.sqrt(rng.poisson(expected * scale)).astype(np.float32)
    return {'amplitudes': amplitudes, 'probe': probe, 'obj': obj, 'x': x, 'y': y}


@pytest.fixture(scope='module')
def data() -> dict[str, Any]:
    return simulate()


def run(d: dict[str, Any], **kwargs: Any) -> Any:
    return assess_placement(d['amplitudes'], d['probe'], d['obj'], d['x'], d['y'], **kwargs)


def test_ptychopinn_truth_is_detected(data: dict[str, Any]) -> None:
    verdict = run(data)
    print(verdict.sentence, verdict.notes)
    assert verdict.status == CONSISTENT
    assert verdict.best == 'ptychopinn'
    assert not verdict.disagrees_with_recorded  # nothing recorded: the default is ptychopinn
    assert verdict.errors['identity'] > 1.3 * verdict.errors['ptychopinn']
    assert verdict.best_offset_px == pytest.approx((0.5, 0.5), abs=0.1)
    assert verdict.sentence.startswith('consistent with the ptychopinn convention (error ')
    assert verdict.patterns_used == data['x'].size


def test_the_error_is_at_the_photon_noise_floor(data: dict[str, Any]) -> None:
    """With the true probe and object the only misfit is Poisson noise (plus a small window error)."""
    verdict = run(data)
    floor = 0.5 * np.sqrt(np.count_nonzero(data['amplitudes'])) / np.linalg.norm(data['amplitudes'])
    assert floor < verdict.errors['ptychopinn'] < 1.5 * floor
    noiseless = simulate(photons=1e12)
    assert run(noiseless).errors['ptychopinn'] < 5e-3  # the windowed Fourier shift is nearly exact


def test_identity_positions_are_detected_and_flagged(data: dict[str, Any]) -> None:
    """The same patterns with Ptychodus pixels as coordinates (what Ptychodus's export writes)."""
    moved = {**data, 'x': data['x'] - 0.5, 'y': data['y'] - 0.5}
    verdict = run(moved)
    assert verdict.status == CONSISTENT and verdict.best == 'identity'
    assert verdict.best_offset_px == pytest.approx((0.0, 0.0), abs=0.1)
    assert verdict.disagrees_with_recorded
    assert 'disagrees with the default ptychopinn (nothing recorded)' in verdict.sentence
    recorded = run(moved, recorded=PositionConvention.IDENTITY)
    assert recorded.best == 'identity' and not recorded.disagrees_with_recorded
    wrong = run(data, recorded='identity')
    assert wrong.best == 'ptychopinn' and wrong.disagrees_with_recorded
    assert 'disagrees with the file records identity' in wrong.sentence


def fourier_shift(image: np.ndarray, d: float) -> np.ndarray:
    """``out(r, c) = image(r - d, c - d)``: the content moves +d px on both axes (periodic)."""
    ky = np.fft.fftfreq(image.shape[0])[:, None]
    kx = np.fft.fftfreq(image.shape[1])[None, :]
    return np.fft.ifft2(np.fft.fft2(image) * np.exp(-2j * np.pi * d * (ky + kx)))


def test_a_joint_probe_and_object_shift_changes_nothing(data: dict[str, Any]) -> None:
    """A reconstruction is defined up to moving probe and object together: the verdict is not."""
    both = {**data, 'probe': fourier_shift(data['probe'], 0.3), 'obj': fourier_shift(data['obj'], 0.3)}
    verdict, truth = run(both), run(data)
    assert verdict.status == CONSISTENT and verdict.best == 'ptychopinn', verdict.sentence
    assert verdict.errors == pytest.approx(truth.errors, rel=0.02)
    assert verdict.best_offset_px == pytest.approx((0.5, 0.5), abs=0.1)


def test_a_probe_shift_trades_against_a_position_shift(data: dict[str, Any]) -> None:
    """The probe alone moved by d explains the same patterns at positions moved by -d.

    So the test cannot tell the experiment's placement, only which one makes this
    probe and object explain these patterns: a quarter pixel lands between the
    conventions (inconclusive), half a pixel turns the ptychopinn truth into identity.
    """
    truth = run(data)
    quarter = run({**data, 'probe': fourier_shift(data['probe'], -0.25)})
    assert quarter.status == INCONCLUSIVE, quarter.sentence
    assert quarter.best is None and not quarter.disagrees_with_recorded
    assert quarter.best_offset_px == pytest.approx((0.25, 0.25), abs=0.1)
    assert 'away from the' in quarter.sentence
    half = run({**data, 'probe': fourier_shift(data['probe'], -0.5)})
    assert half.status == CONSISTENT and half.best == 'identity', half.sentence
    assert half.errors['identity'] == pytest.approx(truth.errors['ptychopinn'], rel=0.05)
    assert half.disagrees_with_recorded


def test_unrelated_patterns_are_inconclusive(data: dict[str, Any]) -> None:
    rng = np.random.default_rng(5)
    noise = {
        **data,
        'amplitudes': rng.permutation(data['amplitudes'].ravel()).reshape(data['amplitudes'].shape),
    }
    verdict = run(noise)
    print(verdict.sentence)
    assert verdict.status == INCONCLUSIVE and verdict.best is None
    assert verdict.sentence.startswith('placement inconclusive: ')


def test_patterns_of_other_positions_are_inconclusive(data: dict[str, Any]) -> None:
    """Right patterns, wrong pairing: the shuffled-positions baseline catches it."""
    reversed_ = {**data, 'amplitudes': data['amplitudes'][::-1].copy()}
    verdict = run(reversed_)
    assert verdict.status == INCONCLUSIVE, verdict.sentence


@pytest.mark.parametrize(
    ('change', 'reason'),
    [
        ({'obj': np.ones(SHAPE, complex)}, 'the object is a placeholder (constant 1+0j)'),
        ({'obj': np.full(SHAPE, 0.5 + 0.5j)}, 'the object is a placeholder'),
        ({'probe': np.ones((N, N), complex)}, 'the probe is a placeholder'),
        ({'amplitudes': None}, 'no diffraction stack'),
        ({'amplitudes': np.zeros((0, N, N), np.float32)}, 'the diffraction stack is empty'),
        ({'probe': np.ones((N + 2, N + 2), complex)}, 'the probe is 34x34 but the patterns are 32x32'),
        ({'obj': np.ones((20, 20), complex) * np.arange(20)}, 'smaller than the probe'),
        ({'x': np.full(49, 2.0)}, 'no position has its probe window inside the object'),
        ({'x': np.zeros(3)}, '3 x and 49 y coordinates for 49 patterns'),
    ],
)
def test_not_applicable(data: dict[str, Any], change: dict[str, Any], reason: str) -> None:
    d = {**data, **change}
    assert reason in (applicable(d['amplitudes'], d['probe'], d['obj'], d['x'], d['y']) or '')
    verdict = run(d)
    assert verdict.status == NOT_APPLICABLE and verdict.best is None and verdict.errors == {}
    assert (
        verdict.sentence
        == f'placement test not applicable: {applicable(d["amplitudes"], d["probe"], d["obj"], d["x"], d["y"])}'
    )


def test_odd_patches_cannot_tell_the_conventions_apart(data: dict[str, Any]) -> None:
    reason = applicable(
        data['amplitudes'][:, :31, :31], data['probe'][:31, :31], data['obj'], data['x'], data['y']
    )
    assert reason == 'for a 31x31 (odd) patch every convention places the probe alike'


def test_applicable_on_good_data(data: dict[str, Any]) -> None:
    assert applicable(data['amplitudes'], data['probe'], data['obj'], data['x'], data['y']) is None


def test_subsampling_and_bad_pixels(data: dict[str, Any]) -> None:
    amplitudes = data['amplitudes'].copy()
    amplitudes[:, 3, 5] = np.nan  # a dead pixel: left out, not a verdict changer
    amplitudes[:, 7, 9] = -1.0
    verdict = assess_placement(
        amplitudes, data['probe'], data['obj'], data['x'], data['y'], max_patterns=30, grid=False
    )
    assert verdict.status == CONSISTENT and verdict.best == 'ptychopinn'
    assert verdict.patterns_used == 30 and verdict.best_offset_px is None and verdict.grid_errors == {}
    assert '30 of 49 positions modelled' in verdict.notes
