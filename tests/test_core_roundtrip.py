"""NPZ -> product -> NPZ gives back every array, bit for bit (diffraction in canonical NHW)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import minimal_arrays, our_npz_keys, product_pixels, ptychopinn_pixels, to_nhw

from ptychopinn_ptychodus import ExportMeta, export_product, import_product

GEOMETRY = ExportMeta(object_pixel_width_m=4e-8, object_pixel_height_m=6e-8,
                      object_center_x_m=1.3e-6, object_center_y_m=-0.7e-6)


def _assert_identical(original: dict[str, np.ndarray], restored_path, layout: str = 'NHW') -> None:
    # plain numpy, no pickle: what PtychoPINN itself would do
    with np.load(restored_path, allow_pickle=False) as restored:
        for key, value in original.items():
            assert key in restored.files, f'{key} missing after the round trip'
            expected = to_nhw(value, layout) if key in ('diffraction', 'diff3d') else value
            got = restored[key]
            assert got.dtype == expected.dtype, f'{key}: dtype {got.dtype} != {expected.dtype}'
            assert got.shape == expected.shape, f'{key}: shape {got.shape} != {expected.shape}'
            assert np.array_equal(got, expected), f'{key}: values differ'


FLAVOURS = [
    pytest.param({'key': 'diffraction', 'layout': 'NHW'}, id='diffraction-NHW-amplitude'),
    pytest.param({'key': 'diffraction', 'layout': 'HWN'}, id='diffraction-HWN-amplitude'),
    pytest.param({'key': 'diffraction', 'layout': 'NHW1', 'compress': True}, id='diffraction-NHW1-deflated'),
    pytest.param({'key': 'diff3d', 'layout': 'NHW'}, id='diff3d-NHW-amplitude'),
    pytest.param({'key': 'diff3d', 'layout': 'NHW', 'counts': True}, id='diff3d-NHW-uint16'),
    pytest.param({'key': 'diff3d', 'layout': 'HWN', 'counts': True, 'compress': True},
                 id='diff3d-HWN-uint16-deflated'),
    pytest.param({'key': 'diff3d', 'layout': 'NHW1', 'counts': True}, id='diff3d-NHW1-uint16'),
]


@pytest.mark.parametrize('flavour', FLAVOURS)
def test_round_trip_is_exact(sample_npz, tmp_path, flavour):
    npz, arrays = sample_npz(**flavour)
    product, back = tmp_path / 'p.h5', tmp_path / 'back.npz'

    export_product(npz, product, GEOMETRY)
    import_product(product, back)

    _assert_identical(arrays, back, flavour['layout'])


def test_round_trip_float_counts(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz(key='diff3d', counts=True)
    arrays['diff3d'] = arrays['diff3d'].astype(np.float32)
    npz = npz_from_arrays('float_counts.npz', **arrays)

    export_product(npz, tmp_path / 'p.h5')
    import_product(tmp_path / 'p.h5', tmp_path / 'back.npz')

    _assert_identical(arrays, tmp_path / 'back.npz')
    assert our_npz_keys(tmp_path / 'back.npz')['diffraction_domain'] == 'intensity'


def test_round_trip_float64_amplitudes_and_complex128(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz()
    arrays['diffraction'] = arrays['diffraction'].astype(np.float64) * 1.0001
    arrays['probeGuess'] = arrays['probeGuess'].astype(np.complex128) * (1 + 1e-12j)
    arrays['objectGuess'] = arrays['objectGuess'].astype(np.complex128)
    npz = npz_from_arrays('f64.npz', **arrays)

    export_product(npz, tmp_path / 'p.h5', GEOMETRY)
    import_product(tmp_path / 'p.h5', tmp_path / 'back.npz')

    _assert_identical(arrays, tmp_path / 'back.npz')


def test_round_trip_channels_last_probe_scan_index_and_bad_pixels(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz(key='diff3d', counts=True)
    arrays['probeGuess'] = arrays['probeGuess'][:, :, None]
    arrays['scan_index'] = np.arange(arrays['xcoords'].size, dtype=np.int64) % 3 + 1
    arrays['bad_pixels'] = np.eye(16, dtype=bool)
    npz = npz_from_arrays('odd.npz', **arrays)

    export_product(npz, tmp_path / 'p.h5', GEOMETRY)
    import_product(tmp_path / 'p.h5', tmp_path / 'back.npz')

    _assert_identical(arrays, tmp_path / 'back.npz')


def test_round_trip_without_optional_keys(npz_from_arrays, tmp_path):
    arrays = minimal_arrays()
    npz = npz_from_arrays('minimal.npz', **arrays)

    export_product(npz, tmp_path / 'p.h5', GEOMETRY)
    import_product(tmp_path / 'p.h5', tmp_path / 'back.npz')

    _assert_identical(arrays, tmp_path / 'back.npz')


def test_round_trip_with_nominal_positions(sample_npz, tmp_path):
    npz, arrays = sample_npz()

    export_product(npz, tmp_path / 'p.h5', GEOMETRY, positions='nominal')
    import_product(tmp_path / 'p.h5', tmp_path / 'back.npz')

    _assert_identical(arrays, tmp_path / 'back.npz')


def test_round_trip_metadata_json(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz()
    meta = {'nphotons': 1e9, 'measurement_domain': 'amplitude'}
    npz = npz_from_arrays('meta.npz', _metadata=np.array(json.dumps(meta), dtype=object), **arrays)

    export_product(npz, tmp_path / 'p.h5')
    import_product(tmp_path / 'p.h5', tmp_path / 'back.npz')

    # Since 0.3 _metadata is written as PtychoPINN writes it (one pickled str) and carries our keys too.
    with np.load(tmp_path / 'back.npz', allow_pickle=True) as back:
        restored = json.loads(str(back['_metadata']))
    assert restored.pop('ptychopinn_ptychodus')['diffraction_domain'] == 'amplitude'
    assert restored == meta
    _assert_identical(arrays, tmp_path / 'back.npz')


@pytest.mark.parametrize('positions', ['actual', 'nominal'])
def test_product_without_raw_data_gives_positions_to_1e9_px(sample_npz, tmp_path, positions):
    npz, arrays = sample_npz()

    export_product(npz, tmp_path / 'p.h5', GEOMETRY, include_raw=False, positions=positions)
    import_product(tmp_path / 'p.h5', tmp_path / 'back.npz')

    suffix = '_start' if positions == 'nominal' else ''
    with np.load(tmp_path / 'back.npz', allow_pickle=False) as back:
        np.testing.assert_allclose(back['xcoords'], arrays['xcoords' + suffix], rtol=0, atol=1e-9)
        np.testing.assert_allclose(back['ycoords'], arrays['ycoords' + suffix], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(back['probeGuess'], arrays['probeGuess'])
        np.testing.assert_array_equal(back['objectGuess'], arrays['objectGuess'])
        assert 'diffraction' not in back.files


def test_reimported_npz_converts_again_identically(sample_npz, tmp_path):
    """NPZ -> product -> NPZ -> product: the geometry stored in the NPZ is reused."""
    npz, arrays = sample_npz(key='diff3d', counts=True)
    export_product(npz, tmp_path / 'p1.h5', GEOMETRY)
    import_product(tmp_path / 'p1.h5', tmp_path / 'back.npz')

    report = export_product(tmp_path / 'back.npz', tmp_path / 'p2.h5')

    assert 'object_pixel_width_m' not in report.defaulted
    x1, y1 = product_pixels(tmp_path / 'p1.h5')
    x2, y2 = product_pixels(tmp_path / 'p2.h5')
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(x2, ptychopinn_pixels(arrays)[0], atol=1e-6)  # default convention, both times
