"""Ptychodus -> our NPZ writers -> our readers: nothing moves, nothing is lost.

Products come from Ptychodus itself (``ptychodus.api.io.save_product`` /
``load_product`` of a hand-built product with a deliberately awkward geometry:
non-square object, off-origin centre, odd pixel size), and are written either
through ``ModelCore`` (``save_product(..., file_type='PtychoPINN_NPZ')``) or
through the strategy registered in Ptychodus's chooser.

Position convention expected in the NPZ we write: PtychoPINN's own (the default),
``xcoords = j + (N // 2 - (N - 1) / 2)`` where ``j`` is Ptychodus's object pixel of
the position and N the probe width (height for ``ycoords``), recorded as
``position_convention = 'ptychopinn'``; reading it back gives the same metres.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers import our_npz_keys, product_pixels, ptychopinn_offset
from hypothesis import given, settings
from hypothesis import strategies as st
from ptychodus.api.geometry import PixelGeometry
from ptychodus.api.io import load_product, save_product
from ptychodus.api.object import Object, ObjectCenter
from ptychodus.api.probe import ProbeSequence
from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
from ptychodus.api.product import Product, ProductMetadata

from ptychopinn_ptychodus import plugin

NPZ = plugin.NPZ_SIMPLE_NAME


def handmade_product(
    *,
    num: int = 9,
    n: int = 16,
    width: int = 41,
    height: int = 37,
    pixel_m: tuple[float, float] = (23.7e-9, 23.7e-9),
    center_m: tuple[float, float] = (1.3e-6, -0.7e-6),
    modes: int = 1,
    seed: int = 3,
    name: str = 'handmade',
) -> Product:
    rng = np.random.default_rng(seed)
    obj = np.exp(1j * rng.uniform(-np.pi, np.pi, (height, width))).astype(np.complex64)
    probe = (rng.normal(size=(1, modes, n, n)) + 1j * rng.normal(size=(1, modes, n, n))).astype(np.complex64)
    col = rng.uniform(n / 2, width - n / 2, num)
    row = rng.uniform(n / 2, height - n / 2, num)
    x_m = center_m[0] + pixel_m[0] * (col - (width - 1) / 2)
    y_m = center_m[1] + pixel_m[1] * (row - (height - 1) / 2)
    geometry = PixelGeometry(width_m=pixel_m[0], height_m=pixel_m[1])
    return Product(
        metadata=ProductMetadata(
            name=name, comments='made by hand for the writer tests', detector_distance_m=1.7,
            photon_energy_eV=9100.0, probe_photon_count=0.0, exposure_time_s=0.25,
            mass_attenuation_m2_per_kg=0.0, tomography_angle_deg=12.5,
        ),
        probe_positions=ProbePositionSequence(
            [ProbePosition(i, float(x), float(y)) for i, (x, y) in enumerate(zip(x_m, y_m, strict=True))]
        ),
        probes=ProbeSequence(array=probe, opr_weights=None, pixel_geometry=geometry),
        object_=Object(array=obj, pixel_geometry=geometry,
                       center=ObjectCenter(x_m=center_m[0], y_m=center_m[1]), layer_spacing_m=[]),
        losses=[],
    )


def via_ptychodus_h5(product: Product, folder: Path) -> Product:
    """The product as Ptychodus itself stores and reloads it."""
    path = folder / f'{product.metadata.name}.h5'
    save_product(path, product)
    return load_product(path)


def assert_same_product(back: Product, source: Product, *, check_metadata: bool = True) -> None:
    x0 = np.asarray(source.probe_positions.get_coordinates_x_m())
    y0 = np.asarray(source.probe_positions.get_coordinates_y_m())
    x1 = np.asarray(back.probe_positions.get_coordinates_x_m())
    y1 = np.asarray(back.probe_positions.get_coordinates_y_m())
    np.testing.assert_allclose(x1, x0, rtol=1e-12, atol=0)
    np.testing.assert_allclose(y1, y0, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(back.probe_positions.get_indexes(), source.probe_positions.get_indexes())
    g0, g1 = source.object_.get_geometry(), back.object_.get_geometry()
    assert (g1.width_px, g1.height_px) == (g0.width_px, g0.height_px)
    for attr in ('pixel_width_m', 'pixel_height_m', 'center_x_m', 'center_y_m'):
        assert getattr(g1, attr) == pytest.approx(getattr(g0, attr), rel=1e-12, abs=0), attr
    np.testing.assert_array_equal(np.asarray(back.object_.get_layer(0)),
                                  np.asarray(source.object_.get_layer(0)))
    p0 = np.asarray(source.probes.get_array())
    p1 = np.asarray(back.probes.get_array())
    np.testing.assert_array_equal(p1.reshape(p0.shape), p0)
    pg0, pg1 = source.probes.get_pixel_geometry(), back.probes.get_pixel_geometry()
    assert pg1.width_m == pytest.approx(pg0.width_m, rel=1e-12)
    assert pg1.height_m == pytest.approx(pg0.height_m, rel=1e-12)
    if check_metadata:
        m0, m1 = source.metadata, back.metadata
        assert m1.name == m0.name
        assert m1.photon_energy_eV == pytest.approx(m0.photon_energy_eV, rel=1e-12)
        assert m1.detector_distance_m == pytest.approx(m0.detector_distance_m, rel=1e-12)
        assert m1.exposure_time_s == pytest.approx(m0.exposure_time_s, rel=1e-12)
        assert m1.tomography_angle_deg == pytest.approx(m0.tomography_angle_deg, rel=1e-12)


def check_written_npz(path: Path, source: Product) -> dict[str, np.ndarray]:
    """Plain numpy, no pickle: what PtychoPINN itself would load."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {key: z[key] for key in z.files if key != '_metadata'}  # _metadata: one pickled str
    # PtychoPINN convention: Ptychodus's object pixel (ObjectGeometry.map_probe_positions_to_object_*_px)
    # plus N // 2 - (N - 1) / 2 = 0.5 for these even probes -- unlike Ptychodus's own
    # save_ptychopinn_training_data, which writes the object pixel itself (identity).
    x_px, y_px = product_pixels(source)
    probe_height, probe_width = np.asarray(source.probes.get_array()).shape[-2:]
    assert our_npz_keys(path)['position_convention'] == 'ptychopinn'
    np.testing.assert_allclose(arrays['xcoords'], x_px + ptychopinn_offset(probe_width), rtol=0, atol=1e-9)
    np.testing.assert_allclose(arrays['ycoords'], y_px + ptychopinn_offset(probe_height), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(arrays['objectGuess'], np.asarray(source.object_.get_layer(0)))
    probe = np.asarray(source.probes.get_array())
    if probe.shape[1] == 1:
        assert arrays['probeGuess'].ndim == 2, arrays['probeGuess'].shape
        np.testing.assert_array_equal(arrays['probeGuess'], probe[0, 0])
    else:
        np.testing.assert_array_equal(arrays['probeGuess'], probe[0])
    return arrays


@pytest.mark.parametrize('modes', [1, 3])
def test_strategy_write_of_a_loaded_product_round_trips(registry, tmp_path, modes):
    source = via_ptychodus_h5(handmade_product(modes=modes), tmp_path)
    assert np.asarray(source.probes.get_array()).ndim == 4  # Ptychodus keeps [C, I, N, N]
    writer = registry.product_file_writers.get_strategy_by_name(NPZ)
    assert type(writer) is plugin.NPZProductFileWriter
    out = tmp_path / 'written.npz'
    writer.write(out, source)

    check_written_npz(out, source)
    reader = registry.product_file_readers.get_strategy_by_name(NPZ)
    assert_same_product(reader.read(out), source)


def test_model_core_save_product_as_ptychopinn_npz(core, sample_npz, tmp_path):
    sample, _ = sample_npz('patterns.npz')
    native = tmp_path / 'native.h5'
    save_product(native, handmade_product(num=9))

    wf = core.workflow_api
    diffraction = wf.load_diffraction_data(sample, file_type=NPZ, block=True)
    core.run_tasks()
    product = wf.load_product(native, file_type='HDF5', diffraction=diffraction)
    core.run_tasks()
    held = product.get_product()
    assert len(held.probe_positions) == 9

    out = tmp_path / 'from_ptychodus.npz'
    product.save_product(out, file_type=NPZ)
    current = core.plugin_registry.product_file_writers.get_current_plugin()
    assert current.simple_name == NPZ and type(current.strategy) is plugin.NPZProductFileWriter

    check_written_npz(out, held)
    back = core.plugin_registry.product_file_readers.get_strategy_by_name(NPZ).read(out)
    assert_same_product(back, held)
    assert_same_product(back, load_product(native))


@pytest.mark.parametrize('counts', [False, True], ids=['amplitude', 'uint16-counts'])
def test_diffraction_writer_stores_amplitude_and_reads_back_intensities(core, sample_npz, tmp_path, counts):
    sample, arrays = sample_npz('patterns.npz', key='diff3d' if counts else 'diffraction', counts=counts)
    intensities = (arrays['diff3d'].astype(np.float64) if counts
                   else np.square(arrays['diffraction'].astype(np.float32)))
    diffraction = core.workflow_api.load_diffraction_data(sample, file_type=NPZ, block=True)
    core.run_tasks()

    out = tmp_path / 'written_diffraction.npz'
    core.diffraction_core.diffraction_api.save_patterns(
        out, NPZ, dataset_index=diffraction.get_dataset_index())
    current = core.plugin_registry.diffraction_file_writers.get_current_plugin()
    assert current.simple_name == NPZ and type(current.strategy) is plugin.NPZDiffractionFileWriter

    with np.load(out, allow_pickle=False) as z:
        assert 'diffraction' in z.files and 'diff3d' not in z.files
        assert str(z['diffraction_domain']) == 'amplitude'
        amplitude = z['diffraction']
    assert amplitude.shape == intensities.shape
    assert amplitude.dtype.kind == 'f'
    np.testing.assert_allclose(amplitude, np.sqrt(intensities), rtol=1e-6, atol=0)
    if not counts:
        np.testing.assert_allclose(amplitude, arrays['diffraction'], rtol=1e-6, atol=0)

    again = core.workflow_api.load_diffraction_data(out, file_type=NPZ, block=True)
    core.run_tasks()
    np.testing.assert_allclose(again.get_assembled_data().get_patterns(), intensities, rtol=1e-6, atol=0)


@pytest.fixture(scope='module')
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('hypothesis')


@settings(max_examples=25, deadline=None)
@given(
    pixel=st.floats(1e-9, 1e-6),
    aspect=st.floats(0.5, 2.0),
    center=st.tuples(st.floats(-1e-3, 1e-3), st.floats(-1e-3, 1e-3)),
    size=st.tuples(st.integers(17, 48), st.integers(17, 48)),
    seed=st.integers(0, 2**16),
)
def test_positions_in_metres_survive_any_geometry(registry, scratch, pixel, aspect, center, size, seed):
    width, height = size
    source = handmade_product(num=5, n=8, width=width, height=height, pixel_m=(pixel, pixel * aspect),
                              center_m=center, seed=seed)
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        out = Path(folder) / 'p.npz'
        registry.product_file_writers.get_strategy_by_name(NPZ).write(out, source)
        back = registry.product_file_readers.get_strategy_by_name(NPZ).read(out)
    for getter in ('get_coordinates_x_m', 'get_coordinates_y_m'):
        x0 = np.asarray(getattr(source.probe_positions, getter)())
        x1 = np.asarray(getattr(back.probe_positions, getter)())
        # Relative to the coordinate, or to the frame's scale when a coordinate is ~0.
        scale = max(abs(center[0]), abs(center[1]), pixel * max(width, height) * max(1, aspect))
        np.testing.assert_allclose(x1, x0, rtol=1e-12, atol=1e-12 * scale)
