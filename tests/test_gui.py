"""The real Ptychodus main window opens a PtychoPINN NPZ through its Open Product dialog.

How the GUI is driven (nothing of Ptychodus or Qt is mocked):

1. The window is built exactly as ``ptychodus/__main__.py`` builds it:
   ``ModelCore()`` entered as a context, ``QApplication``, ``ViewCore``,
   ``ControllerCore(model, view)``, ``controller.show_main_window(...)``, with
   ``QT_QPA_PLATFORM=offscreen``.
2. The diffraction data are loaded into the same ``ModelCore`` with
   ``workflow_api.load_diffraction_data(..., file_type='PtychoPINN_NPZ')`` (the
   GUI's multi-page Open Dataset wizard ends in that same ``open_patterns`` call).
3. The Products panel's "Insert > Open File..." ``QAction`` is triggered. Its
   slot (``ProductController._open_product_from_file``) builds a real
   ``QFileDialog`` from ``ProductAPI.get_open_file_filters()`` (the display names
   of the ``product_file_readers`` chooser) and runs it modally with ``exec()``.
   Ptychodus does not use ``QFileDialog.getOpenFileName``.
4. While it is modal, a ``QTimer`` plays the user: it reads the dialog's
   ``nameFilters()``, selects our filter, waits until the dialog's own file list
   shows the NPZ under that filter, types the file name into the dialog's
   ``fileNameEdit`` and calls ``accept()``. Ptychodus then asks which diffraction
   dataset to bind (``QInputDialog.getItem``); the timer picks the loaded one.
5. The test pumps ``QApplication.processEvents()`` and ``ModelCore.run_tasks()``
   until the product repository holds the new product, then checks it and saves
   screenshots (``QWidget.grab().save``) of the Products, Object, Probe and
   Positions views.

Position convention expected: PtychoPINN's own (the default): Ptychodus object
pixel = ``xcoords - (N // 2 - (N - 1) / 2)`` (``helpers.ptychopinn_pixels``).
"""

from __future__ import annotations

import gc
import os

os.environ['QT_QPA_PLATFORM'] = 'offscreen'  # before any Qt import

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import product_pixels, ptychopinn_pixels
from PyQt5.QtCore import QTimer
from PyQt5.QtGui import QImage
from PyQt5.QtWidgets import (
    QApplication,
    QFileDialog,
    QInputDialog,
    QLineEdit,
    QListView,
    QToolButton,
    QWidget,
)

from ptychopinn_ptychodus import plugin
from ptychopinn_ptychodus.cli.sample import write_sample
from ptychopinn_ptychodus.host import compat

pytestmark = pytest.mark.gui

OUR_FILTER = plugin.NPZ_DISPLAY_NAME
ARTIFACTS = Path(
    os.environ.get('TEST_ARTIFACTS_DIR') or Path(__file__).resolve().parents[1] / 'test-artifacts'
)
SCAN_SIDE = 5


@dataclass
class Gui:
    app: QApplication
    model: Any
    view: Any
    controller: Any

    def pump(self, until: Callable[[], bool], timeout: float = 20.0, what: str = 'condition') -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f'timed out after {timeout} s waiting for {what}')
            self.model.run_tasks()
            self.app.processEvents()
            time.sleep(0.01)

    def settle(self, seconds: float = 0.3) -> None:
        end = time.monotonic() + seconds
        self.pump(lambda: time.monotonic() > end, timeout=seconds + 5)


@pytest.fixture(scope='module')
def gui() -> Iterator[Gui]:
    import ptychodus
    from ptychodus.model import ModelCore

    with ModelCore() as model:
        app = QApplication.instance() or QApplication(['ptychodus'])
        from ptychodus.view import ViewCore

        view = ViewCore(is_developer_mode_enabled=model.is_developer_mode_enabled)
        from ptychodus.controller import ControllerCore

        controller = ControllerCore(model, view, is_developer_mode_enabled=model.is_developer_mode_enabled)
        controller.show_main_window(ptychodus.VERSION_STRING)
        view.resize(1400, 900)
        handle = Gui(app, model, view, controller)
        handle.settle(0.2)
        try:
            yield handle
        finally:
            # tear the widgets down while the model and the application are alive, so
            # nothing Qt-owned is left for the garbage collector to destroy later
            view.close()
            view.deleteLater()
            app.processEvents()
            del handle, controller, view
            gc.collect()
            app.processEvents()


