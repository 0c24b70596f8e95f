"""Every NPZ flavour found in the wild converts into a product Ptychodus reads correctly.

Positions are expected under the default "ptychopinn" convention: Ptychodus object
pixel = ``xcoords - (N // 2 - (N - 1) / 2)`` for an N-pixel probe
(``helpers.ptychopinn_pixels``), half a pixel less for the 16 px sample probe.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import product_pixels, ptychopinn_pixels, to_nhw
from ptychodus.api.io import load_diffraction_data, load_product

from ptychopinn_ptychodus import export_product


def _raw_diffraction(product: Path) -> tuple[np.ndarray, dict]:
    with h5py.File(product, 'r') as h5:
        dset = h5['raw_data/diffraction']
        return dset[()], dict(dset.attrs)


@pytest.mark.parametrize('key', ['diffraction', 'diff3d'])
@pytest.mark.parametrize('layout', ['NHW', 'HWN', 'NHW1'])
@pytest.mark.parametrize('compress', [False, True], ids=['stored', 'deflated'])
def test_float_amplitudes_in_every_key_layout_and_storage(sample_npz, tmp_path, key, layout, compress):
    npz, arrays = sample_npz(key=key, layout=layout, compress=compress)
    out = tmp_path / 'out.h5'

    export_product(npz, out)

    stack, attrs = _raw_diffraction(out)
    expected = to_nhw(arrays[key], layout)
    assert stack.shape == expected.shape
    np.testing.assert_array_equal(stack, expected)  # amplitudes are bundled as they are
    assert attrs['axis_canonical'] == 'NHW'
    assert attrs['original_axis_order'] == layout
    assert attrs['source_domain'] == 'amplitude'
    x_px, y_px = product_pixels(out)
    expected_x, expected_y = ptychopinn_pixels(arrays)
    np.testing.assert_allclose(x_px, expected_x, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, atol=1e-6)


@pytest.mark.parametrize('layout', ['NHW', 'HWN', 'NHW1'])
def test_uint16_counts_are_intensities(sample_npz, tmp_path, layout):
    npz, arrays = sample_npz(key='diff3d', layout=layout, counts=True)
    counts = to_nhw(arrays['diff3d'], layout)
    assert counts.dtype == np.uint16

    export_product(npz, tmp_path / 'out.h5')

    stack, attrs = _raw_diffraction(tmp_path / 'out.h5')
    assert attrs['source_domain'] == 'intensity'
    # the bundle keeps the stack as given: photon counts stay uint16 counts (exact, compact)
    assert attrs['measurement_domain'] == 'intensity'
    assert 'integer' in attrs['domain_reason']
    assert stack.dtype == np.uint16
    np.testing.assert_array_equal(stack, counts)


def test_float_diff3d_holding_integral_counts_is_intensity(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz(key='diff3d', counts=True)
    arrays['diff3d'] = arrays['diff3d'].astype(np.float32)
    npz = npz_from_arrays('float_counts.npz', **arrays)

    export_product(npz, tmp_path / 'out.h5')

    stack, attrs = _raw_diffraction(tmp_path / 'out.h5')
    assert attrs['source_domain'] == attrs['measurement_domain'] == 'intensity'
    np.testing.assert_array_equal(stack, arrays['diff3d'])  # stored as given


def test_float_diff3d_amplitudes_stay_amplitudes(sample_npz, tmp_path):
    npz, arrays = sample_npz(key='diff3d')
    export_product(npz, tmp_path / 'out.h5')
    stack, attrs = _raw_diffraction(tmp_path / 'out.h5')
    assert attrs['source_domain'] == 'amplitude'
    np.testing.assert_array_equal(stack, arrays['diff3d'])


def test_explicit_domain_wins_over_integral_values(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz(key='diff3d', counts=True)
    arrays['diff3d'] = arrays['diff3d'].astype(np.float32)
    npz = npz_from_arrays('float_counts.npz', **arrays)

    export_product(npz, tmp_path / 'out.h5', domain='amplitude')

    stack, attrs = _raw_diffraction(tmp_path / 'out.h5')
    assert attrs['source_domain'] == 'amplitude'
    assert 'explicit' in attrs['domain_reason']
    np.testing.assert_array_equal(stack, arrays['diff3d'])


def test_explicit_domain_wins_over_diffraction_key_convention(sample_npz, tmp_path):
    npz, arrays = sample_npz(key='diffraction')

    export_product(npz, tmp_path / 'out.h5', domain='intensity')

    stack, attrs = _raw_diffraction(tmp_path / 'out.h5')
    assert attrs['source_domain'] == attrs['measurement_domain'] == 'intensity'
    np.testing.assert_array_equal(stack, arrays['diffraction'])  # stored as given, now called intensity


def test_explicit_domain_wins_over_file_metadata(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz(key='diff3d')
    meta = np.array('{"measurement_domain": "count_intensity"}', dtype=object)
    npz = npz_from_arrays('meta.npz', _metadata=meta, **arrays)

    export_product(npz, tmp_path / 'from_meta.h5')
    export_product(npz, tmp_path / 'explicit.h5', domain='amplitude')

    assert _raw_diffraction(tmp_path / 'from_meta.h5')[1]['source_domain'] == 'intensity'
    assert _raw_diffraction(tmp_path / 'explicit.h5')[1]['source_domain'] == 'amplitude'


def test_probe_2d(sample_npz, tmp_path):
    npz, arrays = sample_npz()
    export_product(npz, tmp_path / 'out.h5')
    probe = load_product(tmp_path / 'out.h5').probes.get_array()
    assert probe.shape[-2:] == arrays['probeGuess'].shape
    np.testing.assert_array_equal(probe.reshape(arrays['probeGuess'].shape), arrays['probeGuess'])


def test_probe_modes(sample_npz, tmp_path):
    npz, arrays = sample_npz(probe_modes=2)
    assert arrays['probeGuess'].shape == (2, 16, 16)

    export_product(npz, tmp_path / 'out.h5')

    probe = load_product(tmp_path / 'out.h5').probes.get_array()
    assert probe.shape == (1, 2, 16, 16)  # Ptychodus's [C, I, N, N]
    np.testing.assert_array_equal(probe[0], arrays['probeGuess'])


def test_probe_modes_hand_built(sample_npz, npz_from_arrays, tmp_path):
    """The converter side of modal probes, independent of the simulator."""
    _, arrays = sample_npz()
    probe = arrays['probeGuess']
    modes = np.stack([probe, 0.5 * probe * np.exp(0.3j)]).astype(np.complex64)
    arrays['probeGuess'] = modes
    npz = npz_from_arrays('modes.npz', **arrays)

    export_product(npz, tmp_path / 'out.h5')

    loaded = load_product(tmp_path / 'out.h5').probes.get_array()
    assert loaded.shape == (1, 2, 16, 16)
    np.testing.assert_array_equal(loaded[0], modes)


def test_probe_channels_last_single_mode(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz()
    probe = arrays['probeGuess']
    arrays['probeGuess'] = probe[:, :, None]  # (N, N, 1)
    npz = npz_from_arrays('nn1.npz', **arrays)

    export_product(npz, tmp_path / 'out.h5')

    loaded = load_product(tmp_path / 'out.h5').probes.get_array()
    assert loaded.shape == (1, 1, 16, 16)
    np.testing.assert_array_equal(loaded[0, 0], probe)


@pytest.mark.parametrize('dtype', [np.complex64, np.complex128])
def test_complex_precision_is_kept(sample_npz, npz_from_arrays, tmp_path, dtype):
    _, arrays = sample_npz()
    arrays['probeGuess'] = arrays['probeGuess'].astype(dtype)
    arrays['objectGuess'] = arrays['objectGuess'].astype(dtype)
    npz = npz_from_arrays('c.npz', **arrays)

    export_product(npz, tmp_path / 'out.h5')

    product = load_product(tmp_path / 'out.h5')
    assert product.probes.get_array().dtype == dtype
    assert product.object_.get_array().dtype == dtype
    np.testing.assert_array_equal(product.object_.get_array().reshape(arrays['objectGuess'].shape),
                                  arrays['objectGuess'])


def test_actual_positions_by_default_nominal_on_request(sample_npz, tmp_path):
    npz, arrays = sample_npz()
    assert not np.allclose(arrays['xcoords'], arrays['xcoords_start'])

    export_product(npz, tmp_path / 'actual.h5')
    export_product(npz, tmp_path / 'nominal.h5', positions='nominal')

    x_px, y_px = product_pixels(tmp_path / 'actual.h5')
    expected_x, expected_y = ptychopinn_pixels(arrays)
    np.testing.assert_allclose(x_px, expected_x, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, atol=1e-6)
    x_px, y_px = product_pixels(tmp_path / 'nominal.h5')
    expected_x, expected_y = ptychopinn_pixels(arrays, nominal=True)
    np.testing.assert_allclose(x_px, expected_x, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, atol=1e-6)


def test_scan_index_kept_in_raw_data_but_not_used_as_position_indexes(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz()
    num = arrays['xcoords'].size
    arrays['scan_index'] = np.full(num, 3, dtype=np.int64)
    arrays['scan_index'][::2] = 7
    npz = npz_from_arrays('scan_index.npz', **arrays)

    export_product(npz, tmp_path / 'out.h5')

    with h5py.File(tmp_path / 'out.h5', 'r') as h5:
        np.testing.assert_array_equal(h5['raw_data/scan_index'][()], arrays['scan_index'])
        np.testing.assert_array_equal(h5['probe_position_indexes'][()], np.arange(num))
    indexes = load_product(tmp_path / 'out.h5').probe_positions.get_indexes()
    np.testing.assert_array_equal(indexes, np.arange(num))


def test_bad_pixels_carried(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz()
    bad = np.zeros((16, 16), dtype=bool)
    bad[3, 4] = bad[10, 0] = True
    npz = npz_from_arrays('bad.npz', bad_pixels=bad, **arrays)

    export_product(npz, tmp_path / 'out.h5')

    with h5py.File(tmp_path / 'out.h5', 'r') as h5:
        np.testing.assert_array_equal(h5['raw_data/bad_pixels'][()], bad)


@pytest.mark.parametrize('compress', [False, True], ids=['stored', 'deflated'])
@pytest.mark.parametrize('layout', ['NHW', 'HWN'])
def test_fortran_ordered_stack(sample_npz, npz_from_arrays, tmp_path, compress, layout):
    """numpy.savez keeps Fortran order (e.g. a stack built with order='F'); values must not be scrambled."""
    _, arrays = sample_npz(layout=layout)
    arrays['diffraction'] = np.asfortranarray(arrays['diffraction'])
    npz = npz_from_arrays('fortran.npz', compress=compress, **arrays)
    out, diffraction = tmp_path / 'out.h5', tmp_path / 'd.h5'

    export_product(npz, out, diffraction_output=diffraction)

    stack, attrs = _raw_diffraction(out)
    np.testing.assert_array_equal(stack, to_nhw(arrays['diffraction'], layout))
    patterns = load_diffraction_data(diffraction).get_patterns()
    np.testing.assert_allclose(patterns, to_nhw(arrays['diffraction'], layout).astype(np.float64) ** 2, rtol=1e-6)
