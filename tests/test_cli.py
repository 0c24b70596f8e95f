"""``convert_to_ptychodus_product`` in a subprocess: flags, outputs, exit codes and messages.

Position convention expected (the default, "ptychopinn"): the Ptychodus object
pixel under the probe is ``xcoords - (N // 2 - (N - 1) / 2)`` (N = probe width;
height for ``ycoords``), i.e. half a pixel less for the 16 px sample probes
(``helpers.ptychopinn_pixels``). The reverse direction gives ``xcoords`` back bit
for bit.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from helpers import (
    assert_no_temp_files,
    assert_one_line_failure,
    h5_attrs,
    minimal_arrays,
    product_pixels,
    ptychopinn_pixels,
    to_nhw,
    write_json,
)
from ptychodus.api.io import load_diffraction_data, load_product

#: Every metadata flag, each with its own value so that a mix-up shows.
METADATA_FLAGS = {
    '--name': 'Run1084',
    '--comments': 'Run1084 reconstruction export',
    '--detector-distance-m': '1.25',
    '--probe-energy-eV': '8800',
    '--exposure-time-s': '0.1',
    '--probe-photon-count': '2.5e9',
    '--mass-attenuation-m2-kg': '4.5',
    '--tomography-angle-deg': '12.5',
    '--object-pixel-size-m': '5e-8',
    '--probe-pixel-size-m': '1.25e-7',
    '--object-center-x-m': '1.3e-6',
    '--object-center-y-m': '-0.7e-6',
}


def _flags(values: dict[str, str]) -> list[str]:
    # negative values as --flag=-x (the separate spelling has its own test below)
    out: list[str] = []
    for flag, value in values.items():
        out += [f'{flag}={value}'] if value.startswith('-') else [flag, value]
    return out


@pytest.mark.parametrize('script', [False, True], ids=['python-m', 'console-script'])
def test_metadata_flags_land_in_the_product(sample_npz, run_cli, tmp_path, script):
    npz, arrays = sample_npz()
    out = tmp_path / 'run1084_product.h5'

    result = run_cli('--input-npz', npz, '--output-product', out, *_flags(METADATA_FLAGS),
                     '--include-diffraction', script=script)

    assert result.returncode == 0, result
    attrs = h5_attrs(out)
    assert attrs['name'] == 'Run1084'
    assert attrs['comments'].startswith('Run1084 reconstruction export')
    assert attrs['detector_object_distance_m'] == 1.25
    assert attrs['photon_energy_eV'] == attrs['probe_energy_eV'] == 8800.0
    assert attrs['exposure_time_s'] == 0.1
    assert attrs['probe_photon_count'] == 2.5e9
    assert attrs['mass_attenuation_m2_per_kg'] == attrs['mass_attenuation_m2_kg'] == 4.5
    assert attrs['tomography_angle_deg'] == 12.5
    obj = h5_attrs(out, 'object')
    assert (obj['pixel_width_m'], obj['pixel_height_m']) == (5e-8, 5e-8)
    assert (obj['center_x_m'], obj['center_y_m']) == (1.3e-6, -0.7e-6)
    probe = h5_attrs(out, 'probe')
    assert (probe['pixel_width_m'], probe['pixel_height_m']) == (1.25e-7, 1.25e-7)
    with h5py.File(out, 'r') as h5:
        assert 'raw_data/diffraction' in h5

    product = load_product(out)
    meta = product.metadata
    assert (meta.name, meta.detector_distance_m, meta.photon_energy_eV) == ('Run1084', 1.25, 8800.0)
    assert (meta.exposure_time_s, meta.probe_photon_count) == (0.1, 2.5e9)
    assert (meta.mass_attenuation_m2_per_kg, meta.tomography_angle_deg) == (4.5, 12.5)
    assert attrs['ptychopinn_position_convention'] == 'ptychopinn'
    x_px, y_px = product_pixels(product)
    expected_x, expected_y = ptychopinn_pixels(arrays)  # xcoords - 0.5 for the 16 px probe
    np.testing.assert_allclose(x_px, expected_x, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, atol=1e-6)


def test_no_include_diffraction(sample_npz, run_cli, tmp_path):
    npz, arrays = sample_npz()
    out = tmp_path / 'small.h5'

    result = run_cli('--input-npz', npz, '--output-product', out, '--no-include-diffraction')

    assert result.returncode == 0, result
    with h5py.File(out, 'r') as h5:
        assert 'diffraction' not in h5.get('raw_data', {})
    x_px, _ = product_pixels(out)
    np.testing.assert_allclose(x_px, ptychopinn_pixels(arrays)[0], atol=1e-6)


@pytest.mark.parametrize('style', ['equals', 'separate'])
def test_negative_centre_in_both_spellings(sample_npz, run_cli, tmp_path, style):
    npz, arrays = sample_npz()
    out = tmp_path / 'out.h5'
    if style == 'equals':
        centre = ['--object-center-y-m=-0.7e-6', '--object-center-x-m=-2e-6']
    else:
        centre = ['--object-center-y-m', '-0.7e-6', '--object-center-x-m', '-2e-6']

    result = run_cli('--input-npz', npz, '--output-product', out, *centre)

    assert result.returncode == 0, result
    obj = h5_attrs(out, 'object')
    assert (obj['center_x_m'], obj['center_y_m']) == (-2e-6, -0.7e-6)
    _, y_px = product_pixels(out)
    np.testing.assert_allclose(y_px, ptychopinn_pixels(arrays)[1], atol=1e-6)


def test_anisotropic_pixel_flags(sample_npz, run_cli, tmp_path):
    npz, arrays = sample_npz()
    out = tmp_path / 'out.h5'

    result = run_cli('--input-npz', npz, '--output-product', out,
                     '--object-pixel-width-m', '4e-8', '--object-pixel-height-m', '6e-8')

    assert result.returncode == 0, result
    obj = h5_attrs(out, 'object')
    assert (obj['pixel_width_m'], obj['pixel_height_m']) == (4e-8, 6e-8)
    probe = h5_attrs(out, 'probe')
    assert (probe['pixel_width_m'], probe['pixel_height_m']) == (4e-8, 6e-8)
    x_px, y_px = product_pixels(out)
    expected_x, expected_y = ptychopinn_pixels(arrays)
    np.testing.assert_allclose(x_px, expected_x, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, atol=1e-6)


def test_metadata_json_sidecar_with_flags_winning(sample_npz, run_cli, tmp_path):
    npz, _ = sample_npz()
    sidecar = write_json(tmp_path / 'meta.json', {
        'name': 'from json',
        'photon_energy_eV': 9000.0,
        'detector_distance_m': 2.0,
        'object_pixel_size_m': 3e-8,
        'exposure_time_s': 0.5,
    })
    out = tmp_path / 'out.h5'

    result = run_cli('--input-npz', npz, '--output-product', out, '--metadata-json', sidecar,
                     '--probe-energy-eV', '10000', '--name', 'from flag')

    assert result.returncode == 0, result
    attrs = h5_attrs(out)
    assert attrs['name'] == 'from flag'
    assert attrs['photon_energy_eV'] == 10000.0
    assert attrs['detector_object_distance_m'] == 2.0
    assert attrs['exposure_time_s'] == 0.5
    assert h5_attrs(out, 'object')['pixel_width_m'] == 3e-8
    assert 'photon_energy_eV unknown' not in attrs['comments']


def test_bad_metadata_json_is_a_clean_failure(sample_npz, run_cli, tmp_path):
    npz, _ = sample_npz()
    sidecar = tmp_path / 'meta.json'
    sidecar.write_text('{"photon_energy_eV": ')
    out = tmp_path / 'out.h5'

    result = run_cli('--input-npz', npz, '--output-product', out, '--metadata-json', sidecar)

    assert_one_line_failure(result, absent=[out])
    assert 'meta.json' in result.stderr


def test_inspect_writes_nothing_and_prints_the_layout(sample_npz, run_cli, tmp_path):
    npz, _ = sample_npz(key='diff3d', layout='HWN', counts=True)
    out = tmp_path / 'out.h5'
    before = sorted(p.name for p in tmp_path.iterdir())

    result = run_cli('--input-npz', npz, '--output-product', out, '--inspect')

    assert result.returncode == 0, result
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert 'HWN' in result.stdout
    assert 'diff3d' in result.stdout
    assert 'intensity' in result.stdout
    assert '9' in result.stdout


def test_inspect_without_output(sample_npz, run_cli, tmp_path):
    npz, _ = sample_npz(layout='NHW1')
    result = run_cli('--input-npz', npz, '--inspect')
    assert result.returncode == 0, result
    assert 'NHW1' in result.stdout


def test_output_diffraction(sample_npz, run_cli, tmp_path):
    npz, arrays = sample_npz(key='diff3d', counts=True)
    out, diffraction = tmp_path / 'p.h5', tmp_path / 'd.h5'

    result = run_cli('--input-npz', npz, '--output-product', out, '--output-diffraction', diffraction,
                     '--detector-pixel-size-m', '75e-6')

    assert result.returncode == 0, result
    data = load_diffraction_data(diffraction)
    np.testing.assert_array_equal(data.get_patterns(), arrays['diff3d'])
    np.testing.assert_array_equal(data.get_indexes(), np.arange(arrays['diff3d'].shape[0]))
    assert data.get_pixel_geometry().width_m == 75e-6
    assert out.exists()


def test_positions_nominal(sample_npz, run_cli, tmp_path):
    npz, arrays = sample_npz()
    out = tmp_path / 'out.h5'

    result = run_cli('--input-npz', npz, '--output-product', out, '--positions', 'nominal')

    assert result.returncode == 0, result
    x_px, y_px = product_pixels(out)
    expected_x, expected_y = ptychopinn_pixels(arrays, nominal=True)  # same convention, nominal positions
    np.testing.assert_allclose(x_px, expected_x, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, atol=1e-6)


@pytest.mark.parametrize('domain', ['amplitude', 'intensity'])
def test_diffraction_domain(sample_npz, run_cli, tmp_path, domain):
    npz, arrays = sample_npz(key='diff3d')
    out = tmp_path / 'out.h5'

    result = run_cli('--input-npz', npz, '--output-product', out, '--diffraction-domain', domain)

    assert result.returncode == 0, result
    with h5py.File(out, 'r') as h5:
        dset = h5['raw_data/diffraction']
        assert dset.attrs['source_domain'] == dset.attrs['measurement_domain'] == domain
        np.testing.assert_array_equal(dset[()], arrays['diff3d'])  # stored as given, labelled as chosen


def test_m_equals_n_reads_as_nhw_and_layout_flag_overrides(npz_from_arrays, run_cli, tmp_path):
    # Convention since issue 18: M == N is read as NHW (PtychoPINN's loaders do), with a warning
    # that names --layout; it used to be refused as ambiguous.
    npz = npz_from_arrays('square.npz', **minimal_arrays(num=16, n=16))
    out = tmp_path / 'out.h5'

    default = run_cli('--input-npz', npz, '--output-product', out)
    assert default.returncode == 0, default
    assert '--layout' in default.stderr
    with h5py.File(out, 'r') as h5:
        assert h5['raw_data/diffraction'].attrs['original_axis_order'] == 'NHW'

    other = tmp_path / 'hwn.h5'
    resolved = run_cli('--input-npz', npz, '--output-product', other, '--layout', 'HWN')
    assert resolved.returncode == 0, resolved
    with h5py.File(other, 'r') as h5:
        assert h5['raw_data/diffraction'].attrs['original_axis_order'] == 'HWN'


def test_reverse_direction(sample_npz, run_cli, tmp_path):
    npz, arrays = sample_npz(layout='HWN')
    product, back = tmp_path / 'X.h5', tmp_path / 'Y.npz'
    assert run_cli('--input-npz', npz, '--output-product', product).returncode == 0

    result = run_cli('--input-product', product, '--output-npz', back)

    assert result.returncode == 0, result
    with np.load(back, allow_pickle=False) as restored:
        np.testing.assert_array_equal(restored['xcoords'], arrays['xcoords'])
        np.testing.assert_array_equal(restored['ycoords'], arrays['ycoords'])
        np.testing.assert_array_equal(restored['probeGuess'], arrays['probeGuess'])
        np.testing.assert_array_equal(restored['diffraction'], to_nhw(arrays['diffraction'], 'HWN'))


# -- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize('script', [False, True], ids=['python-m', 'console-script'])
def test_missing_input(run_cli, tmp_path, script):
    out = tmp_path / 'out.h5'
    result = run_cli('--input-npz', tmp_path / 'nowhere.npz', '--output-product', out, script=script)
    assert_one_line_failure(result, absent=[out])
    assert 'nowhere.npz' in result.stderr


def test_bad_file(run_cli, tmp_path):
    bad = tmp_path / 'bad.npz'
    bad.write_text('not an archive')
    out = tmp_path / 'out.h5'
    result = run_cli('--input-npz', bad, '--output-product', out)
    assert_one_line_failure(result, absent=[out])
    assert 'bad.npz' in result.stderr


def test_existing_output_without_overwrite(sample_npz, run_cli, tmp_path):
    npz, _ = sample_npz()
    out = tmp_path / 'out.h5'
    out.write_bytes(b'precious')

    result = run_cli('--input-npz', npz, '--output-product', out)

    assert_one_line_failure(result)
    assert out.read_bytes() == b'precious'
    assert 'out.h5' in result.stderr
    assert_no_temp_files(tmp_path)

    replaced = run_cli('--input-npz', npz, '--output-product', out, '--overwrite')
    assert replaced.returncode == 0, replaced
    assert load_product(out).metadata.name == 'sample'


def test_unknown_flag(sample_npz, run_cli, tmp_path):
    npz, _ = sample_npz()
    out = tmp_path / 'out.h5'
    result = run_cli('--input-npz', npz, '--output-product', out, '--frobnicate', '3')
    assert_one_line_failure(result, status=2, absent=[out])  # argparse's usage error
    assert '--frobnicate' in result.stderr


def test_reverse_with_bad_product(sample_npz, run_cli, tmp_path):
    npz, _ = sample_npz()
    back = tmp_path / 'back.npz'
    result = run_cli('--input-product', npz, '--output-npz', back)
    assert_one_line_failure(result, absent=[back])


def test_npz_without_diffraction_is_a_warning(sample_npz, npz_from_arrays, run_cli, tmp_path):
    _, arrays = sample_npz()
    del arrays['diffraction']
    npz = npz_from_arrays('reconstruction.npz', **arrays)
    out = tmp_path / 'out.h5'

    result = run_cli('--input-npz', npz, '--output-product', out)

    assert result.returncode == 0, result
    assert 'WARNING' in result.stderr and 'diffraction' in result.stderr
    assert 'Traceback' not in result.stderr
    assert len(load_product(out).probe_positions) == arrays['xcoords'].size


def test_npz_without_diffraction_and_explicit_include_writes_bundle_and_warns(
    sample_npz, npz_from_arrays, run_cli, tmp_path
):
    """The PtychoPINN guide's command passes --include-diffraction for reconstructions too:
    without a stack it writes /raw_data with positions, probe and object, and warns."""
    _, arrays = sample_npz()
    del arrays['diffraction']
    npz = npz_from_arrays('reconstruction.npz', **arrays)
    out = tmp_path / 'out.h5'

    result = run_cli('--input-npz', npz, '--output-product', out, '--include-diffraction')

    assert result.returncode == 0, result
    assert 'WARNING' in result.stderr and 'no diffraction stack' in result.stderr
    with h5py.File(out, 'r') as h5:
        raw = h5['raw_data']
        assert 'diffraction' not in raw
        np.testing.assert_array_equal(raw['xcoords'][()], arrays['xcoords'])
        np.testing.assert_array_equal(raw['probeGuess'][()], arrays['probeGuess'])
        np.testing.assert_array_equal(raw['objectGuess'][()], arrays['objectGuess'])


# -- batch ----------------------------------------------------------------------------------------


def test_batch_converts_every_input(sample_npz, run_cli, tmp_path):
    first, first_arrays = sample_npz('first.npz')
    second, second_arrays = sample_npz('second.npz', key='diff3d', counts=True, layout='HWN')
    folder = tmp_path / 'products'
    folder.mkdir()

    result = run_cli('--input-npz', first, second, '--output-dir', folder)

    assert result.returncode == 0, result
    for name, arrays in (('first', first_arrays), ('second', second_arrays)):
        x_px, _ = product_pixels(folder / f'{name}.h5')
        np.testing.assert_allclose(x_px, ptychopinn_pixels(arrays)[0], atol=1e-6)
    assert 'first.npz' in result.stdout and 'second.npz' in result.stdout


def test_batch_with_one_bad_input(sample_npz, run_cli, tmp_path):
    first, _ = sample_npz('first.npz')
    third, _ = sample_npz('third.npz', layout='NHW1')
    bad = tmp_path / 'broken.npz'
    bad.write_text('not an archive')
    folder = tmp_path / 'products'
    folder.mkdir()

    result = run_cli('--input-npz', first, bad, third, '--output-dir', folder)

    assert result.returncode != 0, result
    assert 'Traceback' not in result.stdout + result.stderr
    assert (folder / 'first.h5').exists() and (folder / 'third.h5').exists()
    assert not (folder / 'broken.h5').exists()
    load_product(folder / 'first.h5')
    load_product(folder / 'third.h5')
    lines = result.stdout.splitlines()
    summary = {name: [line for line in lines if name in line] for name in ('first', 'broken', 'third')}
    assert all(summary.values()), result.stdout  # one summary line per file
    assert any('FAIL' in line.upper() for line in summary['broken'])
    assert not any('FAIL' in line.upper() for line in summary['first'] + summary['third'])
    assert_no_temp_files(folder)


def test_batch_in_parallel(sample_npz, run_cli, tmp_path):
    first, _ = sample_npz('first.npz')
    second, _ = sample_npz('second.npz', layout='HWN')
    bad = tmp_path / 'broken.npz'
    bad.write_bytes(b'PK\x03\x04 not really')
    folder = tmp_path / 'products'
    folder.mkdir()

    result = run_cli('--input-npz', first, bad, second, '--output-dir', folder, '--jobs', '2',
                     '--write-diffraction-file')

    assert result.returncode != 0, result
    assert 'Traceback' not in result.stdout + result.stderr
    for stem in ('first', 'second'):
        load_product(folder / f'{stem}.h5')
        load_diffraction_data(folder / f'{stem}.diffraction.h5')
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ['first.h5', 'first.diffraction.h5', 'second.h5', 'second.diffraction.h5'])
    assert 'broken.npz' in result.stdout


def test_unknown_key_in_metadata_json(sample_npz, run_cli, tmp_path):
    npz, _ = sample_npz()
    sidecar = write_json(tmp_path / 'meta.json', {'photon_energy_ev_typo': 9000})
    out = tmp_path / 'out.h5'
    result = run_cli('--input-npz', npz, '--output-product', out, '--metadata-json', sidecar)
    assert_one_line_failure(result, absent=[out])
    assert 'photon_energy_ev_typo' in result.stderr


def test_batch_needs_output_dir(sample_npz, run_cli, tmp_path):
    first, _ = sample_npz('first.npz')
    second, _ = sample_npz('second.npz')
    result = run_cli('--input-npz', first, second, '--output-product', tmp_path / 'x.h5')
    assert_one_line_failure(result, status=2, absent=[tmp_path / 'x.h5'])  # a usage error


def test_version_and_help(run_cli):
    help_text = run_cli('--help')
    assert help_text.returncode == 0
    for flag in (*METADATA_FLAGS, '--include-diffraction', '--input-npz', '--output-product', '--input-product',
                 '--output-npz', '--metadata-json', '--inspect', '--output-diffraction', '--positions',
                 '--diffraction-domain', '--object-pixel-width-m', '--object-pixel-height-m', '--overwrite'):
        assert flag in help_text.stdout, flag