@dataclass
class ModalRobot:
    """Plays the user at Ptychodus's modal dialogs: a ``QTimer`` polls the active modal widget.

    A file dialog is first prepared (the filter the user picks, the folder), then
    answered on a later tick once :meth:`_ready` holds; subclasses say what else
    they answer in :meth:`_answer_other` and record what they saw.
    """

    file_path: Path
    name_filter: str
    timeout: float = 15.0
    seen_filters: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    done: bool = False  # set by the caller once the triggered slot has returned: polling stops
    _deadline: float = 0.0
    _prepared: Any = None

    def start(self) -> None:
        self._deadline = time.monotonic() + self.timeout
        QTimer.singleShot(20, self._tick)

    def _tick(self) -> None:
        if self.done:
            return
        dialog = QApplication.activeModalWidget()
        if time.monotonic() > self._deadline:
            self.log.append(f'gave up; modal widget {type(dialog).__name__}')
            if dialog is not None and hasattr(dialog, 'reject'):
                dialog.reject()
            return
        if isinstance(dialog, QFileDialog):
            if self._prepared is not dialog:
                self._prepared = dialog
                self.seen_filters = list(dialog.nameFilters())
                self._prepare(dialog)
                dialog.selectNameFilter(self.name_filter)
                dialog.setDirectory(str(self.file_path.parent))
            else:
                ready = self._ready(dialog)
                dialog.findChild(QLineEdit, 'fileNameEdit').setText(self.file_path.name)  # the user types it
                if ready and dialog.selectedFiles() == [str(self.file_path)]:
                    self._accepting(dialog)
                    dialog.accept()
                    self.log.append('file dialog accepted')
        elif dialog is not None and self._answer_other(dialog):
            return  # nothing further is modal
        QTimer.singleShot(20, self._tick)

    def _prepare(self, dialog: QFileDialog) -> None:
        """Record what the dialog offered before the user changes anything."""

    def _ready(self, dialog: QFileDialog) -> bool:
        """Whether the user would press the button now."""
        return True

    def _accepting(self, dialog: QFileDialog) -> None:
        """Just before the dialog is accepted."""

    def _answer_other(self, dialog: QWidget) -> bool:
        """Answer a modal widget that is not a file dialog; True when the robot is finished."""
        return False


@dataclass
class DialogRobot(ModalRobot):
    """The open dialogs: our filter, the file once the dialog lists it, then the dataset to open."""

    dataset_label: str = ''
    initial_filter: str = ''
    listed_files: list[str] = field(default_factory=list)
    disabled_files: list[str] = field(default_factory=list)
    dataset_choices: list[str] = field(default_factory=list)
    dialog_shot: Path | None = None

    def _prepare(self, dialog: QFileDialog) -> None:
        self.initial_filter = dialog.selectedNameFilter()

    def _ready(self, dialog: QFileDialog) -> bool:
        # Wait until the dialog's own file list, filtered by our glob, shows the file.
        from PyQt5.QtCore import Qt

        view = dialog.findChild(QListView, 'listView')
        model = view.model()
        root = view.rootIndex()
        rows = [model.index(r, 0, root) for r in range(model.rowCount(root))]
        self.listed_files = [str(index.data()) for index in rows]
        self.disabled_files = [str(i.data()) for i in rows if not (i.flags() & Qt.ItemFlag.ItemIsEnabled)]
        return self.file_path.name in self.listed_files

    def _accepting(self, dialog: QFileDialog) -> None:
        self.dialog_shot = _save_grab(dialog, 'gui_open_dialog.png')  # for the GUI how-to

    def _answer_other(self, dialog: QWidget) -> bool:
        if not isinstance(dialog, QInputDialog):
            return False
        self.dataset_choices = list(dialog.comboBoxItems())
        if self.dataset_label in self.dataset_choices:
            dialog.setTextValue(self.dataset_label)
            self.log.append(f'dataset {self.dataset_label!r} chosen')
            dialog.accept()
        else:
            self.log.append(f'dataset {self.dataset_label!r} not offered: {self.dataset_choices}')
            dialog.reject()
        return True


