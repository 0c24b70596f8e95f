"""Real files nobody on this project wrote (../shared/data): LCLS Run1084 and a tike Siemens star.

Both are PtychoPINN-convention files (no ``position_convention`` key): the Ptychodus
object pixel expected for a position is ``xcoords - (N // 2 - (N - 1) / 2)``
(``helpers.ptychopinn_pixels``), i.e. ``xcoords - 0.5`` for Run1084's 64 px probe.
"""

from __future__ import annotations

import bz2
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import product_pixels, ptychopinn_pixels
from ptychodus.api.io import load_diffraction_data, load_product

from ptychopinn_ptychodus import ExportMeta, export_product, import_product

RUN1084 = 'run1084_recon3_postPC.npz'
TIKE = 'tike_siemens-star-small.npz.bz2'
PIXEL = 5e-8


def _on_scanned_part(obj: np.ndarray, x_px: np.ndarray, y_px: np.ndarray) -> np.ndarray:
    """Per position: does its nearest object pixel lie inside the array and differ from 1.0?"""
    cols, rows = np.rint(x_px).astype(np.int64), np.rint(y_px).astype(np.int64)
    inside = (cols >= 0) & (cols < obj.shape[1]) & (rows >= 0) & (rows < obj.shape[0])
    hits = np.zeros(x_px.shape, dtype=bool)
    hits[inside] = obj[rows[inside], cols[inside]] != 1
    return hits


@pytest.fixture(scope='module')
def run1084(shared_data) -> tuple[Path, dict[str, np.ndarray]]:
    path = shared_data / RUN1084
    if not path.exists():
        pytest.fail(f'{path} is missing from ../shared/data')
    with np.load(path, allow_pickle=False) as npz:
        return path, {key: npz[key] for key in npz.files}


@pytest.fixture
def run1084_product(run1084, tmp_path) -> Path:
    path, _ = run1084
    out = tmp_path / 'run1084.h5'
    export_product(path, out, ExportMeta(object_pixel_width_m=PIXEL, object_pixel_height_m=PIXEL))
    return out


def test_run1084_every_position_lands_on_the_scanned_object(run1084, run1084_product):
    _, arrays = run1084
    obj = arrays['objectGuess']
    assert (obj == 1).any() and (obj != 1).any()  # the premise: a scanned part and a 1.0 margin

    product = load_product(run1084_product)
    x_px, y_px = product_pixels(product)

    assert len(x_px) == arrays['xcoords'].size == 1087
    expected_x, expected_y = ptychopinn_pixels(arrays)  # xcoords - 0.5 (64 px probe)
    np.testing.assert_allclose(x_px, expected_x, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, atol=1e-6)
    np.testing.assert_array_equal(product.object_.get_array().reshape(obj.shape), obj)
    hits = _on_scanned_part(obj, x_px, y_px)
    assert hits.all(), f'{(~hits).sum()} of {hits.size} positions fall outside the scanned part'


def test_run1084_naive_metres_mapping_misses_the_object(run1084, run1084_product, tmp_path):
    """Contrast: PtychoPINN's scaffold exporter writes x_m = xcoords * pixel with centre 0."""
    _, arrays = run1084
    naive = tmp_path / 'naive.h5'
    shutil.copyfile(run1084_product, naive)
    with h5py.File(naive, 'r+') as h5:
        h5['probe_position_x_m'][...] = arrays['xcoords'] * PIXEL
        h5['probe_position_y_m'][...] = arrays['ycoords'] * PIXEL
        h5['object'].attrs['center_x_m'] = 0.0
        h5['object'].attrs['center_y_m'] = 0.0

    x_px, y_px = product_pixels(naive)

    share = _on_scanned_part(arrays['objectGuess'], x_px, y_px).mean()
    assert share < 0.5, f'naive mapping unexpectedly put {share:.0%} on the scanned part'


