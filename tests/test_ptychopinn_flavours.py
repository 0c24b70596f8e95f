"""Every flavour PtychoPINN's own code writes is read right, or refused saying what to do (issue 18.1, 18.6).

Files come from the builders in ``flavours.py`` (one per PtychoPINN writer, each citing it).
Where a PtychoPINN tool asserts something of the files it reads, the test says so in
its own words next to the assertion that stands in for it.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from flavours import (
    count_source,
    datagen_patches,
    downsample,
    exporter_product,
    integration_fixture,
    ptychovit_para,
    synthetic_truth_counts,
    torch_datagen,
    transpose_rename_convert,
)
from helpers import minimal_arrays, ptychopinn_pixels

from ptychopinn_ptychodus import export_product, import_product
from ptychopinn_ptychodus.facts.errors import InvalidInputError
from ptychopinn_ptychodus.facts.geometry import (
    ObjectGrid,
    PositionConvention,
    grid_sample_convention,
    grid_sample_offset_px,
)
from ptychopinn_ptychodus.npz.dataset import open_dataset

NPZ = 'PtychoPINN_NPZ'
H5 = 'PtychoPINN_Product_H5'


def bundle(product: Path) -> tuple[np.ndarray, dict]:
    with h5py.File(product, 'r') as h5:
        dset = h5['raw_data/diffraction']
        return dset[()], dict(dset.attrs)


def product_object_pixels(product: Path) -> tuple[np.ndarray, np.ndarray]:
    """Positions as Ptychodus object pixels, from the product's own geometry (Ptychodus's formula)."""
    with h5py.File(product, 'r') as h5:
        obj = h5['object']
        grid = ObjectGrid(obj.shape[-1], obj.shape[-2], obj.attrs['pixel_width_m'], obj.attrs['pixel_height_m'],
                          obj.attrs['center_x_m'], obj.attrs['center_y_m'])
        return grid.metres_to_pixels(h5['probe_position_x_m'][()], h5['probe_position_y_m'][()])


def load_patterns(core, path: Path, file_type: str) -> np.ndarray:
    """The patterns Ptychodus itself assembles from ``path`` through our reader ``file_type``."""
    dataset = core.workflow_api.load_diffraction_data(path, file_type=file_type, block=True)
    core.run_tasks()
    assert core.plugin_registry.diffraction_file_readers.get_current_plugin().simple_name == file_type
    return np.asarray(dataset.get_assembled_data().get_patterns())


# -- photon counts as floats ------------------------------------------------------------------


def test_transpose_rename_convert_output_is_counts_not_amplitudes(tmp_path, caplog, core):
    # The tool's docstring: renames diff3d -> diffraction and casts uint16 to float32, nothing else.
    source = count_source()
    npz = transpose_rename_convert(tmp_path / 'canonical.npz', source)
    with np.load(npz) as data:
        assert 'diff3d' not in data and data['diffraction'].dtype == np.float32
        np.testing.assert_array_equal(data['diffraction'], source['diff3d'])  # no square root

    out = tmp_path / 'out.h5'
    with caplog.at_level(logging.WARNING):
        report = export_product(npz, out)

    stack, attrs = bundle(out)
    assert attrs['source_domain'] == attrs['measurement_domain'] == 'intensity'
    assert 'whole numbers' in attrs['domain_reason']
    np.testing.assert_array_equal(stack, source['diff3d'].astype(np.float32))  # stored as given
    assert any('photon counts' in note and '--diffraction-domain amplitude' in note for note in report.notes)
    assert 'transpose_rename_convert' in caplog.text
    # Ptychodus sees the counts themselves, not their squares
    np.testing.assert_array_equal(load_patterns(core, npz, NPZ), source['diff3d'].astype(np.float32))


def test_explicit_choice_and_metadata_still_win_over_whole_numbers(tmp_path):
    npz = transpose_rename_convert(tmp_path / 'canonical.npz', count_source())
    export_product(npz, tmp_path / 'explicit.h5', domain='amplitude')
    assert bundle(tmp_path / 'explicit.h5')[1]['source_domain'] == 'amplitude'

    amplitude_meta = transpose_rename_convert(tmp_path / 'meta.npz', count_source(),
                                              {'measurement_domain': 'amplitude'})
    export_product(amplitude_meta, tmp_path / 'meta.h5')
    attrs = bundle(tmp_path / 'meta.h5')[1]
    assert attrs['source_domain'] == 'amplitude' and 'metadata' in attrs['domain_reason']


def test_whole_numbers_only_in_some_blocks_are_ambiguous_and_warned(npz_from_arrays, tmp_path):
    arrays = minimal_arrays(num=40)
    arrays['diffraction'][:10] = np.rint(arrays['diffraction'][:10] * 100)  # start looks like counts
    report = export_product(npz_from_arrays('mixed.npz', **arrays), tmp_path / 'out.h5')
    attrs = bundle(tmp_path / 'out.h5')[1]
    assert attrs['source_domain'] == 'amplitude'
    assert any('ambiguous' in note and '--diffraction-domain' in note for note in report.notes)


def test_ordinary_amplitudes_are_not_warned_about(sample_npz, tmp_path):
    npz, _ = sample_npz(key='diffraction')
    report = export_product(npz, tmp_path / 'out.h5')
    assert bundle(tmp_path / 'out.h5')[1]['source_domain'] == 'amplitude'
    assert not any('ambiguous' in note or 'photon counts' in note for note in report.notes)


@pytest.mark.parametrize('modes', [None, 3], ids=['probe_NN', 'probe_PNN'])
def test_synthetic_truth_count_datasets(tmp_path, modes, core):
    npz, payload = synthetic_truth_counts(tmp_path / 'deadleaves_N16_train.npz', modes=modes)
    out = tmp_path / 'out.h5'
    export_product(npz, out)

    stack, attrs = bundle(out)
    assert stack.dtype == np.uint16
    np.testing.assert_array_equal(stack, payload['diff3d'])
    assert attrs['source_domain'] == 'intensity'
    with h5py.File(out, 'r') as h5:
        probe = h5['probe'][()]
    assert probe.size == payload['probeGuess'].size  # every mode kept
    np.testing.assert_array_equal(probe.reshape(payload['probeGuess'].shape), payload['probeGuess'])
    np.testing.assert_array_equal(load_patterns(core, npz, NPZ), payload['diff3d'])


def test_torch_datagen_float_poisson_counts_are_intensities(tmp_path):
    npz, arrays = torch_datagen(tmp_path / 'synthetic_0.npz')
    export_product(npz, tmp_path / 'out.h5')
    stack, attrs = bundle(tmp_path / 'out.h5')
    assert attrs['source_domain'] == 'intensity'
    np.testing.assert_array_equal(stack, arrays['diff3d'])


# -- layouts --------------------------------------------------------------------------------


def test_integration_fixture_m_equals_n_is_nhw_with_a_warning_naming_layout(tmp_path, core):
    # make_pytorch_integration_fixture.py writes (64, 64, 64) under diffraction and diff3d and
    # documents it as (N, H, W); PtychoPINN's loaders read it so.
    npz, arrays = integration_fixture(tmp_path / 'minimal_dataset_v1.npz')
    out = tmp_path / 'out.h5'
    report = export_product(npz, out)

    stack, attrs = bundle(out)
    assert attrs['original_axis_order'] == 'NHW'
    np.testing.assert_array_equal(stack, arrays['diffraction'])
    assert any('--layout' in note for note in report.notes)
    x_px, y_px = product_object_pixels(out)
    expected_x, expected_y = ptychopinn_pixels(arrays)
    np.testing.assert_allclose(x_px, expected_x, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, atol=1e-6)
    # and through Ptychodus: squared amplitudes in pattern order. The provenance JSON would be taken
    # for our sidecar by the plugin: that collision is issue 18.2 (another helper's), not tested here.
    npz.with_suffix('.json').unlink()
    np.testing.assert_allclose(load_patterns(core, npz, NPZ), np.square(arrays['diffraction']), rtol=1e-6)


@pytest.mark.parametrize('compress', [False, True], ids=['stored', 'deflated'])
def test_hnw_stack_is_read_pattern_by_pattern(npz_from_arrays, tmp_path, compress, core):
    arrays = minimal_arrays(num=11, n=16)
    nhw = arrays['diffraction']
    arrays['diffraction'] = np.ascontiguousarray(np.moveaxis(nhw, 0, 1))  # (H, M, W)
    npz = npz_from_arrays('hnw.npz', compress=compress, **arrays)

    export_product(npz, tmp_path / 'out.h5')
    stack, attrs = bundle(tmp_path / 'out.h5')
    assert attrs['original_axis_order'] == 'HNW'
    np.testing.assert_array_equal(stack, nhw)
    with open_dataset(npz) as dataset:  # a cropped block straight from the member
        region = (slice(3, 9), slice(2, 15))
        block = dataset.reader().raw_block(4, 8, region)
        np.testing.assert_array_equal(block, nhw[4:8, 3:9, 2:15])
    np.testing.assert_allclose(load_patterns(core, npz, NPZ), np.square(nhw), rtol=1e-6)


@pytest.mark.parametrize('layout', ['NHW', 'HWN'])
def test_more_positions_than_patterns_drops_the_trailing_ones(npz_from_arrays, tmp_path, layout):
    # ptycho_torch/dataloader.py _align_coords_to_diffraction: keeps the first len(patterns)
    # coordinates, warns, and refuses the reverse (tested in test_core_bad_input.py).
    arrays = minimal_arrays(num=12, n=16)
    kept = 9
    arrays['diffraction'] = arrays['diffraction'][:kept]
    if layout == 'HWN':
        arrays['diffraction'] = np.ascontiguousarray(np.moveaxis(arrays['diffraction'], 0, -1))
    arrays['scan_index'] = np.zeros(12, np.int64)
    npz = npz_from_arrays('extra_positions.npz', **arrays)

    out = tmp_path / 'out.h5'
    report = export_product(npz, out)

    assert report.num_positions == kept
    assert any('trailing 3 positions' in note for note in report.notes)
    x_px, y_px = product_object_pixels(out)
    expected_x, expected_y = ptychopinn_pixels(arrays)
    np.testing.assert_allclose(x_px, expected_x[:kept], atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y[:kept], atol=1e-6)
    with h5py.File(out, 'r') as h5:
        assert 'trailing 3 positions' in h5.attrs['comments']
        np.testing.assert_array_equal(h5['probe_position_indexes'][()], np.arange(kept))


# -- probe size ------------------------------------------------------------------------------


def test_downsampled_diffraction_key_file_probe_mismatch(tmp_path):
    # downsample_data_tool.py crops only a 'diff3d' stack but bins the probe whatever the key.
    source = minimal_arrays(num=9, n=32)
    npz = downsample(tmp_path / 'binned.npz', source)
    with np.load(npz) as data:
        assert data['probeGuess'].shape == (16, 16) and data['diffraction'].shape == (9, 32, 32)

    inspected = export_product(npz, None, dry_run=True)  # --inspect: a warning only
    assert any('16x16' in note and '32x32' in note for note in inspected.notes)

    out = tmp_path / 'out.h5'
    with pytest.raises(InvalidInputError) as caught:
        export_product(npz, out)
    message = str(caught.value)
    assert str(npz) in message and '\n' not in message
    assert 'probeGuess is 16x16' in message and 'downsample_data_tool' in message
    assert not out.exists()


def test_plugin_refuses_to_pair_a_mismatched_probe_with_the_patterns(tmp_path, core):
    npz = downsample(tmp_path / 'binned.npz', minimal_arrays(num=9, n=32))
    wf = core.workflow_api
    diffraction = wf.load_diffraction_data(npz, file_type=NPZ, block=True)
    core.run_tasks()
    with pytest.raises(RuntimeError) as caught:  # Ptychodus 1.7 wraps a reader's error ("Failed to read")
        wf.load_product(npz, file_type=NPZ, diffraction=diffraction)
        core.run_tasks()
    cause = caught.value.__cause__
    assert isinstance(cause, InvalidInputError)
    assert str(npz) in str(cause) and 'probeGuess is 16x16' in str(cause) and '32x32' in str(cause)


def test_downsampled_diff3d_file_is_consistent(tmp_path):
    source = count_source(n=32, obj_px=128)
    npz = downsample(tmp_path / 'binned.npz', source)
    report = export_product(npz, tmp_path / 'out.h5')
    assert not any('probeGuess is' in note for note in report.notes)


# -- products from PtychoPINN's exporter and PtychoViT's converter -----------------------------


def test_exporter_product_with_uint16_four_d_counts(tmp_path, core):
    raw = count_source()
    raw['diff3d'] = raw['diff3d'][..., None]  # (M, N, N, 1), as a 4-D RawData.diff3d
    product = exporter_product(tmp_path / 'exported.h5', raw)

    out = tmp_path / 'back.npz'
    import_product(product, out)
    with np.load(out) as data:
        key = 'diff3d' if 'diff3d' in data else 'diffraction'
        assert data[key].shape == raw['diff3d'].shape[:3]  # PtychoPINN's RawData wants 3-D
        np.testing.assert_array_equal(data[key], raw['diff3d'][..., 0])  # counts stay counts

    # the plugin's .h5 diffraction reader accepts the 4-D stack: Ptychodus sees the counts
    np.testing.assert_array_equal(load_patterns(core, product, H5), raw['diff3d'][..., 0])


def test_exporter_product_with_hnw_stack(tmp_path):
    raw = count_source(num=10)
    nhw = raw['diff3d']
    raw['diff3d'] = np.ascontiguousarray(np.moveaxis(nhw, 0, 1))  # the exporter accepts (H, M, W)
    product = exporter_product(tmp_path / 'exported.h5', raw)
    assert bundle(product)[1]['original_axis_order'] == 'HNW'

    out = tmp_path / 'back.npz'
    import_product(product, out)
    with np.load(out) as data:
        key = 'diff3d' if 'diff3d' in data else 'diffraction'
        np.testing.assert_array_equal(data[key], nhw)


def test_ptychovit_para_without_position_indexes_imports(tmp_path, caplog):
    para, source = ptychovit_para(tmp_path / 'obj_para.hdf5')
    out = tmp_path / 'back.npz'
    with caplog.at_level(logging.WARNING):
        report = import_product(para, out)
    assert report.num_positions == len(source['x_px'])
    assert any('probe_position_indexes' in note and '0..M-1' in note for note in report.notes)
    with np.load(out) as data:
        np.testing.assert_array_equal(data['objectGuess'], source['objectGuess'])
        assert data['xcoords'].shape == source['x_px'].shape


# -- torch datagen's position convention ------------------------------------------------------


@pytest.mark.parametrize(('object_px', 'patch_px', 'offset'), [(64, 16, 0.0), (63, 16, 0.5), (65, 17, 0.0),
                                                               (64, 17, 0.5)])
def test_grid_sample_offset_rule(object_px, patch_px, offset):
    assert grid_sample_offset_px(object_px, patch_px) == offset


def test_datagen_patch_is_centred_at_half_n_minus_one_on_even_objects():
    # Re-derived by running datagen's steps in numpy: for an even object and even N the patch
    # centre (N - 1) / 2 sits exactly on xcoords, i.e. the identity rule, not N // 2.
    rng = np.random.default_rng(5)
    obj = (rng.random((64, 64)) + 1j * rng.random((64, 64))).astype(np.complex64)
    patches = datagen_patches(obj, np.array([20.5, 41.5]), np.array([30.5, 17.5]), 16)
    np.testing.assert_allclose(patches[0], obj[23:39, 13:29], atol=1e-5)
    np.testing.assert_allclose(patches[1], obj[10:26, 34:50], atol=1e-5)
    odd = obj[:63]  # odd height: half a pixel, as PtychoPINN's own N // 2 rule
    patch = datagen_patches(odd, np.array([20.5]), np.array([30.0]), 16)[0]
    np.testing.assert_allclose(patch, odd[22:38, 13:29], atol=1e-5)


def test_datagen_file_is_detected_and_its_patches_land_on_the_object(tmp_path):
    npz, arrays = torch_datagen(tmp_path / 'synthetic_0.npz', integral_positions=True)
    out = tmp_path / 'out.h5'
    report = export_product(npz, out)

    assert any('ptycho_torch datagen' in note for note in report.notes)
    with h5py.File(out, 'r') as h5:
        assert h5.attrs['ptychopinn_position_convention'] == 'identity'
    x_px, y_px = product_object_pixels(out)
    np.testing.assert_allclose(x_px, arrays['xcoords'], atol=1e-5)
    # Ptychodus's probe window (centre at (N - 1) / 2) on these pixels is datagen's label patch
    # (windows reaching past the object edge are zero-padded by grid_sample; compare the inside ones)
    height, width = arrays['objectGuess'].shape
    inside = 0
    for index in range(len(x_px)):
        top, left = int(round(y_px[index] - 7.5)), int(round(x_px[index] - 7.5))
        if top < 0 or left < 0 or top + 16 > height or left + 16 > width:
            continue
        inside += 1
        np.testing.assert_allclose(arrays['label'][index], arrays['objectGuess'][top:top + 16, left:left + 16],
                                   atol=1e-5)
    assert inside >= 3


def test_datagen_detection_yields_to_explicit_choice_and_odd_objects(tmp_path):
    npz, _ = torch_datagen(tmp_path / 'synthetic_0.npz')
    with open_dataset(npz, position_convention='ptychopinn') as dataset:
        assert dataset.convention == PositionConvention.PTYCHOPINN
    odd, _ = torch_datagen(tmp_path / 'synthetic_1.npz', obj_shape=(63, 63))
    with open_dataset(odd) as dataset:
        assert dataset.convention == PositionConvention.PTYCHOPINN
        assert 'datagen' in dataset.convention_reason
    assert grid_sample_convention((64, 63), (16, 16)) is None


def test_provenance_json_is_next_to_the_fixture(tmp_path):
    npz, _ = integration_fixture(tmp_path / 'minimal_dataset_v1.npz', num=8, n=16)
    provenance = json.loads(npz.with_suffix('.json').read_text())
    assert provenance['version'] == 'v1'  # read by C2's sidecar handling (issue 18.2), not here


# -- the documentation page's examples ------------------------------------------------------------

DOC = Path(__file__).resolve().parents[1] / 'docs' / 'ptychopinn_flavours.md'


def doc_blocks(language: str) -> list[str]:
    text = DOC.read_text(encoding='utf-8')
    return re.findall(rf'```{language}\n(.*?)```', text, flags=re.DOTALL)


def test_doc_python_example_runs(tmp_path, monkeypatch):
    transpose_rename_convert(tmp_path / 'canonical.npz', count_source())
    monkeypatch.chdir(tmp_path)
    blocks = doc_blocks('python')
    assert blocks
    for block in blocks:
        exec(compile(block, str(DOC), 'exec'), {})
    assert (tmp_path / 'canonical.h5').exists()


def test_doc_console_example_runs(tmp_path, run_cli):
    downsample(tmp_path / 'binned.npz', minimal_arrays(num=9, n=32))
    commands = [line[2:].split() for block in doc_blocks('console') for line in block.splitlines()
                if line.startswith('$ ')]
    assert commands
    for command in commands:
        assert command[0] == 'convert_to_ptychodus_product'
        result = run_cli(*command[1:], script=True)
        assert result.returncode == 0, result.stderr
        assert 'probeGuess is 16x16' in result.stderr + result.stdout
