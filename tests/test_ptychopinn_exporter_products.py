"""PtychoPINN users' files: products written by PtychoPINN's own exporter, and the guide's command.

Issue 9. PtychoPINN's exporter (``ptycho.io.ptychodus_product_io``) writes
``x_m = xcoords * object_pixel_width_m`` -- not centred on the object -- and
``scan_index`` (all zeros) as the position indexes, plus root attributes
``bundle_version = "1.0"`` and ``contains_raw_data = 1`` and a ``/raw_data`` bundle
with the pixel coordinates. Such files must open on the right object pixels
everywhere we read products: the core (``import_product``,
``import_product_to_rawdata``), the CLI's reverse path and Ptychodus through our
``PtychoPINN_Product_H5`` reader. Products without a bundle whose indexes are not
``0..M-1`` still open, renumbered. Last, the guide's verbatim command on the real
Run1084 reconstruction (no diffraction stack).

Position convention: the Ptychodus object pixel under PtychoPINN's probe centre is
``xcoords - (N // 2 - (N - 1) / 2)`` for an ``N``-pixel probe (half a pixel for even N).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from helpers import minimal_arrays, product_pixels, stderr_lines

from ptychopinn_ptychodus import import_product, import_product_to_rawdata

OBJECT_PIXEL_M = 5e-8
PROBE_PIXEL_M = 1.25e-7  # PtychoPINN's exporter's default probe pixel
EXPORTER_NOTE = "PtychoPINN's exporter"
READER = 'PtychoPINN_Product_H5'


def ptychopinn_offset(n: int) -> float:
    """PtychoPINN's xcoords minus the Ptychodus object pixel for an n-pixel probe (0.5 when n is even)."""
    return n // 2 - (n - 1) / 2


def write_ptychopinn_export(path: Path, arrays: dict[str, np.ndarray], *, include_raw: bool = True,
                            scan_index: np.ndarray | None = None) -> Path:
    """A product exactly as PtychoPINN's ``export_product_from_rawdata`` writes it (defaults for meta).

    Uncentred metre positions, ``probe_position_indexes`` = ``scan_index`` (zeros), probe pixel
    125 nm; with ``include_raw`` the ``/raw_data`` bundle (pixels, NHW amplitudes, hard links)
    and the root attributes ``bundle_version`` / ``contains_raw_data``.
    """
    x_px, y_px = arrays['xcoords'], arrays['ycoords']
    scan_index = np.zeros(len(x_px), np.int64) if scan_index is None else scan_index
    with h5py.File(path, 'w') as f:
        f.attrs['name'] = ''
        f.attrs['comments'] = ''
        f.attrs['detector_object_distance_m'] = 0.0
        f.attrs['probe_energy_eV'] = 0.0
        f.attrs['probe_photon_count'] = 0.0
        f.attrs['exposure_time_s'] = 0.0
        f.attrs['mass_attenuation_m2_kg'] = 0.0
        f.attrs['tomography_angle_deg'] = 0.0
        f.create_dataset('probe_position_indexes', data=scan_index)
        f.create_dataset('probe_position_x_m', data=x_px * OBJECT_PIXEL_M)
        f.create_dataset('probe_position_y_m', data=y_px * OBJECT_PIXEL_M)
        probe = f.create_dataset('probe', data=arrays['probeGuess'].astype(np.complex64))
        probe.attrs['pixel_width_m'] = PROBE_PIXEL_M
        probe.attrs['pixel_height_m'] = PROBE_PIXEL_M
        obj = f.create_dataset('object', data=arrays['objectGuess'].astype(np.complex64))
        obj.attrs['center_x_m'] = 0.0
        obj.attrs['center_y_m'] = 0.0
        obj.attrs['pixel_width_m'] = OBJECT_PIXEL_M
        obj.attrs['pixel_height_m'] = OBJECT_PIXEL_M
        f.create_dataset('object_layer_spacing_m', data=np.array([], dtype=np.float64))
        f.create_dataset('loss_values', data=np.array([], dtype=np.float64))
        f.create_dataset('loss_epochs', data=np.array([], dtype=np.int64))
        if include_raw:
            f.attrs['bundle_version'] = '1.0'
            f.attrs['contains_raw_data'] = 1
            g = f.require_group('raw_data')
            dset = g.create_dataset('diffraction', data=arrays['diffraction'], compression='gzip',
                                    compression_opts=4, shuffle=True)
            dset.attrs['axis_canonical'] = 'NHW'
            dset.attrs['original_axis_order'] = 'NHW'
            g.create_dataset('xcoords', data=np.asarray(x_px, dtype=np.float64))
            g.create_dataset('ycoords', data=np.asarray(y_px, dtype=np.float64))
            g.create_dataset('scan_index', data=scan_index)
            g['probeGuess'] = f['probe']
            g['objectGuess'] = f['object']
    return path


