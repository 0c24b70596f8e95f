"""PtychoPINN pixels <-> Ptychodus metres, checked with Ptychodus's own ObjectGeometry.

Position convention expected unless a test chooses otherwise (the default,
"ptychopinn"): PtychoPINN's probe is centred on object pixel ``xcoords`` at patch
index ``N // 2``, Ptychodus centres it at ``(N - 1) / 2``, so the Ptychodus object
pixel is ``xcoords - (N // 2 - (N - 1) / 2)`` (``helpers.ptychopinn_offset``): 0.5
for the even 16 px sample probe, 0 for an odd probe. With the explicit "identity"
convention it is ``xcoords`` itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    h5_attrs,
    minimal_arrays,
    our_npz_keys,
    product_pixels,
    ptychopinn_offset,
    ptychopinn_pixels,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ptychodus.api.io import load_product
from ptychodus.api.object import ObjectGeometry

from ptychopinn_ptychodus import ExportMeta, InvalidInputError, export_product, import_product
from ptychopinn_ptychodus.facts.geometry import ObjectGrid

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
    expected_x, expected_y = ptychopinn_pixels(arrays, nominal=positions == 'nominal')
    np.testing.assert_allclose(x_px, expected_x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, rtol=0, atol=1e-6)


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
    ((W - 1) / 2) sits at the object centre, is where Ptychodus's ObjectGeometry puts it; here
    j = xcoords - (N // 2 - (N - 1) / 2) (the PtychoPINN convention, N = 16: j = xcoords - 0.5)."""
    npz, arrays = sample_npz()
    out = tmp_path / 'out.h5'
    export_product(npz, out, anisotropic_meta)

    positions = load_product(out).probe_positions
    height, width = arrays['objectGuess'].shape
    probe_height, probe_width = arrays['probeGuess'].shape
    j = arrays['xcoords'] - ptychopinn_offset(probe_width)
    i = arrays['ycoords'] - ptychopinn_offset(probe_height)
    expected_x = CENTRE_X + PIXEL_W * (j - (width - 1) / 2)
    expected_y = CENTRE_Y + PIXEL_H * (i - (height - 1) / 2)
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
    np.testing.assert_allclose(x_px, ptychopinn_pixels(arrays)[0], atol=1e-6)


def test_explicit_probe_pixel_size_is_kept(sample_npz, tmp_path):
    npz, _ = sample_npz()
    out = tmp_path / 'out.h5'

    export_product(npz, out, ExportMeta(object_pixel_width_m=5e-8, object_pixel_height_m=5e-8,
                                        probe_pixel_width_m=1.25e-7, probe_pixel_height_m=1.25e-7))

    attrs = h5_attrs(out, 'probe')
    assert (attrs['pixel_width_m'], attrs['pixel_height_m']) == (1.25e-7, 1.25e-7)


# -- the position convention: visible and controllable ----------------------------------------------


def test_offset_stated_by_the_tests():
    """The tests' own statement of the convention (never imported from the package)."""
    assert [ptychopinn_offset(n) for n in (8, 15, 16, 64, 65)] == [0.5, 0.0, 0.5, 0.5, 0.0]


def test_default_convention_is_recorded_in_the_product(sample_npz, tmp_path):
    npz, arrays = sample_npz()
    out = tmp_path / 'out.h5'

    report = export_product(npz, out)

    assert report.position_convention.startswith('ptychopinn')
    attrs = h5_attrs(out)
    assert attrs['ptychopinn_position_convention'] == 'ptychopinn'
    height, width = arrays['probeGuess'].shape
    np.testing.assert_array_equal(attrs['ptychopinn_position_offset_px'],
                                  [ptychopinn_offset(width), ptychopinn_offset(height)])  # [0.5, 0.5]


def _convention_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if 'position convention' in line]


def test_inspect_prints_the_position_convention(sample_npz, run_cli):
    npz, _ = sample_npz()

    default = run_cli('--input-npz', npz, '--inspect')
    identity = run_cli('--input-npz', npz, '--inspect', '--position-convention', 'identity')

    assert default.returncode == 0 and identity.returncode == 0, (default, identity)
    [line] = _convention_lines(default.stdout)
    assert 'ptychopinn' in line and 'xcoords - 0.5' in line and 'ycoords - 0.5' in line, line
    [line] = _convention_lines(identity.stdout)
    assert 'identity' in line and 'xcoords - 0,' in line and 'ptychopinn (' not in line, line


