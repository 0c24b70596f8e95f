"""Issue 20: every message a newcomer meets says what is wrong, names the file, and says what to do.

One test per message, asserting its text; plus the promises behind them: a conversion's
outputs are published together or not at all, the CLI creates a missing output folder,
and the CLI reads ``<stem>.json`` as the plugin does (same product from the same file).
"""

from __future__ import annotations

import bz2
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from ptychopinn_ptychodus.convert.batch import Job, convert_one
from ptychopinn_ptychodus.convert.export import ExportOptions, export_product
from ptychopinn_ptychodus.facts.errors import OutputError
from ptychopinn_ptychodus.facts.quantities import ExportMeta
from ptychopinn_ptychodus.safeio.atomic import atomic_outputs

PROG = 'convert_to_ptychodus_product'
META = ['--object-pixel-size-m', '5e-8', '--probe-energy-eV', '8000', '--detector-distance-m', '1.5']


def one_error_line(result) -> str:
    """The CLI failed with exactly one ``prog: error:`` line on stderr and no traceback."""
    assert result.returncode != 0, result
    assert 'Traceback' not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(f'{PROG}: error:')]
    assert len(lines) == 1, result.stderr
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- the README example on Run1084 ---------------------------------------------------------------------


def test_output_diffraction_on_a_reconstruction_only_file_says_to_drop_it(shared_data, run_cli, tmp_path):
    run1084 = shared_data / 'run1084_recon3_postPC.npz'
    result = run_cli('--input-npz', run1084, '--output-product', 'p.h5', '--output-diffraction', 'd.h5')
    line = one_error_line(result)
    assert str(run1084) in line
    assert 'has no diffraction stack' in line and 'drop --output-diffraction' in line
    assert not (tmp_path / 'p.h5').exists() and not (tmp_path / 'd.h5').exists()


# -- outputs of one conversion: distinct, and published together ---------------------------------------


def test_identical_outputs_are_refused_before_any_work(sample_npz, run_cli, tmp_path):
    npz, _ = sample_npz()
    result = run_cli('--input-npz', npz, '--output-product', 'z.h5', '--output-diffraction', 'z.h5', *META)
    line = one_error_line(result)
    assert line == f'{PROG}: error: z.h5: is given for two outputs: give each output its own file name'
    assert not (tmp_path / 'z.h5').exists()


def test_an_output_over_the_input_is_refused(sample_npz, tmp_path):
    npz, _ = sample_npz()
    with pytest.raises(OutputError, match='is also the input: write the output to another file'):
        export_product(npz, None, ExportMeta(), diffraction_output=npz, overwrite=True)


def test_outputs_are_published_all_or_none(sample_npz, tmp_path):
    """The diffraction file's destination appears mid-write: neither output may be left behind."""
    npz, _ = sample_npz()
    product, diffraction = tmp_path / 'p.h5', tmp_path / 'd.h5'
    with pytest.raises(OutputError, match='appeared while writing'):
        with atomic_outputs([product, diffraction], overwrite=False) as temps:
            for tmp in temps:
                tmp.write_bytes(b'complete')
            diffraction.write_bytes(b'someone else')  # a clash only the publish can see
    assert not product.exists()
    assert diffraction.read_bytes() == b'someone else'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['d.h5', 'sample.npz']


def test_overwrite_rollback_restores_what_was_replaced(tmp_path):
    first, second = tmp_path / 'a.h5', tmp_path / 'b.h5'
    first.write_bytes(b'old a')
    with pytest.raises(OutputError, match='write failed'):
        with atomic_outputs([first, second], overwrite=True) as temps:
            for tmp in temps:
                tmp.write_bytes(b'new')
            second.mkdir()  # publishing over a folder fails after a.h5 was replaced
    assert first.read_bytes() == b'old a'
    assert leftovers(tmp_path) == ['a.h5', 'b.h5']


