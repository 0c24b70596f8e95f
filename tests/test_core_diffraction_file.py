"""Ptychodus's assembled-diffraction HDF5, read back with ``ptychodus.api.io.load_diffraction_data``."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from helpers import to_nhw
from ptychodus.api.io import load_diffraction_data, load_product

from ptychopinn_ptychodus import ExportMeta, export_product


@pytest.mark.parametrize('layout', ['NHW', 'HWN', 'NHW1'])
def test_amplitudes_become_intensities(sample_npz, tmp_path, layout):
    npz, arrays = sample_npz(layout=layout)
    amplitude = to_nhw(arrays['diffraction'], layout)
    out = tmp_path / 'diffraction.h5'

    export_product(npz, None, diffraction_output=out)

    data = load_diffraction_data(out)
    patterns = data.get_patterns()
    assert patterns.shape == amplitude.shape
    np.testing.assert_allclose(patterns, amplitude.astype(np.float64) ** 2, rtol=1e-6)
    np.testing.assert_array_equal(data.get_indexes(), np.arange(amplitude.shape[0]))
    assert data.get_bad_pixels().shape == amplitude.shape[1:]
    assert not data.get_bad_pixels().any()


@pytest.mark.parametrize('layout', ['NHW', 'HWN'])
def test_integer_counts_kept_exactly(sample_npz, tmp_path, layout):
    npz, arrays = sample_npz(key='diff3d', counts=True, layout=layout)
    counts = to_nhw(arrays['diff3d'], layout)
    out = tmp_path / 'diffraction.h5'

    export_product(npz, None, diffraction_output=out)

    patterns = load_diffraction_data(out).get_patterns()
    assert patterns.dtype == np.uint16
    np.testing.assert_array_equal(patterns, counts)


def test_float_counts_kept_exactly(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz(key='diff3d', counts=True)
    arrays['diff3d'] = arrays['diff3d'].astype(np.float32)
    npz = npz_from_arrays('float_counts.npz', compress=True, **arrays)
    out = tmp_path / 'diffraction.h5'

    export_product(npz, None, diffraction_output=out)

    patterns = load_diffraction_data(out).get_patterns()
    assert patterns.dtype == np.float32
    np.testing.assert_array_equal(patterns, arrays['diff3d'])


def test_bad_pixels_written(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz()
    bad = np.zeros((16, 16), dtype=bool)
    bad[0, :3] = True
    npz = npz_from_arrays('bad.npz', bad_pixels=bad, **arrays)
    out = tmp_path / 'diffraction.h5'

    export_product(npz, None, diffraction_output=out)

    np.testing.assert_array_equal(load_diffraction_data(out).get_bad_pixels(), bad)


def test_product_and_diffraction_together_share_indexes(sample_npz, tmp_path):
    npz, arrays = sample_npz(key='diff3d', counts=True)
    product, diffraction = tmp_path / 'p.h5', tmp_path / 'd.h5'

    export_product(npz, product, diffraction_output=diffraction)

    data = load_diffraction_data(diffraction)
    positions = load_product(product).probe_positions
    np.testing.assert_array_equal(positions.get_indexes(), data.get_indexes())


def test_detector_pixel_size_given_or_defaulted(sample_npz, tmp_path):
    npz, _ = sample_npz()
    given, defaulted = tmp_path / 'given.h5', tmp_path / 'defaulted.h5'

    export_product(npz, None, ExportMeta(detector_pixel_width_m=55e-6, detector_pixel_height_m=65e-6),
                   diffraction_output=given)
    report = export_product(npz, None, diffraction_output=defaulted)

    pixel = load_diffraction_data(given).get_pixel_geometry()
    assert (pixel.width_m, pixel.height_m) == (55e-6, 65e-6)
    pixel = load_diffraction_data(defaulted).get_pixel_geometry()
    assert pixel.width_m > 0 and pixel.height_m > 0
    assert 'detector_pixel_width_m' in report.defaulted
    with h5py.File(defaulted, 'r') as h5:
        assert h5['patterns'].attrs['measurement_domain'] == 'intensity'


@pytest.mark.parametrize('compression', ['gzip', 'lzf', 'none'])
def test_multi_chunk_stacks_read_back_exactly(sample_npz, tmp_path, compression):
    """576 patterns: more than one row of HDF5 chunks (at most 512 patterns deep) and a partial last one."""
    npz, arrays = sample_npz(key='diff3d', counts=True, pattern_px=16, scan_side=24)
    counts = arrays['diff3d']
    product, diffraction = tmp_path / 'p.h5', tmp_path / 'd.h5'

    export_product(npz, product, diffraction_output=diffraction, compression=compression)

    np.testing.assert_array_equal(load_diffraction_data(diffraction).get_patterns(), counts)
    with h5py.File(product, 'r') as h5:
        stack = h5['raw_data/diffraction']
        if compression != 'none':
            assert stack.compression == compression
            assert stack.chunks is not None and stack.chunks[0] < counts.shape[0]
        np.testing.assert_array_equal(stack[()], counts)  # the bundle keeps counts as given


def test_uneven_blocks_into_gzip_chunks(tmp_path):
    """write_pattern_stack with blocks that straddle chunk boundaries (direct-chunk gzip path)."""
    from ptychopinn_ptychodus.product.chunks import write_pattern_stack

    rng = np.random.default_rng(3)
    stack = rng.random((600, 20, 20)).astype(np.float32)  # chunks 512 deep, 16x16 tiles with ragged edges
    bounds = [0, 3, 100, 511, 514, 599, 600]
    blocks = [(a, stack[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    seen = []
    with h5py.File(tmp_path / 's.h5', 'w') as h5:
        dset = write_pattern_stack(h5, 'patterns', stack.shape, stack.dtype, iter(blocks),
                                   compression='gzip', level=4, progress=seen.append)
        assert dset.chunks[0] < stack.shape[0]
    assert sum(seen) == 600
    with h5py.File(tmp_path / 's.h5', 'r') as h5:
        assert h5['patterns'].compression == 'gzip' and h5['patterns'].shuffle
        np.testing.assert_array_equal(h5['patterns'][()], stack)


def test_tile_size_follows_the_data_not_the_dtype(tmp_path):
    """Smooth patterns deflate smaller in 16 x 16 pixel tiles, Poisson speckle in 8 x 8 (both float32)."""
    from ptychopinn_ptychodus.product.chunks import choose_tile, write_pattern_stack

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:64, :64] - 31.5
    envelope = np.exp(-(xx**2 + yy**2) / 400.0)
    smooth = np.stack([np.roll(envelope, (k % 5, k % 3), (0, 1)) * rng.uniform(0.5, 1.5)
                       for k in range(256)]).astype(np.float32)
    smooth = np.round(smooth * 4096) / 4096
    speckle = np.sqrt(rng.poisson(200.0 * envelope, size=(256, 64, 64))).astype(np.float32)
    assert choose_tile(smooth, 4) == 16
    assert choose_tile(speckle, 4) == 8
    with h5py.File(tmp_path / 's.h5', 'w') as h5:
        for name, stack in (('smooth', smooth), ('speckle', speckle)):
            dset = write_pattern_stack(h5, name, stack.shape, stack.dtype, iter([(0, stack)]),
                                       compression='gzip', level=4)
            assert dset.chunks[1:] == ((16, 16) if name == 'smooth' else (8, 8))
            np.testing.assert_array_equal(dset[()], stack)


def test_bundles_of_version_0_1_with_counts_as_amplitudes_still_read_exactly(sample_npz, tmp_path):
    """0.1.0 stored photon counts as float32 square roots (measurement_domain='amplitude',
    source_domain='intensity'): the reverse direction and the .h5 plugin reader round them back."""
    from ptychopinn_ptychodus import import_product

    npz, arrays = sample_npz(key='diff3d', counts=True)
    counts = arrays['diff3d']
    product = tmp_path / 'old.h5'
    export_product(npz, product)
    with h5py.File(product, 'r+') as h5:  # rewrite the bundle the way 0.1.0 wrote it
        attrs = dict(h5['raw_data/diffraction'].attrs)
        del h5['raw_data/diffraction']
        dset = h5['raw_data'].create_dataset('diffraction', data=np.sqrt(counts.astype(np.float32)))
        dset.attrs.update({**attrs, 'measurement_domain': 'amplitude'})
    back = tmp_path / 'back.npz'
    import_product(product, back)
    with np.load(back) as again:
        assert again['diff3d'].dtype == np.uint16
        np.testing.assert_array_equal(again['diff3d'], counts)
    from ptychopinn_ptychodus.convert.importer import describe_bundled_stack, read_bundled_intensities

    stack = describe_bundled_stack(product)
    np.testing.assert_array_equal(read_bundled_intensities(stack), counts)