def diffraction_view(view: Any) -> Any:
    """The main window's diffraction-dataset pane: ``diffraction_view`` from 1.6, ``datasets_view`` in 1.5.1."""
    return getattr(view, 'diffraction_view', None) or view.datasets_view


def _action(menu_owner: Any, text: str) -> Any:
    actions = {a.text(): a for a in menu_owner.actions()}
    assert text in actions, f'no {text!r} action; have {sorted(actions)}'
    return actions[text]


def _tick_plot_box(gui: Gui) -> None:
    """Tick the "Plot" box of the first row of the Positions table, as a user clicks it."""
    from PyQt5.QtCore import Qt

    table = gui.view.probe_positions_view.table_view.model()
    assert table.setData(table.index(0, 1), Qt.CheckState.Checked, Qt.ItemDataRole.CheckStateRole)


def _screenshot(gui: Gui, name: str, *, show: Any = None, zoom: QWidget | None = None,
                before: Callable[[Gui], None] | None = None) -> Path:
    if show is not None:
        show.trigger()
    gui.settle(0.3)
    if before is not None:
        before(gui)
        gui.settle(0.3)
    if zoom is not None:
        for button in zoom.findChildren(QToolButton):
            if button.toolTip() == 'Home':
                button.click()
        gui.settle(0.3)
    return _save_grab(gui.view, name)


