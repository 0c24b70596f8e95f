"""Issue 17: the two saves a user makes in the real Ptychodus GUI to get PtychoPINN data out.

The route (nothing of Ptychodus or Qt is mocked; the window is built as in tests/test_gui.py):

1. A PtychoPINN NPZ is opened as a diffraction dataset in the GUI's ``ModelCore``
   (``workflow_api.load_diffraction_data``: the call the Open Dataset wizard ends in),
   with the crop the wizard would apply set in ``diffraction_settings``; its product is
   opened the same way (``workflow_api.load_product``, bound to that dataset).
2. Diffraction view: the dataset row is selected in ``diffraction_view.tree_view`` and
   *Save › Save File…* is triggered. Ptychodus runs a real ``QFileDialog`` (``exec()``)
   built from the diffraction writers' display names.
3. Products view: the product row is selected in ``product_view.table_view`` and
   *Save › Save File…* is triggered (a second real ``QFileDialog``, product writers).
4. While each dialog is modal a ``QTimer`` plays the user (:class:`SaveRobot`): it reads
   the offered filters, picks ours, types the file name into ``fileNameEdit`` and
   accepts; an ``ExceptionDialog`` Ptychodus shows for a writer error is read and closed,
   and the test fails with its text.

What the saves give: two files, a diffraction-only NPZ and a product NPZ. Neither is a
PtychoPINN training file by itself (``RawData.from_file`` needs ``diff3d``/``diffraction``
*and* ``probeGuess`` and ``xcoords`` in one file): the GUI has no save that writes
patterns and product together, since Ptychodus's diffraction writers see no product and
its product writers see no patterns. ``ptychopinn-ptychodus training-data`` joins the two
saved files into one; the last test runs it on them.
"""

from __future__ import annotations

import os

os.environ['QT_QPA_PLATFORM'] = 'offscreen'  # before any Qt import

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PyQt5.QtWidgets import QFileDialog, QMessageBox, QWidget
from test_gui import Gui, ModalRobot, _action, diffraction_view
from test_gui import gui as gui  # noqa: F401 - the module-scoped real main window (as __main__ builds it)
from test_training_data import assert_ptychopinn_loads

from ptychopinn_ptychodus import plugin
from ptychopinn_ptychodus.cli.sample import write_sample
from ptychopinn_ptychodus.npz.archive import write_npz

pytestmark = pytest.mark.gui

OUR_FILTER = plugin.NPZ_DISPLAY_NAME
PATTERN_PX, CROP_PX, SCAN_SIDE = 32, 16, 5
BIG_PX = 96
CASES = ('full', 'crop', 'binned', 'default')
#: The crop and binning settings whose start-up values are Ptychodus's defaults (1.5.1 names crop_center_*).
DEFAULT_NAMES = ('crop_enabled', 'crop_width_px', 'crop_height_px', 'beam_center_x_px', 'beam_center_y_px',
                 'crop_center_x_px', 'crop_center_y_px', 'binning_enabled', 'bin_size_x', 'bin_size_y')
#: Bad pixels of the 32 px sample: (0, 0) and (31, 2) fall outside the centred 16 px crop (8:24).
BAD = ([0, 9, 12, 20, 23, 31], [0, 8, 15, 11, 23, 2])


@dataclass
class SaveRobot(ModalRobot):
    """Ptychodus's Save dialog as a user answers it: our filter, a typed name, Save; writer errors kept."""

    captions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def _prepare(self, dialog: QFileDialog) -> None:
        self.captions.append(dialog.windowTitle())

    def _ready(self, dialog: QFileDialog) -> bool:
        return dialog.selectedNameFilter() == self.name_filter

    def _answer_other(self, dialog: QWidget) -> bool:
        if isinstance(dialog, QMessageBox):  # Ptychodus's ExceptionDialog for a writer error
            self.errors.append(f'{dialog.text()} {dialog.informativeText()}')
            dialog.reject()
        return False  # a writer error may follow the accepted dialog: keep watching


