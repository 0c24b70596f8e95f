"""A PtychoPINN reconstruction without a diffraction stack, opened in Ptychodus with object and probe.

Ptychodus (1.5.1, 1.6, 1.7) takes a product's object and probe pixel geometry from
the dataset the product is bound to; unbound, Run1084 showed an empty (1, 0, 0)
object. Our diffraction readers therefore offer, for a file without a stack, a
*geometry-only* dataset: zero patterns (nothing measured is invented), the probe's
size as detector extent and the detector pixel that gives back the file's object
pixel. Checked here with Ptychodus's own ``ModelCore``: object and probe equal the
file's arrays, positions land on the object pixels PtychoPINN's convention gives
(host mapping, 1e-6 px), and saving the product works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import ptychopinn_pixels
from ptychodus.api.io import load_product
from ptychodus.model import ModelCore

from ptychopinn_ptychodus import export_product, plugin
from ptychopinn_ptychodus.host.compat import host_object_pixels
from ptychopinn_ptychodus.host.plugin import GEOMETRY_ONLY

RUN1084 = 'run1084_recon3_postPC.npz'


def open_pair(core: ModelCore, path: Path, file_type: str) -> tuple[Any, Any]:
    wf = core.workflow_api
    diffraction = wf.load_diffraction_data(path, file_type=file_type, block=True)
    core.run_tasks()
    product = wf.load_product(path, file_type=file_type, diffraction=diffraction)
    core.run_tasks()
    return product, product.get_product()


@pytest.fixture
def run1084(shared_data: Path) -> tuple[Path, dict[str, np.ndarray]]:
    path = shared_data / RUN1084
    with np.load(path, allow_pickle=False) as z:
        arrays = {key: z[key] for key in z.files}
    assert 'diffraction' not in arrays and 'diff3d' not in arrays
    return path, arrays


def test_reader_offers_a_labelled_geometry_only_dataset(run1084: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, arrays = run1084
    dataset = plugin.NPZDiffractionFileReader().read(path)
    assert len(list(dataset)) == 0  # no patterns: nothing to reconstruct from
    extent = dataset.get_metadata().detector_extent
    assert (extent.height_px, extent.width_px) == arrays['probeGuess'].shape
    labels = [child.name for child in dataset.get_layout().children] if hasattr(
        dataset.get_layout(), 'children') else []
    if labels:
        assert labels[0] == GEOMETRY_ONLY


def assert_shows_the_file(product: Any, arrays: dict[str, np.ndarray]) -> None:
    obj = np.asarray(product.object_.get_array())
    probe = np.asarray(product.probes.get_array())
    assert obj.shape[-2:] == arrays['objectGuess'].shape
    np.testing.assert_array_equal(obj.reshape(arrays['objectGuess'].shape), arrays['objectGuess'])
    np.testing.assert_array_equal(probe.reshape(arrays['probeGuess'].shape), arrays['probeGuess'])
    x_px, y_px = host_object_pixels(product.object_.get_geometry(), product.probe_positions)
    expected_x, expected_y = ptychopinn_pixels(arrays)
    np.testing.assert_allclose(x_px, expected_x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, rtol=0, atol=1e-6)


def test_run1084_npz_opens_with_object_and_probe(run1084: tuple[Path, dict[str, np.ndarray]],
                                                 tmp_path: Path) -> None:
    path, arrays = run1084
    with ModelCore() as core:
        workflow, product = open_pair(core, path, plugin.NPZ_SIMPLE_NAME)
        assert_shows_the_file(product, arrays)
        out = tmp_path / 'saved.h5'
        workflow.save_product(out, file_type='HDF5')  # failed "Missing object pixel geometry!" unbound
        back = load_product(out)
    assert_shows_the_file(back, arrays)


def test_run1084_converted_h5_opens_with_object_and_probe(run1084: tuple[Path, dict[str, np.ndarray]],
                                                          tmp_path: Path) -> None:
    path, arrays = run1084
    h5 = tmp_path / 'run1084.h5'
    export_product(path, h5)
    with ModelCore() as core:
        workflow, product = open_pair(core, h5, plugin.H5_SIMPLE_NAME)
        assert_shows_the_file(product, arrays)
        out = tmp_path / 'saved.npz'
        workflow.save_product(out, file_type=plugin.NPZ_SIMPLE_NAME)
    with np.load(out, allow_pickle=False) as z:
        np.testing.assert_array_equal(z['objectGuess'], arrays['objectGuess'])


@pytest.mark.parametrize('reader', [plugin.NPZ_SIMPLE_NAME, plugin.H5_SIMPLE_NAME])
def test_reconstruct_refuses_the_geometry_only_dataset(run1084: tuple[Path, dict[str, np.ndarray]],
                                                       tmp_path: Path, reader: str) -> None:
    """Pressing Reconstruct must not fit anything to zeros: Ptychodus refuses an empty dataset itself.

    ``prepare_reconstruct_input`` (Ptychodus ``api/reconstruct.py``, 1.5.1, 1.6.0, 1.7.0) raises
    before any reconstructor runs; the GUI's Reconstruct button shows the same error.
    """
    path, arrays = run1084
    if reader == plugin.H5_SIMPLE_NAME:
        export_product(path, tmp_path / 'run1084.h5')
        path = tmp_path / 'run1084.h5'
    with ModelCore() as core:
        workflow, product = open_pair(core, path, reader)
        with pytest.raises(ValueError, match='Cannot prepare reconstruct input from empty diffraction dataset'):
            workflow.get_reconstruct_input()
        with pytest.raises(ValueError, match='Cannot prepare reconstruct input from empty diffraction dataset'):
            workflow.reconstruct_local(block=True)
        repository = core.product_core.product_repository
        for index in range(len(repository)):  # the output copy Ptychodus inserts first is untouched
            assert_shows_the_file(repository[index].get_product(), arrays)