def write_centred_product(path: Path, arrays: dict[str, np.ndarray], indexes: np.ndarray) -> Path:
    """A plain Ptychodus-layout product (no bundle, none of anyone's extra attributes), positions
    centred as Ptychodus places them, with the given ``probe_position_indexes``."""
    n = arrays['probeGuess'].shape[-1]
    height, width = arrays['objectGuess'].shape
    offset = ptychopinn_offset(n)
    with h5py.File(path, 'w') as f:
        f.attrs['name'] = 'centred'
        f.attrs['comments'] = ''
        f.attrs['probe_energy_eV'] = 8000.0
        f.attrs['detector_object_distance_m'] = 1.0
        f.create_dataset('probe_position_indexes', data=indexes)
        f.create_dataset('probe_position_x_m',
                         data=OBJECT_PIXEL_M * (arrays['xcoords'] - offset - (width - 1) / 2))
        f.create_dataset('probe_position_y_m',
                         data=OBJECT_PIXEL_M * (arrays['ycoords'] - offset - (height - 1) / 2))
        probe = f.create_dataset('probe', data=arrays['probeGuess'])
        obj = f.create_dataset('object', data=arrays['objectGuess'])
        for dset in (probe, obj):
            dset.attrs['pixel_width_m'] = OBJECT_PIXEL_M
            dset.attrs['pixel_height_m'] = OBJECT_PIXEL_M
        obj.attrs['center_x_m'] = 0.0
        obj.attrs['center_y_m'] = 0.0
        f.create_dataset('object_layer_spacing_m', data=np.array([], dtype=np.float64))
        f.create_dataset('loss_values', data=np.array([], dtype=np.float64))
        f.create_dataset('loss_epochs', data=np.array([], dtype=np.int64))
    return path


def read_with_plugin(registry: Any, path: Path) -> Any:
    plugin = registry.product_file_readers.find_plugin(READER)
    assert plugin is not None, f'{READER} is not registered'
    return plugin.strategy.read(path)


def exporter_notes(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if EXPORTER_NOTE in r.getMessage() and r.levelno == logging.WARNING]