def _sample(folder: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Our simulated PtychoPINN NPZ (32 px, 5 x 5 scan) with a ``bad_pixels`` mask added."""
    path = folder / 'pinn_scan.npz'
    arrays = write_sample(path, pattern_px=PATTERN_PX, scan_side=SCAN_SIDE)
    mask = np.zeros((PATTERN_PX, PATTERN_PX), dtype=bool)
    mask[BAD] = True
    arrays['bad_pixels'] = mask
    write_npz(path, dict(arrays))
    return path, arrays


def _set_crop(settings: Any, crop_px: int | None) -> None:
    """What the Open Dataset wizard sets: crop on/off, its centre (our reader's N//2) and size."""
    settings.crop_enabled.set_value(crop_px is not None)
    if crop_px is not None:
        prefix = 'beam_center' if hasattr(settings, 'beam_center_x_px') else 'crop_center'  # 1.5.1: crop_center
        getattr(settings, f'{prefix}_x_px').set_value(PATTERN_PX // 2)
        getattr(settings, f'{prefix}_y_px').set_value(PATTERN_PX // 2)
        settings.crop_width_px.set_value(crop_px)
        settings.crop_height_px.set_value(crop_px)


def _open(gui: Gui, path: Path, crop_px: int | None, *, patterns: int = SCAN_SIDE**2) -> tuple[int, int]:
    """Dataset and product opened in the GUI's model; their rows in the two repositories.

    ``crop_px`` ``-1``: leave the diffraction settings as they are (the caller set them).
    """
    model = gui.model
    if crop_px != -1:
        _set_crop(model.diffraction_core.diffraction_settings, crop_px)
    datasets = model.diffraction_core.repository
    products = model.product_core.product_repository
    dataset = model.workflow_api.load_diffraction_data(path, file_type=plugin.NPZ_SIMPLE_NAME, block=True)
    model.run_tasks()
    gui.pump(lambda: len(dataset.get_assembled_data().get_patterns()) == patterns, what='the patterns')
    before = len(products)
    model.workflow_api.load_product(path, file_type=plugin.NPZ_SIMPLE_NAME, diffraction=dataset)
    gui.pump(lambda: len(products) > before and not products[len(products) - 1].is_pending(), what='the product')
    gui.settle(0.3)
    return len(datasets) - 1, len(products) - 1


def _save(gui: Gui, trigger: Callable[[], None], path: Path) -> SaveRobot:
    robot = SaveRobot(path, OUR_FILTER)
    robot.start()
    try:
        trigger()  # returns when the modal dialog has closed and the writer has run (or failed)
    finally:
        robot.done = True
    gui.pump(lambda: robot.errors or path.exists() or (robot.log and 'gave up' in robot.log[-1]),
             what=f'{path.name} (robot log: {robot.log})')
    gui.settle(0.3)
    assert not robot.errors, robot.errors
    return robot


def save_diffraction(gui: Gui, row: int, path: Path) -> SaveRobot:
    """Select the dataset row in the diffraction tree, then Save › Save File…."""
    tree = diffraction_view(gui.view).tree_view
    tree.setCurrentIndex(tree.model().index(row, 0))
    gui.settle(0.2)
    assert diffraction_view(gui.view).button_box.save_button.isEnabled()
    action = _action(diffraction_view(gui.view).button_box.save_menu, 'Save File...')
    return _save(gui, action.trigger, path)


def save_product(gui: Gui, row: int, path: Path) -> SaveRobot:
    """Select the product row in the Products table, then Save › Save File…."""
    table = gui.view.product_view.table_view
    table.setCurrentIndex(table.model().index(row, 0))
    gui.settle(0.2)
    assert gui.view.product_view.button_box.save_button.isEnabled()
    action = _action(gui.view.product_view.button_box.save_menu, 'Save File...')
    return _save(gui, action.trigger, path)


@pytest.fixture(scope='module')
def saves(gui: Gui, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both saves without a crop, with the centred 16 px crop, with 2x2 binning, and with
    Ptychodus's default settings (crop 64 x 64 around (32, 32)) on a 96 px dataset."""
    folder = tmp_path_factory.mktemp('gui_saves')
    path, arrays = _sample(folder)
    big = folder / 'pinn_big.npz'
    big_arrays = write_sample(big, pattern_px=BIG_PX, scan_side=3)
    settings = gui.model.diffraction_core.diffraction_settings
    defaults = {name: getattr(settings, name).get_value() for name in DEFAULT_NAMES if hasattr(settings, name)}
    result: dict[str, Any] = {'arrays': arrays, 'source': path, 'defaults': defaults, 'big_arrays': big_arrays}
    for case in CASES:
        source, crop, patterns = path, CROP_PX if case == 'crop' else None, SCAN_SIDE**2
        settings.binning_enabled.set_value(case == 'binned')
        settings.bin_size_x.set_value(2 if case == 'binned' else 1)
        settings.bin_size_y.set_value(2 if case == 'binned' else 1)
        if case == 'default':
            for name, value in defaults.items():
                getattr(settings, name).set_value(value)
            source, crop, patterns = big, -1, 9
        row, product_row = _open(gui, source, crop, patterns=patterns)
        dataset = gui.model.diffraction_core.repository[row]
        held = np.asarray(dataset.get_assembled_data().get_patterns()).copy()
        held_bad = np.asarray(dataset.get_assembled_data().get_bad_pixels()).copy()
        diffraction = folder / f'{case}_diffraction.npz'
        product = folder / f'{case}_product.npz'
        robots = (save_diffraction(gui, row, diffraction), save_product(gui, product_row, product))
        result[case] = {'diffraction': diffraction, 'product': product, 'held': held, 'held_bad': held_bad,
                        'robots': robots}
    _set_crop(settings, None)
    settings.binning_enabled.set_value(False)
    return result


def _load(path: Path) -> dict[str, np.ndarray]:
    """Every array but ``_metadata`` (PtychoPINN's pickled 0-d object; read by our archive, never unpickled)."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files if key != '_metadata'}
        if '_metadata' in npz.files:
            arrays['_metadata'] = np.asarray(True)  # present
    return arrays


def as_ptychodus_holds(arrays: dict[str, np.ndarray], rows: slice = slice(None)) -> np.ndarray:
    """The sample's amplitudes as Ptychodus assembles them: bad pixels set to 0 (its own masking)."""
    amplitude = np.where(arrays['bad_pixels'], 0.0, arrays['diffraction']).astype(np.float32)
    return amplitude[:, rows, rows]


def test_both_dialogs_offered_our_filter_and_it_was_chosen(saves: dict[str, Any], gui: Gui) -> None:
    diffraction_robot, product_robot = saves['full']['robots']
    registry = gui.model.plugin_registry
    assert diffraction_robot.captions == ['Save Diffraction File']
    assert diffraction_robot.seen_filters == [p.display_name for p in registry.diffraction_file_writers]
    assert product_robot.captions == ['Save Product']
    assert product_robot.seen_filters == [p.display_name for p in registry.product_file_writers]
    for robot in (diffraction_robot, product_robot):
        assert robot.seen_filters.count(OUR_FILTER) == 1
        assert robot.log[0] == 'file dialog accepted', robot.log
    assert type(registry.diffraction_file_writers.get_current_plugin().strategy) is plugin.NPZDiffractionFileWriter
    assert type(registry.product_file_writers.get_current_plugin().strategy) is plugin.NPZProductFileWriter


def test_uncropped_diffraction_save(saves: dict[str, Any]) -> None:
    """32 px patterns as Ptychodus held them: amplitude ** 2 == held intensities, full mask."""
    case, arrays = saves['full'], saves['arrays']
    saved = _load(case['diffraction'])
    assert saved['diffraction'].shape == (SCAN_SIDE**2, PATTERN_PX, PATTERN_PX) == case['held'].shape
    np.testing.assert_allclose(saved['diffraction'].astype(np.float64) ** 2, case['held'], rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(saved['diffraction'], as_ptychodus_holds(arrays), rtol=1e-6, atol=0)
    np.testing.assert_array_equal(saved['bad_pixels'], arrays['bad_pixels'])
    assert not np.any(saved['diffraction'][:, arrays['bad_pixels']])  # Ptychodus zeroes them
    np.testing.assert_array_equal(saved['pattern_indexes'], np.arange(SCAN_SIDE**2))
    assert str(saved['diffraction_domain']) == 'amplitude'


def test_cropped_diffraction_save_has_16_px_patterns_and_cropped_mask(saves: dict[str, Any]) -> None:
    """The centred crop (rows/cols 8:24 of 32): patterns and bad pixels at 16 x 16, not the raw 32."""
    case, arrays = saves['crop'], saves['arrays']
    lo, hi = PATTERN_PX // 2 - CROP_PX // 2, PATTERN_PX // 2 + CROP_PX // 2
    saved = _load(case['diffraction'])
    assert saved['diffraction'].shape == (SCAN_SIDE**2, CROP_PX, CROP_PX) == case['held'].shape
    np.testing.assert_allclose(saved['diffraction'], as_ptychodus_holds(arrays, slice(lo, hi)), rtol=1e-6, atol=0)
    assert saved['bad_pixels'].shape == (CROP_PX, CROP_PX)
    np.testing.assert_array_equal(saved['bad_pixels'], arrays['bad_pixels'][lo:hi, lo:hi])
    np.testing.assert_array_equal(saved['bad_pixels'], case['held_bad'])
    assert int(saved['bad_pixels'].sum()) == 4  # two of the six lie outside the crop


def test_diffraction_saves_reopen_with_our_reader(saves: dict[str, Any]) -> None:
    """Our Ptychodus reader opens each saved file at the saved (processed) shape, mask included."""
    reader = plugin.NPZDiffractionFileReader()
    for case, n in (('full', PATTERN_PX), ('crop', CROP_PX)):
        dataset = reader.read(saves[case]['diffraction'])
        metadata = dataset.get_metadata()
        assert (metadata.detector_extent.width_px, metadata.detector_extent.height_px) == (n, n)
        patterns = np.concatenate([np.asarray(array.get_patterns()) for array in dataset])
        np.testing.assert_allclose(patterns, saves[case]['held'], rtol=2e-6, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(dataset.get_bad_pixels()), saves[case]['held_bad'])


def test_product_saves_carry_probe_object_and_positions(saves: dict[str, Any]) -> None:
    """The product NPZ: PtychoPINN's probe, object and xcoords/ycoords, whatever the crop."""
    arrays = saves['arrays']
    for case in ('full', 'crop'):
        saved = _load(saves[case]['product'])
        np.testing.assert_array_equal(saved['probeGuess'], arrays['probeGuess'])
        np.testing.assert_array_equal(saved['objectGuess'], arrays['objectGuess'])
        np.testing.assert_allclose(saved['xcoords'], arrays['xcoords'], atol=1e-6, rtol=0)
        np.testing.assert_allclose(saved['ycoords'], arrays['ycoords'], atol=1e-6, rtol=0)
        product = plugin.NPZProductFileReader().read(saves[case]['product'])
        assert len(product.probe_positions) == SCAN_SIDE**2


def test_neither_gui_save_is_a_training_file_by_itself(saves: dict[str, Any]) -> None:
    """Why the GUI route ends in two files: patterns in one, probe and positions in the other."""
    diffraction = _load(saves['full']['diffraction'])
    product = _load(saves['full']['product'])
    assert {'probeGuess', 'xcoords', 'ycoords'}.isdisjoint(diffraction)
    assert {'diffraction', 'diff3d'}.isdisjoint(product)


def test_training_data_joins_the_two_gui_saves(
    saves: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The two files the GUI saved -> ``ptychopinn-ptychodus training-data`` -> one training NPZ.

    Uncropped, the two saves make one training file. After the 16 px crop the product
    still holds the 32 px probe it was opened with (it was not reconstructed at the
    crop), and PtychoPINN needs the probe at the pattern size: refused in one line,
    nothing written (PtychoPINN's own training set-up was seen failing on such a file).
    """
    from ptychopinn_ptychodus.cli.tool import main

    arrays = saves['arrays']
    for case in ('full', 'crop'):
        out = tmp_path / f'{case}_train.npz'
        argv = ['training-data', str(saves[case]['diffraction']), '--diffraction-reader', plugin.NPZ_SIMPLE_NAME,
                '--product', str(saves[case]['product']), '--product-reader', plugin.NPZ_SIMPLE_NAME,
                '-o', str(out), '--quiet']
        if case == 'crop':
            capsys.readouterr()
            assert main(argv) == 1
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and 'the probe is 32x32 but the patterns are 16x16' in err[0], err
            assert str(out) in err[0] and not out.exists()
            continue
        assert main(argv) == 0
        got = assert_ptychopinn_loads(out)
        expected = as_ptychodus_holds(arrays, slice(None))
        assert got['diff3d'].shape == (SCAN_SIDE**2, PATTERN_PX, PATTERN_PX)
        np.testing.assert_allclose(got['diff3d'], expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got['xcoords'], arrays['xcoords'], atol=1e-6, rtol=0)
        np.testing.assert_allclose(got['ycoords'], arrays['ycoords'], atol=1e-6, rtol=0)
        np.testing.assert_array_equal(got['probeGuess'], arrays['probeGuess'])
        np.testing.assert_array_equal(got['bad_pixels'], saves[case]['held_bad'])


@pytest.mark.parametrize('case', CASES)
def test_every_diffraction_save_is_what_ptychodus_held(saves: dict[str, Any], case: str) -> None:
    """Whatever the processing, the saved stack and mask are what Ptychodus held, at its shape."""
    held, held_bad = saves[case]['held'], saves[case]['held_bad']
    expected_px = {'full': PATTERN_PX, 'crop': CROP_PX, 'binned': PATTERN_PX // 2, 'default': 64}[case]
    assert held.shape[1:] == (expected_px, expected_px)
    saved = _load(saves[case]['diffraction'])
    assert saved['diffraction'].shape == held.shape
    np.testing.assert_allclose(saved['diffraction'].astype(np.float64) ** 2, held, rtol=2e-6, atol=1e-6)
    np.testing.assert_array_equal(saved['bad_pixels'], held_bad)


def test_default_settings_crop_the_corner_of_larger_patterns(saves: dict[str, Any]) -> None:
    """Ptychodus's start-up crop is 64 x 64 around (32, 32): of a 96 px pattern, the top-left corner."""
    defaults = saves['defaults']
    assert defaults['crop_enabled'] and defaults['crop_width_px'] == defaults['crop_height_px'] == 64
    centre = [value for name, value in defaults.items() if name.endswith('center_x_px')]
    assert centre == [32]
    corner = np.asarray(saves['big_arrays']['diffraction'], np.float64)[:, :64, :64] ** 2
    np.testing.assert_allclose(saves['default']['held'], corner, rtol=2e-6, atol=1e-6)