def _save_grab(widget: QWidget, name: str) -> Path:
    """``widget.grab()`` saved as ``ARTIFACTS/name`` (docs/_static/screenshots shows some)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    pixmap = widget.grab()
    assert not pixmap.isNull()
    assert pixmap.save(str(path)), f'could not write {path}'
    print(f'screenshot: {path}')
    return path


def _distinct_colours(widget: QWidget) -> int:
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    pixels = np.frombuffer(ptr, dtype=np.uint32).copy()
    return int(np.unique(pixels).size)


@pytest.fixture(scope='module')
def sample(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp('gui')
    path = folder / 'pinn_scan.npz'
    arrays = write_sample(path, pattern_px=32, scan_side=SCAN_SIDE, object_kind='star')  # the docs show it
    (folder / 'decoy.txt').write_text('not a PtychoPINN file', encoding='utf-8')
    return path, arrays


@pytest.fixture(scope='module')
def opened(gui, sample) -> dict[str, Any]:
    """Open the sample through the GUI once; the tests below inspect the result."""
    path, arrays = sample
    model = gui.model
    model.diffraction_core.diffraction_settings.crop_enabled.set_value(False)
    diffraction = model.workflow_api.load_diffraction_data(path, file_type=plugin.NPZ_SIMPLE_NAME, block=True)
    gui.settle(0.2)
    repository = model.product_core.product_repository
    before = len(repository)

    robot = DialogRobot(file_path=path, name_filter=OUR_FILTER, dataset_label=path.stem)
    open_action = _action(gui.view.product_view.button_box.insert_menu, 'Open File...')
    robot.start()
    open_action.trigger()  # returns once both modal dialogs are closed
    gui.pump(lambda: len(repository) > before and not repository[len(repository) - 1].is_pending(),
             what=f'the product to load (robot log: {robot.log})')
    gui.settle(0.5)
    return {'robot': robot, 'diffraction': diffraction, 'item': repository[len(repository) - 1],
            'arrays': arrays, 'path': path, 'count': len(repository) - before}


def test_open_product_dialog_lists_our_filter(opened, gui):
    robot = opened['robot']
    assert OUR_FILTER == 'PtychoPINN NumPy Zipped Archive (*.npz)'
    assert OUR_FILTER in robot.seen_filters, robot.seen_filters
    # Built by Ptychodus from the product_file_readers chooser: every display name, once.
    chooser = gui.model.plugin_registry.product_file_readers
    assert robot.seen_filters == [p.display_name for p in chooser]
    assert robot.seen_filters.count(OUR_FILTER) == 1
    assert plugin.H5_DISPLAY_NAME in robot.seen_filters
    # The GUI how-to says the dialog opens on Ptychodus's own filter, so the user picks ours.
    assert robot.initial_filter != OUR_FILTER, robot.initial_filter
    assert robot.initial_filter in robot.seen_filters
    assert robot.dialog_shot is not None and robot.dialog_shot.stat().st_size > 5_000


def test_our_filter_glob_shows_the_npz_in_the_dialog(opened):
    robot = opened['robot']
    assert opened['path'].name in robot.listed_files
    assert 'decoy.txt' not in robot.listed_files or 'decoy.txt' in robot.disabled_files


def test_dialog_and_dataset_prompt_were_answered(opened):
    robot = opened['robot']
    assert robot.log[:2] == ['file dialog accepted', f"dataset '{opened['path'].stem}' chosen"], robot.log
    assert '(unbound)' in robot.dataset_choices or len(robot.dataset_choices) >= 2


def test_product_is_in_the_repository_with_every_position(opened, gui):
    arrays = opened['arrays']
    item = opened['item']
    assert opened['count'] == 1
    assert not item.is_failed()
    product = item.get_product()
    assert product.metadata.name == opened['path'].stem
    assert len(product.probe_positions) == SCAN_SIDE**2 == len(arrays['xcoords'])
    indexes, _, _ = compat.position_arrays(product.probe_positions)  # get_indexes() exists only in 1.7
    np.testing.assert_array_equal(indexes, np.arange(SCAN_SIDE**2))
    x_px, y_px = product_pixels(product)
    expected_x, expected_y = ptychopinn_pixels(arrays)  # xcoords - 0.5 for an even probe
    np.testing.assert_allclose(x_px, expected_x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(product.object_.get_layer(0)), arrays['objectGuess'])
    np.testing.assert_array_equal(np.asarray(product.probes.get_array()).reshape(arrays['probeGuess'].shape),
                                  arrays['probeGuess'])
    # Bound to the dataset the user picked, whose patterns are the squared amplitudes.
    dataset = item.get_dataset()
    assert dataset is not None
    np.testing.assert_allclose(dataset.get_assembled_data().get_patterns(),
                               np.square(arrays['diffraction'].astype(np.float32)), rtol=1e-6, atol=0)
    # The reader the dialog's filter selected is ours.
    current = gui.model.plugin_registry.product_file_readers.get_current_plugin()
    assert current.display_name == OUR_FILTER
    assert type(current.strategy) is plugin.NPZProductFileReader


def test_products_table_shows_the_product(opened, gui):
    table = gui.view.product_view.table_view.model()
    names = [str(table.index(row, 0).data()) for row in range(table.rowCount())]
    assert opened['path'].stem in names


def test_screenshots_of_the_loaded_product(opened, gui):
    view = gui.view
    shots = [
        _screenshot(gui, 'gui_products.png', show=view.product_action),
        _screenshot(gui, 'gui_object.png', show=view.object_action, zoom=view.object_image_view),
        _screenshot(gui, 'gui_probe.png', show=view.probe_action, zoom=view.probe_image_view),
        _screenshot(gui, 'gui_positions.png', show=view.positions_action, before=_tick_plot_box),
    ]
    for shot in shots:
        assert shot.is_file() and shot.stat().st_size > 10_000, shot
    # The object and probe panes draw the arrays (a blank pane has a handful of colours).
    view.object_action.trigger()
    gui.settle(0.2)
    assert _distinct_colours(view.object_image_view) > 50
    view.probe_action.trigger()
    gui.settle(0.2)
    assert _distinct_colours(view.probe_image_view) > 50