@pytest.fixture(params=[16, 15], ids=['even-probe', 'odd-probe'])
def exported(request, tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """A PtychoPINN-exporter product of a small dataset (object 3N x 3N+2, positions inside)."""
    arrays = minimal_arrays(n=request.param)
    return write_ptychopinn_export(tmp_path / 'ptychopinn_export.h5', arrays), arrays


# -- 6. PtychoPINN-exporter products open on the right pixels ----------------------------------------


def test_exporter_product_through_the_core(exported, tmp_path, caplog):
    path, arrays = exported

    with caplog.at_level(logging.WARNING, logger='ptychopinn_ptychodus'):
        report = import_product(path, tmp_path / 'back.npz')

    with np.load(tmp_path / 'back.npz') as back:
        assert np.array_equal(back['xcoords'], arrays['xcoords'])  # the bundle's pixels, verbatim
        assert np.array_equal(back['ycoords'], arrays['ycoords'])
        assert np.array_equal(back['diffraction'], arrays['diffraction'])
        assert np.array_equal(back['probeGuess'], arrays['probeGuess'])
        assert np.array_equal(back['objectGuess'], arrays['objectGuess'])
    assert len(exporter_notes(caplog.records)) == 1, caplog.text
    assert 'not centred' in exporter_notes(caplog.records)[0]
    assert not any('differ from /raw_data' in note for note in report.notes), report.notes


def test_exporter_product_through_the_cli(exported, run_cli, tmp_path):
    path, arrays = exported

    result = run_cli('--input-product', path, '--output-npz', tmp_path / 'back.npz')

    assert result.returncode == 0, result.stderr
    lines = stderr_lines(result.stderr)
    assert len(lines) == 1, f'expected one warning line: {result.stderr!r}'
    assert EXPORTER_NOTE in lines[0] and 'not centred' in lines[0] and 'Traceback' not in result.stderr
    with np.load(tmp_path / 'back.npz') as back:
        assert np.array_equal(back['xcoords'], arrays['xcoords'])
        assert np.array_equal(back['ycoords'], arrays['ycoords'])


def test_exporter_product_through_import_product_to_rawdata(exported, caplog):
    path, arrays = exported

    with caplog.at_level(logging.WARNING, logger='ptychopinn_ptychodus'):
        raw = import_product_to_rawdata(path, plain=True)

    np.testing.assert_allclose(raw.xcoords, arrays['xcoords'], rtol=0, atol=1e-9)
    np.testing.assert_allclose(raw.ycoords, arrays['ycoords'], rtol=0, atol=1e-9)
    assert raw.diff3d.dtype == np.float32 and np.array_equal(raw.diff3d, arrays['diffraction'])
    assert np.array_equal(raw.probeGuess, arrays['probeGuess'])
    assert len(exporter_notes(caplog.records)) == 1, caplog.text


def test_exporter_product_through_ptychodus(exported, registry):
    path, arrays = exported
    n = arrays['probeGuess'].shape[-1]

    product = read_with_plugin(registry, path)

    # Mapped with the product's own geometry, as Ptychodus maps them.
    x_px, y_px = product_pixels(product)
    np.testing.assert_allclose(x_px, arrays['xcoords'] - ptychopinn_offset(n), rtol=0, atol=1e-9)
    np.testing.assert_allclose(y_px, arrays['ycoords'] - ptychopinn_offset(n), rtol=0, atol=1e-9)
    assert [int(p.index) for p in product.probe_positions] == list(range(len(arrays['xcoords'])))
    obj = np.asarray(product.object_.get_array())
    assert np.array_equal(obj.reshape(arrays['objectGuess'].shape), arrays['objectGuess'])


# -- products without a bundle whose indexes are not 0..M-1: open, renumbered, noted -------------------

UNBUNDLED = [
    pytest.param('ptychopinn-no-raw', id='ptychopinn-export-include_raw-False'),
    pytest.param('ptychopinn-attrs-no-raw', id='bundle_version-without-raw_data'),
    pytest.param('centred-duplicates', id='plain-product-duplicate-and-gap-indexes'),
]
DUPLICATES = np.array([0, 0, 1, 1, 5, 9, 2, 3, 3], dtype=np.int64)


def write_unbundled(kind: str, path: Path) -> tuple[Path, dict[str, np.ndarray], np.ndarray]:
    """The product, its arrays, and the Ptychodus pixels (x) its metre positions mean as written."""
    arrays = minimal_arrays(num=len(DUPLICATES))
    width = arrays['objectGuess'].shape[1]
    if kind == 'centred-duplicates':
        write_centred_product(path, arrays, DUPLICATES)
        return path, arrays, arrays['xcoords'] - ptychopinn_offset(arrays['probeGuess'].shape[-1])
    write_ptychopinn_export(path, arrays, include_raw=False)
    if kind == 'ptychopinn-attrs-no-raw':
        with h5py.File(path, 'r+') as f:
            f.attrs['bundle_version'] = '1.0'
    # Uncentred metres with nothing to correct them from: placed as written, in file order.
    return path, arrays, arrays['xcoords'] + (width - 1) / 2


@pytest.mark.parametrize('kind', UNBUNDLED)
def test_unbundled_product_with_bad_indexes_through_the_core(kind, tmp_path, caplog):
    path, _, x_px = write_unbundled(kind, tmp_path / 'p.h5')
    offset = ptychopinn_offset(16)

    with caplog.at_level(logging.WARNING, logger='ptychopinn_ptychodus'):
        report = import_product(path, tmp_path / 'back.npz')
        raw = import_product_to_rawdata(path, plain=True)

    assert any('renumbered' in note for note in report.notes), report.notes
    with np.load(tmp_path / 'back.npz') as back:
        np.testing.assert_allclose(back['xcoords'], x_px + offset, rtol=0, atol=1e-9)  # file order kept
        assert len(back['scan_index']) == len(x_px)
    np.testing.assert_allclose(raw.xcoords, x_px + offset, rtol=0, atol=1e-9)
    assert raw.diff3d is None
    assert sum('renumbered' in r.getMessage() for r in caplog.records) == 2  # once per call


@pytest.mark.parametrize('kind', UNBUNDLED)
def test_unbundled_product_with_bad_indexes_through_the_cli(kind, run_cli, tmp_path):
    path, _, x_px = write_unbundled(kind, tmp_path / 'p.h5')

    result = run_cli('--input-product', path, '--output-npz', tmp_path / 'back.npz')

    assert result.returncode == 0, result.stderr
    assert 'Traceback' not in result.stderr
    assert any('renumbered' in line for line in stderr_lines(result.stderr)), result.stderr
    with np.load(tmp_path / 'back.npz') as back:
        np.testing.assert_allclose(back['xcoords'], x_px + ptychopinn_offset(16), rtol=0, atol=1e-9)


@pytest.mark.parametrize('kind', UNBUNDLED)
def test_unbundled_product_with_bad_indexes_through_ptychodus(kind, registry, tmp_path):
    path, _, x_px = write_unbundled(kind, tmp_path / 'p.h5')

    product = read_with_plugin(registry, path)

    assert [int(p.index) for p in product.probe_positions] == list(range(len(x_px)))
    np.testing.assert_allclose(product_pixels(product)[0], x_px, rtol=0, atol=1e-9)


# -- 7. the guide's verbatim command on the real Run1084 reconstruction --------------------------------

RUN1084 = 'run1084_recon3_postPC.npz'


def guide_command(source: Path, output: Path) -> list[str | Path]:
    """The guide's command, flags exactly as the guide (and our README) give them."""
    return [
        '--input-npz', source, '--output-product', output,
        '--name', 'Run1084', '--comments', 'Run1084 reconstruction export',
        '--detector-distance-m', '0.0', '--probe-energy-eV', '8000.0', '--exposure-time-s', '0.1',
        '--object-pixel-size-m', '5e-8', '--probe-pixel-size-m', '1.25e-7',
        '--object-center-x-m', '0.0', '--object-center-y-m', '0.0',
        '--include-diffraction',
    ]


@pytest.mark.parametrize('script', [False, True], ids=['python-m', 'console-script'])
def test_guides_command_on_run1084(shared_data, run_cli, tmp_path, script):
    from ptychodus.api.io import load_product

    source = shared_data / RUN1084
    out = tmp_path / 'run1084_product.h5'

    result = run_cli(*guide_command(source, out), script=script)

    assert result.returncode == 0, result.stderr
    assert 'Traceback' not in result.stderr
    assert any('no diffraction stack' in line for line in stderr_lines(result.stderr)), result.stderr
    with h5py.File(out, 'r') as h5:
        bundle = h5['raw_data']
        assert {'xcoords', 'ycoords', 'probeGuess', 'objectGuess'} <= set(bundle)
        assert 'diffraction' not in bundle
    with np.load(source) as npz:
        xcoords, ycoords = npz['xcoords'], npz['ycoords']
        n = npz['probeGuess'].shape[-1]
        with h5py.File(out, 'r') as h5:
            assert np.array_equal(h5['raw_data/xcoords'][()], xcoords)
    product = load_product(out)
    assert len(product.probe_positions) == 1087 == len(xcoords)
    assert product.metadata.name == 'Run1084'
    x_px, y_px = product_pixels(product)
    np.testing.assert_allclose(x_px, xcoords - ptychopinn_offset(n), rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, ycoords - ptychopinn_offset(n), rtol=0, atol=1e-6)