def test_run1084_round_trip_is_exact(run1084, run1084_product, tmp_path):
    _, arrays = run1084
    back = tmp_path / 'back.npz'

    import_product(run1084_product, back)

    with np.load(back, allow_pickle=False) as restored:
        for key, value in arrays.items():
            assert restored[key].dtype == value.dtype, key
            assert np.array_equal(restored[key], value), key
        assert 'diffraction' not in restored.files and 'diff3d' not in restored.files


def test_run1084_nominal_positions(run1084, tmp_path):
    path, arrays = run1084
    out = tmp_path / 'nominal.h5'

    export_product(path, out, ExportMeta(object_pixel_width_m=PIXEL, object_pixel_height_m=PIXEL),
                   positions='nominal')

    x_px, y_px = product_pixels(out)
    expected_x, expected_y = ptychopinn_pixels(arrays, nominal=True)
    np.testing.assert_allclose(x_px, expected_x, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, atol=1e-6)


# -- tike Siemens star: real measured diffraction -------------------------------------------


@pytest.fixture(scope='module')
def tike_npz(shared_data, tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """A PtychoPINN NPZ built from tike's real Siemens-star scan."""
    source = shared_data / TIKE
    if not source.exists():
        pytest.fail(f'{source} is missing from ../shared/data')
    folder = tmp_path_factory.mktemp('tike')
    unpacked = folder / 'tike.npz'
    with bz2.open(source, 'rb') as packed, open(unpacked, 'wb') as out:
        shutil.copyfileobj(packed, out)
    with np.load(unpacked, allow_pickle=False) as tike:
        data, probe, scan = tike['data'], tike['probe'], tike['scan']
    assert data.shape[:2] == (1, 516) and data.dtype == np.float32
    n = data.shape[-1]
    rows, cols = scan[0, :, 0].astype(np.float64), scan[0, :, 1].astype(np.float64)
    # scan gives the probe window's corner; a PtychoPINN position is the object pixel at patch
    # index n // 2 (= n / 2 for tike's even n), so Ptychodus should centre the probe on
    # corner + (n - 1) / 2 = xcoords - 0.5
    xcoords = cols - cols.min() + n / 2
    ycoords = rows - rows.min() + n / 2
    height = int(np.ceil(ycoords.max() + n / 2)) + 1
    width = int(np.ceil(xcoords.max() + n / 2)) + 1
    arrays = {
        'diff3d': np.ascontiguousarray(data[0], dtype=np.float32),
        'probeGuess': probe[0, 0, 0, 0],
        'objectGuess': np.ones((height, width), dtype=np.complex64),
        'xcoords': xcoords,
        'ycoords': ycoords,
    }
    path = folder / 'tike_ptychopinn.npz'
    np.savez(path, **arrays)
    unpacked.unlink()
    return path, arrays


def test_tike_converts_and_ptychodus_reads_it(tike_npz, tmp_path):
    path, arrays = tike_npz
    product, diffraction = tmp_path / 'tike.h5', tmp_path / 'tike.diffraction.h5'

    meta = ExportMeta(object_pixel_width_m=PIXEL, object_pixel_height_m=PIXEL)
    report = export_product(path, product, meta, diffraction_output=diffraction)

    assert 'intensity' in report.diffraction
    x_px, y_px = product_pixels(product)
    expected_x, expected_y = ptychopinn_pixels(arrays)
    np.testing.assert_allclose(x_px, expected_x, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, atol=1e-6)
    data = load_diffraction_data(diffraction)
    patterns = data.get_patterns()
    assert patterns.dtype == np.float32
    assert np.array_equal(patterns, arrays['diff3d'])  # measured counts, exactly
    np.testing.assert_array_equal(data.get_indexes(), np.arange(516))
    np.testing.assert_array_equal(load_product(product).probe_positions.get_indexes(), np.arange(516))
    with h5py.File(product, 'r') as h5:
        assert h5['raw_data/diffraction'].attrs['source_domain'] == 'intensity'