def test_both_outputs_published_when_all_is_well(sample_npz, tmp_path):
    npz, _ = sample_npz()
    export_product(npz, tmp_path / 'p.h5', ExportMeta(object_pixel_size_m=5e-8),
                   ExportOptions(diffraction_output=tmp_path / 'd.h5'))
    with h5py.File(tmp_path / 'p.h5') as h5, h5py.File(tmp_path / 'd.h5') as d5:
        assert 'object' in h5 and 'patterns' in d5
    assert leftovers(tmp_path) == ['d.h5', 'p.h5', 'sample.npz']


# -- missing output folder -----------------------------------------------------------------------------


def test_cli_creates_a_missing_output_folder_and_says_so(sample_npz, run_cli, tmp_path):
    npz, _ = sample_npz()
    result = run_cli('--input-npz', npz, '--output-product', 'outputs/products/p.h5', *META)
    assert result.returncode == 0, result.stderr
    assert f'{PROG}: created folder outputs/products' in result.stderr
    assert (tmp_path / 'outputs' / 'products' / 'p.h5').is_file()


# -- --inspect and the default notes -------------------------------------------------------------------


def test_inspect_prints_each_note_once(sample_npz, run_cli):
    npz, _ = sample_npz()
    result = run_cli('--input-npz', npz, '--inspect')
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stdout.splitlines() if line.startswith('  note: ')]
    assert any('detector_distance_m unknown' in note for note in notes), result.stdout
    assert 'WARNING:' not in result.stderr, result.stderr


def test_default_note_names_the_flag_and_the_sidecar_key(sample_npz, run_cli):
    npz, _ = sample_npz()
    result = run_cli('--input-npz', npz, '--inspect')
    assert (
        '  note: detector_distance_m unknown; using the default 0.75 '
        '(pass --detector-distance-m, or set "detector_distance_m" in the JSON sidecar)'
    ) in result.stdout.splitlines()
    widths = [line for line in result.stdout.splitlines() if 'object_pixel_width_m unknown' in line]
    assert widths and '--object-pixel-width-m' in widths[0], result.stdout


# -- not-quite-right inputs ----------------------------------------------------------------------------


def test_hdf5_given_as_npz_suggests_input_product(sample_npz, run_cli, tmp_path):
    npz, _ = sample_npz()
    assert run_cli('--input-npz', npz, '--output-product', 'p.h5', *META).returncode == 0
    line = one_error_line(run_cli('--input-npz', 'p.h5', '--output-product', 'q.h5'))
    assert line == (
        f'{PROG}: error: p.h5: looks like an HDF5 file, not an NPZ: for a product HDF5 use --input-product'
    )


def test_bz2_npz_suggests_decompressing(shared_data, run_cli):
    star = shared_data / 'tike_siemens-star-small.npz.bz2'
    line = one_error_line(run_cli('--input-npz', star, '--output-product', 'q.h5'))
    assert line == (
        f'{PROG}: error: {star}: is bzip2-compressed: decompress it first '
        '(bunzip2 -k tike_siemens-star-small.npz.bz2), then convert the .npz'
    )


def test_tike_npz_lists_its_keys(shared_data, run_cli, tmp_path):
    star = tmp_path / 'star.npz'
    with bz2.open(shared_data / 'tike_siemens-star-small.npz.bz2') as source, open(star, 'wb') as out:
        shutil.copyfileobj(source, out)
    line = one_error_line(run_cli('--input-npz', star, '--output-product', 'q.h5'))
    assert line == (
        f'{PROG}: error: {star}: not a PtychoPINN layout (keys found: data, probe, scan); a PtychoPINN '
        'dataset has xcoords/ycoords, probeGuess and diffraction (or diff3d)'
    )


def test_diffraction_h5_given_as_product_says_what_it_is(sample_npz, run_cli):
    npz, _ = sample_npz()
    assert run_cli('--input-npz', npz, '--output-diffraction', 'd.h5', *META).returncode == 0
    line = one_error_line(run_cli('--input-product', 'd.h5', '--output-npz', 'back.npz'))
    assert line.startswith(f'{PROG}: error: d.h5: is a Ptychodus diffraction file (/patterns), not a product')


