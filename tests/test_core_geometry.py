"""PtychoPINN pixels <-> Ptychodus metres, checked with Ptychodus's own ObjectGeometry."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import h5_attrs, product_pixels
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ptychodus.api.io import load_product
from ptychodus.api.object import ObjectGeometry

from ptychopinn_ptychodus import ExportMeta, export_product
from ptychopinn_ptychodus.geometry import ObjectGrid

CENTRE_X, CENTRE_Y = 1.3e-6, -0.7e-6
PIXEL_W, PIXEL_H = 4e-8, 6e-8


@pytest.fixture
def anisotropic_meta() -> ExportMeta:
    return ExportMeta(
        object_pixel_width_m=PIXEL_W,
        object_pixel_height_m=PIXEL_H,
        object_center_x_m=CENTRE_X,
        object_center_y_m=CENTRE_Y,
    )


@pytest.mark.parametrize('positions', ['actual', 'nominal'])
def test_positions_map_back_exactly_through_ptychodus(sample_npz, tmp_path, anisotropic_meta, positions):
    npz, arrays = sample_npz()
    out = tmp_path / 'out.h5'

    export_product(npz, out, anisotropic_meta, positions=positions)

    x_px, y_px = product_pixels(out)
    suffix = '_start' if positions == 'nominal' else ''
    np.testing.assert_allclose(x_px, arrays['xcoords' + suffix], rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, arrays['ycoords' + suffix], rtol=0, atol=1e-6)


def test_object_geometry_written_explicitly(sample_npz, tmp_path, anisotropic_meta):
    npz, arrays = sample_npz()
    out = tmp_path / 'out.h5'

    export_product(npz, out, anisotropic_meta)

    attrs = h5_attrs(out, 'object')
    assert attrs['pixel_width_m'] == PIXEL_W
    assert attrs['pixel_height_m'] == PIXEL_H
    assert attrs['center_x_m'] == CENTRE_X
    assert attrs['center_y_m'] == CENTRE_Y
    geometry = load_product(out).object_.get_geometry()
    height, width = arrays['objectGuess'].shape
    assert (geometry.width_px, geometry.height_px) == (width, height)
    assert (geometry.pixel_width_m, geometry.pixel_height_m) == (PIXEL_W, PIXEL_H)
    assert (geometry.center_x_m, geometry.center_y_m) == (CENTRE_X, CENTRE_Y)


def test_positions_are_metres_by_ptychodus_convention(sample_npz, tmp_path, anisotropic_meta):
    """x_m = centre + pixel * (j - (W - 1) / 2): pixel j of a W-pixel-wide object, whose middle
    ((W - 1) / 2) sits at the object centre, is where Ptychodus's ObjectGeometry puts it."""
    npz, arrays = sample_npz()
    out = tmp_path / 'out.h5'
    export_product(npz, out, anisotropic_meta)

    positions = load_product(out).probe_positions
    height, width = arrays['objectGuess'].shape
    expected_x = CENTRE_X + PIXEL_W * (arrays['xcoords'] - (width - 1) / 2)
    expected_y = CENTRE_Y + PIXEL_H * (arrays['ycoords'] - (height - 1) / 2)
    np.testing.assert_allclose(positions.get_coordinates_x_m(), expected_x, rtol=0, atol=1e-15)
    np.testing.assert_allclose(positions.get_coordinates_y_m(), expected_y, rtol=0, atol=1e-15)


def test_probe_pixel_size_defaults_to_object_pixel_size(sample_npz, tmp_path, anisotropic_meta):
    npz, _ = sample_npz()
    out = tmp_path / 'out.h5'

    export_product(npz, out, anisotropic_meta)

    attrs = h5_attrs(out, 'probe')
    assert (attrs['pixel_width_m'], attrs['pixel_height_m']) == (PIXEL_W, PIXEL_H)
    pixel = load_product(out).probes.get_pixel_geometry()
    assert (pixel.width_m, pixel.height_m) == (PIXEL_W, PIXEL_H)


def test_default_geometry_is_object_centre_zero_and_documented_pixel(sample_npz, tmp_path):
    npz, arrays = sample_npz()
    out = tmp_path / 'out.h5'

    export_product(npz, out)

    obj = h5_attrs(out, 'object')
    probe = h5_attrs(out, 'probe')
    assert obj['center_x_m'] == 0.0 and obj['center_y_m'] == 0.0
    assert obj['pixel_width_m'] == obj['pixel_height_m'] > 0
    assert probe['pixel_width_m'] == obj['pixel_width_m']
    x_px, _ = product_pixels(out)
    np.testing.assert_allclose(x_px, arrays['xcoords'], atol=1e-6)


def test_explicit_probe_pixel_size_is_kept(sample_npz, tmp_path):
    npz, _ = sample_npz()
    out = tmp_path / 'out.h5'

    export_product(npz, out, ExportMeta(object_pixel_width_m=5e-8, object_pixel_height_m=5e-8,
                                        probe_pixel_width_m=1.25e-7, probe_pixel_height_m=1.25e-7))

    attrs = h5_attrs(out, 'probe')
    assert (attrs['pixel_width_m'], attrs['pixel_height_m']) == (1.25e-7, 1.25e-7)


pixel_sizes = st.floats(min_value=1e-10, max_value=1e-5)
centres = st.floats(min_value=-1e-3, max_value=1e-3)
dims = st.integers(min_value=1, max_value=4096)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=dims, height=dims, pixel_width=pixel_sizes, pixel_height=pixel_sizes,
    centre_x=centres, centre_y=centres,
    x_px=st.lists(st.floats(min_value=-100, max_value=5000), min_size=1, max_size=20),
    y_px=st.lists(st.floats(min_value=-100, max_value=5000), min_size=1, max_size=20),
)
def test_object_grid_round_trip(width, height, pixel_width, pixel_height, centre_x, centre_y, x_px, y_px):
    size = min(len(x_px), len(y_px))
    x, y = np.array(x_px[:size]), np.array(y_px[:size])
    grid = ObjectGrid(width, height, pixel_width, pixel_height, centre_x, centre_y)

    x_m, y_m = grid.pixels_to_metres(x, y)
    back_x, back_y = grid.metres_to_pixels(x_m, y_m)

    np.testing.assert_allclose(back_x, x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(back_y, y, rtol=0, atol=1e-6)


@settings(max_examples=100, deadline=None, database=None)
@given(
    width=dims, height=dims, pixel_width=pixel_sizes, pixel_height=pixel_sizes,
    centre_x=centres, centre_y=centres,
    x=st.floats(min_value=-100, max_value=5000), y=st.floats(min_value=-100, max_value=5000),
)
def test_object_grid_agrees_with_ptychodus(width, height, pixel_width, pixel_height, centre_x, centre_y,
                                           x, y):
    from ptychodus.api.object import ObjectPosition

    grid = ObjectGrid(width, height, pixel_width, pixel_height, centre_x, centre_y)
    theirs = ObjectGeometry(width, height, pixel_width, pixel_height, centre_x, centre_y)

    x_m, y_m = grid.pixels_to_metres(x, y)
    probe_position = theirs.map_coordinates_object_to_probe(ObjectPosition(0, x, y))

    assert float(x_m) == pytest.approx(probe_position.x_m, rel=1e-12, abs=1e-18)
    assert float(y_m) == pytest.approx(probe_position.y_m, rel=1e-12, abs=1e-18)


@pytest.mark.parametrize('bad', [0.0, -1e-8, float('nan'), float('inf')])
def test_object_grid_rejects_bad_pixel_size(bad):
    with pytest.raises(ValueError):
        ObjectGrid(10, 10, bad, 1e-8)