def test_identity_flag_puts_the_probe_on_pixel_xcoords_and_round_trips(sample_npz, run_cli, tmp_path):
    """``--position-convention identity``: Ptychodus pixel == xcoords; recorded, and the reverse
    direction gives the file's xcoords back bit for bit (with the convention key)."""
    npz, arrays = sample_npz()
    out, back = tmp_path / 'identity.h5', tmp_path / 'back.npz'

    result = run_cli('--input-npz', npz, '--output-product', out, '--position-convention', 'identity')

    assert result.returncode == 0, result
    x_px, y_px = product_pixels(out)
    np.testing.assert_allclose(x_px, arrays['xcoords'], rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, arrays['ycoords'], rtol=0, atol=1e-6)
    attrs = h5_attrs(out)
    assert attrs['ptychopinn_position_convention'] == 'identity'
    np.testing.assert_array_equal(attrs['ptychopinn_position_offset_px'], [0.0, 0.0])

    assert run_cli('--input-product', out, '--output-npz', back).returncode == 0
    with np.load(back, allow_pickle=False) as restored:
        np.testing.assert_array_equal(restored['xcoords'], arrays['xcoords'])
        np.testing.assert_array_equal(restored['ycoords'], arrays['ycoords'])
    assert our_npz_keys(back)['position_convention'] == 'identity'


def test_api_identity_choice_puts_the_probe_on_pixel_xcoords(sample_npz, tmp_path):
    npz, arrays = sample_npz()
    out = tmp_path / 'out.h5'

    export_product(npz, out, position_convention='identity')

    x_px, y_px = product_pixels(out)
    np.testing.assert_allclose(x_px, arrays['xcoords'], rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, arrays['ycoords'], rtol=0, atol=1e-6)


def test_npz_key_identity_is_read_with_identity_unless_overridden(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz()
    npz = npz_from_arrays('identity.npz', position_convention=np.array('identity'), **arrays)

    report = export_product(npz, tmp_path / 'file.h5')
    export_product(npz, tmp_path / 'explicit.h5', position_convention='ptychopinn')

    assert report.position_convention.startswith('identity'), report.position_convention
    x_px, y_px = product_pixels(tmp_path / 'file.h5')
    np.testing.assert_allclose(x_px, arrays['xcoords'], rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, arrays['ycoords'], rtol=0, atol=1e-6)
    x_px, y_px = product_pixels(tmp_path / 'explicit.h5')  # an explicit choice wins over the file
    expected_x, expected_y = ptychopinn_pixels(arrays)
    np.testing.assert_allclose(x_px, expected_x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, rtol=0, atol=1e-6)


def test_unknown_convention_in_the_npz_is_refused(sample_npz, npz_from_arrays, tmp_path):
    _, arrays = sample_npz()
    npz = npz_from_arrays('sideways.npz', position_convention=np.array('sideways'), **arrays)
    out = tmp_path / 'out.h5'

    with pytest.raises(InvalidInputError, match='position_convention'):
        export_product(npz, out)
    assert not out.exists()


def test_odd_probe_has_no_offset(npz_from_arrays, tmp_path):
    """N = 15: patch index N // 2 = 7 is Ptychodus's centre (N - 1) / 2 = 7, so pixel == xcoords."""
    arrays = minimal_arrays(num=9, n=15)
    npz = npz_from_arrays('odd.npz', **arrays)
    out = tmp_path / 'odd.h5'

    export_product(npz, out)

    assert ptychopinn_offset(15) == 0.0
    x_px, y_px = product_pixels(out)
    np.testing.assert_allclose(x_px, arrays['xcoords'], rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, arrays['ycoords'], rtol=0, atol=1e-6)
    attrs = h5_attrs(out)
    assert attrs['ptychopinn_position_convention'] == 'ptychopinn'
    np.testing.assert_array_equal(attrs['ptychopinn_position_offset_px'], [0.0, 0.0])


def test_probe_width_sets_the_x_offset_and_height_the_y_offset(npz_from_arrays, tmp_path):
    """A 16-high, 15-wide probe: x keeps xcoords (odd width), y moves by half a pixel (even height);
    the round trip still gives both back bit for bit."""
    arrays = minimal_arrays(num=9, n=15)
    arrays['probeGuess'] = np.ones((16, 15), dtype=np.complex64)
    # patterns of the probe's size: since issue 18 a probe that differs from them is refused
    arrays['diffraction'] = np.resize(arrays['diffraction'], (9, 16, 15))
    npz = npz_from_arrays('rect.npz', **arrays)
    out, back = tmp_path / 'rect.h5', tmp_path / 'back.npz'

    export_product(npz, out)
    import_product(out, back)

    x_px, y_px = product_pixels(out)
    np.testing.assert_allclose(x_px, arrays['xcoords'] - ptychopinn_offset(15), rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, arrays['ycoords'] - ptychopinn_offset(16), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(h5_attrs(out)['ptychopinn_position_offset_px'], [0.0, 0.5])
    with np.load(back, allow_pickle=False) as restored:
        np.testing.assert_array_equal(restored['xcoords'], arrays['xcoords'])
        np.testing.assert_array_equal(restored['ycoords'], arrays['ycoords'])


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