def test_unknown_sidecar_key_suggests_the_near_match(sample_npz, run_cli, tmp_path):
    npz, _ = sample_npz()
    (tmp_path / 'meta.json').write_text(json.dumps({'detector_distnce_m': 2.0}))
    line = one_error_line(
        run_cli('--input-npz', npz, '--output-product', 'p.h5', '--metadata-json', 'meta.json')
    )
    assert line == (
        f"{PROG}: error: meta.json: unknown metadata key 'detector_distnce_m' "
        "(did you mean 'detector_distance_m'?)"
    )


def test_product_named_npz_is_refused(sample_npz, run_cli, tmp_path):
    npz, _ = sample_npz()
    result = run_cli('--input-npz', npz, '--output-product', 'x.npz', *META)
    assert result.returncode == 2
    assert result.stderr.startswith(f'{PROG}: error: --output-product x.npz: this output is HDF5, so name it .h5')
    assert not (tmp_path / 'x.npz').exists()


# -- batch ---------------------------------------------------------------------------------------------


def test_batch_failed_line_names_the_path_once(sample_npz, run_cli, tmp_path):
    good, _ = sample_npz('good.npz')
    bad = tmp_path / 'bad.npz'
    bad.write_bytes(b'not a zip at all')
    result = run_cli('--input-npz', good, bad, '--output-dir', 'out', *META)
    failed = [line for line in result.stdout.splitlines() if line.startswith('FAILED')]
    assert len(failed) == 1 and failed[0].count(str(bad)) == 1, result.stdout
    assert failed[0].startswith(f'FAILED  {bad}: not a readable NPZ')


def test_batch_error_text_still_names_the_file():
    result = convert_one(Job(Path('/nonexistent/x.npz'), Path('/tmp/never.h5')), None, ExportOptions())
    assert result.error is not None and result.error.startswith('/nonexistent/x.npz: ')


# -- the sidecar: same product from the CLI and from the plugin ----------------------------------------


def test_cli_reads_stem_json_like_the_plugin(sample_npz, run_cli, tmp_path, registry):
    from ptychodus.api.io import load_product

    from ptychopinn_ptychodus.convert.sidecar import sidecar_path
    from ptychopinn_ptychodus.host.compat import find_strategy, position_arrays

    npz, _ = sample_npz('demo.npz')
    sidecar_path(npz).write_text(json.dumps(
        {'object_pixel_size_m': 5e-8, 'photon_energy_eV': 8000.0, 'detector_distance_m': 2.0}
    ))
    result = run_cli('--input-npz', npz, '--output-product', 'p.h5')
    assert result.returncode == 0, result.stderr
    assert f'reading metadata from {sidecar_path(npz)}' in result.stderr
    from_cli = load_product(tmp_path / 'p.h5')
    from_plugin = find_strategy(registry.product_file_readers, 'PtychoPINN_NPZ').read(npz)
    assert from_cli.metadata.detector_distance_m == from_plugin.metadata.detector_distance_m == 2.0
    assert from_cli.metadata.photon_energy_eV == from_plugin.metadata.photon_energy_eV == 8000.0
    cli_geometry, plugin_geometry = from_cli.object_.get_geometry(), from_plugin.object_.get_geometry()
    assert cli_geometry.pixel_width_m == plugin_geometry.pixel_width_m == 5e-8
    assert cli_geometry.minimum_x_m == plugin_geometry.minimum_x_m
    np.testing.assert_array_equal(from_cli.object_.get_array(), from_plugin.object_.get_array())
    for a, b in zip(position_arrays(from_cli.probe_positions), position_arrays(from_plugin.probe_positions),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_explicit_metadata_json_replaces_stem_json(sample_npz, run_cli, tmp_path):
    from ptychopinn_ptychodus.convert.sidecar import sidecar_path

    npz, _ = sample_npz('demo.npz')
    sidecar_path(npz).write_text(json.dumps({'detector_distance_m': 2.0}))
    (tmp_path / 'other.json').write_text(json.dumps({'detector_distance_m': 3.0}))
    result = run_cli('--input-npz', npz, '--output-product', 'p.h5', '--metadata-json', 'other.json')
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / 'p.h5') as h5:
        assert float(h5.attrs['detector_object_distance_m']) == 3.0
    assert 'reading metadata from' not in result.stderr
    assert os.path.exists(sidecar_path(npz))
