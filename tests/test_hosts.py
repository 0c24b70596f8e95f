"""Promises that hold on every supported Ptychodus (1.5.1, 1.6.x, 1.7.x), checked by that host.

Runs in the default suite (Ptychodus 1.7) and, through ``tests/matrix.py hosts``,
against Ptychodus 1.5.1 and 1.6.0. Only API that every release has is used;
positions are mapped by the running host's own ``map_coordinates_probe_to_object``.

Convention under test: PtychoPINN's probe sits on object pixel ``xcoords`` at
patch index ``N // 2``; Ptychodus centres it at ``(N - 1) / 2``. So the host
must map every position to ``xcoords - (N // 2 - (N - 1) / 2)``: half a pixel
less for the even patch sizes used here. Files from Ptychodus's own exporter
hold Ptychodus pixels already and are read with the explicit "identity" choice.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import our_npz_keys
from ptychodus.api.io import load_product
from ptychodus.api.plugins import PluginRegistry
from ptychodus.api.reconstruct import ReconstructInput

from ptychopinn_ptychodus import export_product, plugin
from ptychopinn_ptychodus.host.compat import find_strategy, host_object_pixels, position_arrays
from ptychopinn_ptychodus.host.doctor import is_supported

RUN1084 = 'run1084_recon3_postPC.npz'


def ptychopinn_offset(n: int) -> float:
    """Stated here on purpose (not imported): PtychoPINN's patch centre minus Ptychodus's."""
    return n // 2 - (n - 1) / 2


def host_pixels(product) -> tuple[np.ndarray, np.ndarray]:
    return host_object_pixels(product.object_.get_geometry(), product.probe_positions)


@pytest.fixture(scope='module')
def host_registry() -> PluginRegistry:
    return PluginRegistry.load_plugins()


def reader(registry: PluginRegistry, chooser: str, name: str):
    return find_strategy(getattr(registry, chooser), name)


def test_installed_host_is_supported_and_lists_every_plugin_once(host_registry):
    version = importlib.metadata.version('ptychodus')
    assert is_supported(version), version
    for entry in plugin.PLUGINS:
        names = [p.simple_name for p in getattr(host_registry, entry.chooser)]
        assert names.count(entry.simple_name) == 1, (entry, names)


def test_amplitudes_in_hwn_layout_open_as_intensities(host_registry, sample_npz):
    path, arrays = sample_npz(layout='HWN')
    dataset = reader(host_registry, 'diffraction_file_readers', 'PtychoPINN_NPZ').read(path)
    patterns = np.concatenate([np.asarray(array.get_patterns()) for array in dataset])
    expected = np.square(np.moveaxis(arrays['diffraction'], -1, 0).astype(np.float32))
    np.testing.assert_allclose(patterns, expected, rtol=1e-6, atol=0)
    assert [int(i) for array in dataset for i in array.get_indexes()] == list(range(len(patterns)))


def test_positions_land_on_ptychopinn_pixels_by_the_hosts_own_mapping(host_registry, sample_npz):
    path, arrays = sample_npz()
    product = reader(host_registry, 'product_file_readers', 'PtychoPINN_NPZ').read(path)
    x_px, y_px = host_pixels(product)
    offset = ptychopinn_offset(arrays['probeGuess'].shape[-1])
    assert offset == 0.5
    np.testing.assert_allclose(x_px, arrays['xcoords'] - offset, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, arrays['ycoords'] - offset, rtol=0, atol=1e-6)
    indexes, _, _ = position_arrays(product.probe_positions)
    assert indexes.tolist() == list(range(len(arrays['xcoords'])))


def test_real_run1084_positions_land_on_their_pixels(host_registry, shared_data):
    path = shared_data / RUN1084
    product = reader(host_registry, 'product_file_readers', 'PtychoPINN_NPZ').read(path)
    with np.load(path) as source:
        xcoords, ycoords, n = source['xcoords'], source['ycoords'], source['probeGuess'].shape[-1]
    x_px, y_px = host_pixels(product)
    np.testing.assert_allclose(x_px, xcoords - ptychopinn_offset(n), rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, ycoords - ptychopinn_offset(n), rtol=0, atol=1e-6)


def test_product_writer_then_reader_keeps_positions(host_registry, sample_npz, tmp_path):
    path, arrays = sample_npz()
    product = reader(host_registry, 'product_file_readers', 'PtychoPINN_NPZ').read(path)
    out = tmp_path / 'written.npz'
    find_strategy(host_registry.product_file_writers, 'PtychoPINN_NPZ').write(out, product)
    with np.load(out, allow_pickle=False) as written:
        np.testing.assert_allclose(written['xcoords'], arrays['xcoords'], rtol=0, atol=1e-9)
        np.testing.assert_allclose(written['ycoords'], arrays['ycoords'], rtol=0, atol=1e-9)
    # since 0.3 our keys live in PtychoPINN's _metadata JSON, not at the top level
    assert our_npz_keys(out)['position_convention'] == 'ptychopinn'
    again = reader(host_registry, 'product_file_readers', 'PtychoPINN_NPZ').read(out)
    x0, y0 = host_pixels(product)
    x1, y1 = host_pixels(again)
    np.testing.assert_allclose(x1, x0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(y1, y0, rtol=0, atol=1e-9)


def test_converted_product_opens_on_the_same_pixels(host_registry, sample_npz, tmp_path):
    path, arrays = sample_npz(key='diff3d', counts=True)
    converted = tmp_path / 'converted.h5'
    export_product(path, converted)
    product = reader(host_registry, 'product_file_readers', 'PtychoPINN_Product_H5').read(converted)
    x_px, _ = host_pixels(product)
    np.testing.assert_allclose(x_px, arrays['xcoords'] - 0.5, rtol=0, atol=1e-6)
    dataset = reader(host_registry, 'diffraction_file_readers', 'PtychoPINN_Product_H5').read(converted)
    patterns = np.concatenate([np.asarray(array.get_patterns()) for array in dataset])
    np.testing.assert_array_equal(patterns, arrays['diff3d'])


def test_hosts_own_hdf5_reader_opens_our_product(sample_npz, tmp_path):
    """Every release reads our product file (both attribute spellings are written).

    A product file does not know which Ptychodus opens it: its metres follow the
    ``(W - 1) / 2`` convention of Ptychodus >= 1.6. Ptychodus 1.5.1 maps with
    ``W / 2`` and so places positions half a pixel further right and down
    (the README says so); our own ``PtychoPINN_Product_H5`` reader corrects it.
    """
    path, arrays = sample_npz()
    converted = tmp_path / 'converted.h5'
    export_product(path, converted)
    product = load_product(converted)
    x_px, y_px = host_pixels(product)
    geometry = product.object_.get_geometry()
    width = geometry.width_px
    host_centre = host_object_pixels(geometry, [_position_at(product, geometry.center_x_m, geometry.center_y_m)])
    host_shift = float(host_centre[0][0]) - (width - 1) / 2  # 0.5 on 1.5.1, 0 on >= 1.6
    np.testing.assert_allclose(x_px, arrays['xcoords'] - 0.5 + host_shift, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, arrays['ycoords'] - 0.5 + host_shift, rtol=0, atol=1e-6)


def _position_at(product, x_m: float, y_m: float):
    first = next(iter(product.probe_positions))
    return type(first)(0, x_m, y_m)


def test_ptychodus_exported_npz_opens_with_identical_counts(host_registry, sample_npz, tmp_path):
    """Ptychodus's own ``save_ptychopinn_training_data`` output: counts exact, positions by identity."""
    from ptychodus.api.io import save_ptychopinn_training_data

    path, arrays = sample_npz(key='diff3d', counts=True)
    product = reader(host_registry, 'product_file_readers', 'PtychoPINN_NPZ').read(path)
    patterns = arrays['diff3d']
    parameters = ReconstructInput(patterns, np.zeros(patterns.shape[1:], dtype=bool), product)
    keywords = inspect.signature(save_ptychopinn_training_data).parameters
    options = {'multimodal_probe': True} if 'multimodal_probe' in keywords else {'inpaint_bad_pixels': False}
    exported = tmp_path / 'exported.npz'
    save_ptychopinn_training_data(exported, parameters, **options)
    exported.with_suffix('.json').write_text(json.dumps({'position_convention': 'identity'}))

    dataset = reader(host_registry, 'diffraction_file_readers', 'PtychoPINN_NPZ').read(exported)
    reread = np.concatenate([np.asarray(array.get_patterns()) for array in dataset])
    np.testing.assert_array_equal(reread, patterns)
    reopened = reader(host_registry, 'product_file_readers', 'PtychoPINN_NPZ').read(exported)
    with np.load(exported, allow_pickle=False) as written:
        x_px, y_px = host_pixels(reopened)
        np.testing.assert_allclose(x_px, written['xcoords'], rtol=0, atol=1e-6)
        np.testing.assert_allclose(y_px, written['ycoords'], rtol=0, atol=1e-6)
    # and the same physical pixels as the PtychoPINN file the product came from
    np.testing.assert_allclose(x_px, arrays['xcoords'] - 0.5, rtol=0, atol=1e-6)


def test_headless_model_core_loads_diffraction_and_product(core, sample_npz, tmp_path: Path):
    path, arrays = sample_npz()
    workflow = core.workflow_api
    diffraction = workflow.load_diffraction_data(path, file_type='PtychoPINN_NPZ', block=True)
    product = workflow.load_product(path, file_type='PtychoPINN_NPZ', diffraction=diffraction)
    core.run_tasks()
    patterns = diffraction.get_assembled_data().get_patterns()
    np.testing.assert_allclose(patterns, np.square(arrays['diffraction'].astype(np.float32)), rtol=1e-6)
    x_px, _ = host_pixels(product.get_product())
    np.testing.assert_allclose(x_px, arrays['xcoords'] - 0.5, rtol=0, atol=1e-6)
    out = tmp_path / 'saved.h5'
    product.save_product(out, file_type='HDF5')
    assert out.is_file()
