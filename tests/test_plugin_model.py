"""Our readers driven through Ptychodus's own model layer (``ModelCore``), as the GUI drives them.

Loads use ``block=True``, products are bound to the loaded dataset, and
``chooser.get_strategy_by_name`` checks that ``file_type`` really selected our
plugin (Ptychodus only logs an unknown name and keeps the previous plugin, so a
typo would otherwise pass unnoticed). Everything that
comes back is checked with Ptychodus's own code (``ptychodus.api.io``,
``ObjectGeometry.map_probe_positions_to_object_*_px``) against the arrays that
were written.

Position convention expected: PtychoPINN's own (the default) -- the Ptychodus object
pixel under the probe is ``xcoords - (N // 2 - (N - 1) / 2)``, half a pixel less for
the 16 px sample probe (``helpers.ptychopinn_pixels``). Files written by Ptychodus's
own ``save_ptychopinn_training_data`` hold Ptychodus pixels already and are opened
with the explicit "identity" choice (sidecar key ``position_convention``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import minimal_arrays, product_pixels, ptychopinn_pixels, write_json
from ptychodus.api.io import load_product, save_ptychopinn_training_data
from ptychodus.api.reconstruct import ReconstructInput
from ptychodus.model import ModelCore

from ptychopinn_ptychodus import export_product, plugin

NPZ = plugin.NPZ_SIMPLE_NAME
H5 = plugin.H5_SIMPLE_NAME


def assert_ours_selected(chooser: Any, simple_name: str, expected_type: type) -> None:
    strategy = chooser.get_strategy_by_name(simple_name)
    assert type(strategy) is expected_type
    current = chooser.get_current_plugin()
    assert current.simple_name == simple_name and current.strategy is strategy


def assert_holds_the_arrays(product: Any, arrays: dict[str, np.ndarray]) -> None:
    """The product's object, probe and positions (mapped to object pixels by Ptychodus) are the NPZ's,
    the positions under the PtychoPINN convention (``xcoords - 0.5`` for a 16 px probe)."""
    np.testing.assert_array_equal(np.asarray(product.object_.get_array())[0], arrays['objectGuess'])
    np.testing.assert_array_equal(
        np.asarray(product.probes.get_array()).reshape(arrays['probeGuess'].shape), arrays['probeGuess'])
    x_px, y_px = product_pixels(product)
    expected_x, expected_y = ptychopinn_pixels(arrays)
    np.testing.assert_allclose(x_px, expected_x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, rtol=0, atol=1e-6)


def load_pair(core: ModelCore, path: Path, file_type: str = NPZ) -> tuple[Any, Any]:
    """Diffraction, then the product bound to it, both through ``file_type``."""
    wf = core.workflow_api
    diffraction = wf.load_diffraction_data(path, file_type=file_type, block=True)
    core.run_tasks()
    readers = core.plugin_registry.diffraction_file_readers
    assert_ours_selected(readers, file_type,
                         plugin.NPZDiffractionFileReader if file_type == NPZ
                         else plugin.BundledDiffractionFileReader)
    product = wf.load_product(path, file_type=file_type, diffraction=diffraction)
    core.run_tasks()
    assert_ours_selected(core.plugin_registry.product_file_readers, file_type,
                         plugin.NPZProductFileReader if file_type == NPZ
                         else plugin.BundledProductFileReader)
    return diffraction, product


def test_unknown_file_type_would_not_select_ours(core):
    """Guards the pitfall the other tests rely on catching: a typo keeps the previous reader."""
    chooser = core.plugin_registry.diffraction_file_readers
    before = chooser.get_current_plugin()
    chooser.set_current_plugin('PtychoPINN_NPZ_typo')
    assert chooser.get_current_plugin() is before
    with pytest.raises(LookupError):
        chooser.get_strategy_by_name('PtychoPINN_NPZ_typo')


def test_our_simple_name_is_found_first(core):
    for chooser in (core.plugin_registry.diffraction_file_readers,
                    core.plugin_registry.product_file_readers):
        names = [p.simple_name.casefold() for p in chooser]
        assert names.count(NPZ.casefold()) == 1
        assert chooser.find_plugin(NPZ).simple_name == NPZ


def test_amplitude_npz_loads_as_intensities_and_round_trips_through_hdf5(core, sample_npz, tmp_path):
    path, arrays = sample_npz()
    diffraction, product = load_pair(core, path)

    patterns = diffraction.get_assembled_data().get_patterns()
    expected = np.square(arrays['diffraction'].astype(np.float32))
    assert patterns.shape == expected.shape
    np.testing.assert_allclose(patterns, expected, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(diffraction.get_assembled_data().get_indexes(),
                                  np.arange(len(arrays['xcoords'])))

    loaded = product.get_product()
    assert len(loaded.probe_positions) == len(arrays['xcoords'])
    np.testing.assert_array_equal(loaded.probe_positions.get_indexes(), np.arange(len(arrays['xcoords'])))

    out = tmp_path / 'product.h5'
    product.save_product(out, file_type='HDF5')
    writer = core.plugin_registry.product_file_writers.get_current_plugin()
    assert writer.simple_name == 'HDF5'

    reopened = load_product(out)
    assert np.asarray(reopened.object_.get_array()).shape[0] == 1
    assert np.asarray(reopened.probes.get_array()).size == arrays['probeGuess'].size
    assert_holds_the_arrays(reopened, arrays)
    np.testing.assert_array_equal(reopened.probe_positions.get_indexes(),
                                  np.arange(len(arrays['xcoords'])))


def test_uint16_counts_in_hwn_layout_load_exactly(core, sample_npz, tmp_path):
    path, arrays = sample_npz(key='diff3d', layout='HWN', counts=True)
    counts = arrays['diff3d']
    assert counts.dtype == np.uint16 and counts.shape[-1] == len(arrays['xcoords'])
    diffraction, product = load_pair(core, path)

    patterns = diffraction.get_assembled_data().get_patterns()
    np.testing.assert_array_equal(patterns, np.moveaxis(counts, -1, 0))

    out = tmp_path / 'product.h5'
    product.save_product(out, file_type='HDF5')
    reopened = load_product(out)
    assert_holds_the_arrays(reopened, arrays)


@pytest.mark.parametrize('beam_center', [None, 64], ids=['ptychodus-default-centre', 'detector-centre'])
def test_default_crop_is_applied_by_ptychodus(sample_npz, beam_center):
    """Crop enabled with Ptychodus's default 64x64 window on a 128x128 sample.

    Ptychodus's headless default beam centre is (32, 32); the Open Dataset wizard
    moves it to the detector centre (width // 2). Either way the patterns must be
    exactly the window Ptychodus asked our lazy reader for.
    """
    path, arrays = sample_npz('big.npz', pattern_px=128, scan_side=4)
    intensities = np.square(arrays['diffraction'].astype(np.float32))
    with ModelCore() as core:
        settings = core.diffraction_core.diffraction_settings
        assert settings.crop_enabled.get_value() is True
        size = (settings.crop_height_px.get_value(), settings.crop_width_px.get_value())
        assert size == (64, 64)
        if beam_center is not None:
            settings.beam_center_x_px.set_value(beam_center)
            settings.beam_center_y_px.set_value(beam_center)
        cy, cx = settings.beam_center_y_px.get_value(), settings.beam_center_x_px.get_value()
        diffraction = core.workflow_api.load_diffraction_data(path, file_type=NPZ, block=True)
        core.run_tasks()
        assert_ours_selected(core.plugin_registry.diffraction_file_readers, NPZ,
                             plugin.NPZDiffractionFileReader)
        patterns = diffraction.get_assembled_data().get_patterns()
    assert patterns.shape == (16, 64, 64)
    window = intensities[:, cy - 32 : cy + 32, cx - 32 : cx + 32]
    np.testing.assert_allclose(patterns, window, rtol=1e-6, atol=0)
    if beam_center == 64:
        np.testing.assert_allclose(patterns, intensities[:, 32:96, 32:96], rtol=1e-6, atol=0)


@pytest.mark.parametrize('counts', [False, True], ids=['amplitude', 'uint16-counts'])
def test_converted_bundle_opens_as_diffraction_and_product(core, sample_npz, tmp_path, counts):
    key = 'diff3d' if counts else 'diffraction'
    path, arrays = sample_npz(key=key, counts=counts)
    bundle = tmp_path / 'converted.h5'
    export_product(path, bundle, include_raw=True)

    diffraction, product = load_pair(core, bundle, file_type=H5)
    patterns = diffraction.get_assembled_data().get_patterns()
    if counts:
        np.testing.assert_array_equal(patterns, arrays['diff3d'])
    else:
        np.testing.assert_allclose(patterns, np.square(arrays['diffraction'].astype(np.float32)),
                                   rtol=1e-6, atol=0)

    loaded = product.get_product()
    assert_holds_the_arrays(loaded, arrays)


def test_ptychodus_training_npz_reopens_through_our_readers(core, sample_npz, tmp_path):
    """``save_ptychopinn_training_data`` writes intensities as ``diff3d``; ours must read them back."""
    path, arrays = sample_npz(key='diff3d', counts=True)
    _, product = load_pair(core, path)
    source = product.get_product()
    # Built by hand from its fields, from the product our reader produced and Ptychodus holds.
    patterns = product.get_reconstruct_input().diffraction_patterns
    np.testing.assert_array_equal(patterns, arrays['diff3d'])
    parameters = ReconstructInput(
        diffraction_patterns=patterns,
        bad_pixels=np.zeros(patterns.shape[1:], dtype=bool),
        product=source,
    )
    training = tmp_path / 'training.npz'
    save_ptychopinn_training_data(training, parameters, inpaint_bad_pixels=False)
    with np.load(training, allow_pickle=False) as z:
        assert z['diff3d'].dtype == np.uint16
        assert z['probeGuess'].ndim == 3  # Ptychodus writes the (modes, N, N) stack
        written_x = z['xcoords']
    # Ptychodus's exporter writes its own object pixels as xcoords (identity convention, no
    # position_convention key), so the file is read on the same pixels only with the explicit
    # identity choice -- here through the sidecar, as a GUI user would.
    np.testing.assert_allclose(written_x, product_pixels(source)[0], rtol=0, atol=1e-9)
    write_json(training.with_suffix('.json'), {'position_convention': 'identity'})

    diffraction2, product2 = load_pair(core, training)
    np.testing.assert_array_equal(diffraction2.get_assembled_data().get_patterns(), arrays['diff3d'])
    reopened = product2.get_product()
    x0, y0 = product_pixels(source)
    x1, y1 = product_pixels(reopened)
    np.testing.assert_allclose(x1, x0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y1, y0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(x1, ptychopinn_pixels(arrays)[0], rtol=0, atol=1e-6)  # the source's pixels
    np.testing.assert_array_equal(np.asarray(reopened.object_.get_array())[0], arrays['objectGuess'])
    np.testing.assert_array_equal(
        np.asarray(reopened.probes.get_array()).reshape(arrays['probeGuess'].shape), arrays['probeGuess'])


def test_object_sampling_agrees_with_the_bound_dataset_when_the_physics_is_given(core, sample_npz):
    """With energy, distance and object pixel size known (sidecar), diffraction and product must agree.

    Ptychodus derives the pixel size it reconstructs at from the bound dataset
    (lambda * z / (N * detector pixel)). The converter derives the detector pixel
    size from exactly these three values (``resolve_meta``); the plugin's
    diffraction reader must do the same, or Ptychodus warns that the object "will
    reconstruct at the wrong scale".
    """
    path, arrays = sample_npz()
    sidecar = {'photon_energy_eV': 10000.0, 'detector_distance_m': 2.0, 'object_pixel_size_m': 20e-9}
    write_json(path.with_suffix('.json'), sidecar)
    _, product = load_pair(core, path)

    item = core.product_core.product_repository[product.get_product_index()]
    loaded = product.get_product()
    ours = loaded.object_.get_pixel_geometry()
    assert ours.width_m == pytest.approx(20e-9, rel=1e-12)
    expected = item.get_geometry().get_object_geometry().get_pixel_geometry()
    assert expected.width_m == pytest.approx(ours.width_m, rel=1e-9), (
        f'Ptychodus samples this product at {expected.width_m:.6g} m but the object from the NPZ is '
        f'at {ours.width_m:.6g} m: the diffraction reader left the detector pixel size unset'
    )
    assert expected.height_m == pytest.approx(ours.height_m, rel=1e-9)


# -- the position convention: visible and controllable in Ptychodus ---------------------------------


def convention_entry(registry: Any, path: Path) -> str:
    """The details of the 'position convention' node of our diffraction reader's layout tree."""
    dataset = registry.diffraction_file_readers.get_strategy_by_name(NPZ).read(path)
    entries = [node for node in dataset.get_layout().children if node.name == 'position convention']
    assert len(entries) == 1, [node.name for node in dataset.get_layout().children]
    return entries[0].details


def test_layout_tree_shows_the_position_convention(registry, sample_npz, npz_from_arrays):
    default, arrays = sample_npz('default.npz')
    recorded = npz_from_arrays('recorded.npz', position_convention=np.array('identity'), **arrays)
    chosen, _ = sample_npz('chosen.npz')
    write_json(chosen.with_suffix('.json'), {'position_convention': 'identity'})

    details = convention_entry(registry, default)
    assert details.startswith('ptychopinn') and 'xcoords - 0.5' in details and 'default' in details, details
    details = convention_entry(registry, recorded)
    assert details.startswith('identity') and 'recorded in the file' in details, details
    details = convention_entry(registry, chosen)
    assert details.startswith('identity') and 'explicitly' in details, details


@pytest.mark.parametrize('how', ['npz-key', 'sidecar'])
def test_identity_choice_puts_the_probe_on_pixel_xcoords(core, sample_npz, npz_from_arrays, how):
    """Identity convention, from our NPZ key or from the sidecar: Ptychodus pixel == xcoords."""
    path, arrays = sample_npz()
    if how == 'npz-key':
        path = npz_from_arrays('identity.npz', position_convention=np.array('identity'), **arrays)
    else:
        write_json(path.with_suffix('.json'), {'position_convention': 'identity'})

    _, product = load_pair(core, path)

    x_px, y_px = product_pixels(product.get_product())
    np.testing.assert_allclose(x_px, arrays['xcoords'], rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, arrays['ycoords'], rtol=0, atol=1e-6)


def test_odd_probe_has_no_offset_in_the_plugin(registry, npz_from_arrays):
    """N = 15: PtychoPINN's patch index N // 2 = 7 is Ptychodus's centre (N - 1) / 2, so pixel == xcoords."""
    arrays = minimal_arrays(num=9, n=15)
    path = npz_from_arrays('odd.npz', **arrays)

    product = registry.product_file_readers.get_strategy_by_name(NPZ).read(path)

    x_px, y_px = product_pixels(product)
    np.testing.assert_allclose(x_px, arrays['xcoords'], rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, arrays['ycoords'], rtol=0, atol=1e-6)
    assert 'xcoords - 0,' in convention_entry(registry, path)


@pytest.mark.parametrize('option', [{'positions': 'middle'}, {'layout': 'sideways'},
                                    {'position_convention': 'diagonal'}, {'diffraction_domain': 'phase'}])
def test_a_bad_reader_option_in_the_sidecar_is_one_line_naming_the_sidecar(sample_npz, option):
    """Never silently ignored (a bad ``positions`` used to mean "actual"), never a bare ValueError."""
    from ptychopinn_ptychodus.facts.errors import InvalidInputError

    path, _ = sample_npz()
    sidecar = write_json(path.with_suffix('.json'), option)
    for reader in (plugin.NPZProductFileReader(), plugin.NPZDiffractionFileReader()):
        with pytest.raises(InvalidInputError, match=repr(next(iter(option.values())))) as raised:
            reader.read(path)
        assert raised.value.path == str(sidecar)
