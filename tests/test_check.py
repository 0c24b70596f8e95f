"""``ptychopinn-ptychodus check FILE...`` (issue 19, items 3 and 5): every producer recognised.

Each file is built exactly as its producer writes it:

* Ptychodus's own PtychoPINN export: made here by Ptychodus 1.7's real
  ``ptychodus.api.io.save_ptychopinn_training_data`` (identity positions, 3-D probe,
  ``diff3d`` intensities) from a product our plugin read;
* PtychoPINN's exporter: ``tests/flavours.exporter_product``, which imitates
  ``ptycho/io/ptychodus_product_io.py`` (uncentred metres, ``scan_index`` as indexes);
* a Ptychodus product: saved by Ptychodus's own ``ModelCore`` (``save_product(..., 'HDF5')``);
* ours: written by our converter; PtychoPINN's plain NPZ: ``cli/sample.py`` (RawData layout);
* real data: ``run1084_recon3_postPC.npz`` and the tike Siemens star (not a PtychoPINN layout).

``--fix`` outputs are checked again (clean) and opened with Ptychodus's own code.
"""

from __future__ import annotations

import bz2
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flavours import exporter_product
from helpers import assert_one_line_failure, cli_env, product_pixels, ptychopinn_pixels
from ptychodus.api.io import load_product, save_ptychopinn_training_data
from ptychodus.api.reconstruct import ReconstructInput

from ptychopinn_ptychodus import ExportMeta, export_product, import_product
from ptychopinn_ptychodus.convert.check import PROBLEM, check_file, fix_file
from ptychopinn_ptychodus.facts.errors import InvalidInputError

SCRIPT = Path(sys.executable).parent / 'ptychopinn-ptychodus'
#: Big enough for the placement test to reach a verdict (64 patterns of 32 px).
PHYSICS = {'pattern_px': 32, 'scan_side': 8}


def run_check(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), 'check', *(str(a) for a in args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=cli_env())


def codes(report: Any) -> set[str]:
    return {f.code for f in report.findings if f.severity == PROBLEM}


def our_reader(registry: Any, chooser: str) -> Any:
    return getattr(registry, chooser).get_strategy_by_name('PtychoPINN_NPZ')


@pytest.fixture
def ptychodus_export(registry, sample_npz, tmp_path) -> tuple[Path, dict[str, np.ndarray], Any]:
    """What Ptychodus's "export PtychoPINN training data" writes, from our sample read by our plugin."""
    source, arrays = sample_npz('source.npz', key='diff3d', counts=True, **PHYSICS)
    product = our_reader(registry, 'product_file_readers').read(source)
    patterns = arrays['diff3d']
    parameters = ReconstructInput(patterns, np.zeros(patterns.shape[1:], dtype=bool), product)
    path = tmp_path / 'exported.npz'
    save_ptychopinn_training_data(path, parameters, inpaint_bad_pixels=False)
    return path, arrays, product


def test_ptychodus_export_is_recognised_with_what_it_gets_wrong(ptychodus_export):
    path, _, _ = ptychodus_export
    report = check_file(path)
    assert report.producer == "Ptychodus's own PtychoPINN export"
    assert 'save_ptychopinn_training_data' in report.producer_why
    assert {'identity-positions', 'probe-3d', 'counts-as-amplitude-key'} <= codes(report)
    assert not report.clean and report.fixable
    # the physics says the same as the signature: identity, not the default read
    assert report.physics is not None and report.physics['status'] == 'consistent', report.physics
    assert report.physics['best'] == 'identity'
    assert 'placement-disagrees' in codes(report)


def test_fix_of_ptychodus_export_checks_clean_and_opens_on_the_same_pixels(ptychodus_export, registry,
                                                                           tmp_path):
    path, arrays, product = ptychodus_export
    out = tmp_path / 'fixed.npz'
    result = fix_file(path, out)
    assert result.report.clean, [f.what for f in result.report.findings]
    assert result.report.physics is not None and result.report.physics['best'] == 'ptychopinn'
    assert any('identity' in change for change in result.changes)
    with np.load(out, allow_pickle=False) as z:
        assert z['probeGuess'].ndim == 2  # PtychoPINN's RawData asserts it
        np.testing.assert_allclose(z['diff3d'], np.sqrt(arrays['diff3d'].astype(np.float32)), rtol=1e-6)
        np.testing.assert_allclose(z['xcoords'], arrays['xcoords'], rtol=0, atol=1e-9)  # PtychoPINN's meaning
    # Ptychodus, through our plugin, places every probe where the product it came from had it
    reopened = our_reader(registry, 'product_file_readers').read(out)
    np.testing.assert_allclose(product_pixels(reopened)[0], product_pixels(product)[0], rtol=0, atol=1e-6)
    dataset = our_reader(registry, 'diffraction_file_readers').read(out)
    patterns = np.concatenate([np.asarray(a.get_patterns()) for a in dataset])
    np.testing.assert_allclose(patterns, arrays['diff3d'], rtol=1e-5)


def test_ptychopinn_exporter_product_and_its_fix(sample_npz, tmp_path):
    _, arrays = sample_npz(**PHYSICS)
    raw = {**arrays, 'diff3d': arrays['diffraction']}
    path = exporter_product(tmp_path / 'exported.h5', raw)
    report = check_file(path)
    assert report.producer == "PtychoPINN's exporter"
    assert {'uncentred-metres', 'indexes-not-positions'} <= codes(report)
    assert report.on_object == 1.0  # through our reader, from /raw_data pixels
    assert "with Ptychodus's own HDF5 reader" in report.facts['on object']
    assert report.physics is not None and report.physics['status'] == 'consistent', report.physics
    out = tmp_path / 'fixed.h5'
    result = fix_file(path, out)
    assert result.report.producer == 'ptychopinn-ptychodus'
    assert result.report.clean, [f.what for f in result.report.findings]
    loaded = load_product(out)  # Ptychodus's own reader
    x_px, y_px = product_pixels(loaded)
    expected_x, expected_y = ptychopinn_pixels(arrays)
    np.testing.assert_allclose(x_px, expected_x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_px, expected_y, rtol=0, atol=1e-6)
    indexes = [position.index for position in loaded.probe_positions]
    assert indexes == list(range(len(arrays['xcoords'])))  # not scan_index (all 0)


def test_ours_and_plain_ptychopinn_files_are_clean(sample_npz, tmp_path):
    source, _ = sample_npz(**PHYSICS)
    plain = check_file(source)
    assert plain.producer == 'PtychoPINN NPZ' and plain.clean
    assert plain.physics is not None and plain.physics['best'] == 'ptychopinn'
    assert any(item['source'] == 'default' for item in plain.pixel_sizes)  # defaults named
    product = tmp_path / 'ours.h5'
    export_product(source, product, ExportMeta(object_pixel_size_m=5e-8, photon_energy_eV=8000.0,
                                               detector_distance_m=1.0))
    ours = check_file(product)
    assert ours.producer == 'ptychopinn-ptychodus' and ours.clean, [f.what for f in ours.findings]
    assert ours.physics is not None and ours.physics['status'] == 'consistent'
    npz = tmp_path / 'ours.npz'
    import_product(product, npz)
    back = check_file(npz)
    assert back.producer == 'ptychopinn-ptychodus' and back.clean


def test_ptychodus_product_is_recognised_and_clean(core, sample_npz, tmp_path):
    source, _ = sample_npz()
    wf = core.workflow_api
    diffraction = wf.load_diffraction_data(source, file_type='PtychoPINN_NPZ', block=True)
    product = wf.load_product(source, file_type='PtychoPINN_NPZ', diffraction=diffraction)
    core.run_tasks()
    saved = tmp_path / 'ptychodus.h5'
    product.save_product(saved, file_type='HDF5')
    report = check_file(saved)
    assert report.producer == 'Ptychodus product', report.producer
    assert report.clean and report.on_object == 1.0


def test_cli_exit_codes_and_json_hold_the_same_findings(ptychodus_export, sample_npz, tmp_path):
    path, _, _ = ptychodus_export
    text = run_check(path, cwd=tmp_path)
    assert text.returncode == 1, text.stderr
    assert "Ptychodus's own PtychoPINN export" in text.stdout and '=> ' in text.stdout
    as_json = run_check(path, '--json', cwd=tmp_path)
    assert as_json.returncode == 1
    reports = json.loads(as_json.stdout)
    assert len(reports) == 1 and reports[0]['clean'] is False and reports[0]['fixable'] is True
    for finding in reports[0]['findings']:
        assert finding['what'] in text.stdout
    clean, _ = sample_npz('clean.npz')
    assert run_check(clean, cwd=tmp_path).returncode == 0
    assert run_check(clean, '--strict', cwd=tmp_path).returncode == 1  # stand-in defaults are warnings
    both = run_check(clean, path, '--json', cwd=tmp_path)
    assert both.returncode == 1 and [r['clean'] for r in json.loads(both.stdout)] == [True, False]


def test_cli_fix_writes_a_clean_file_and_refuses_what_it_cannot_fix(ptychodus_export, sample_npz, tmp_path):
    path, _, _ = ptychodus_export
    out = tmp_path / 'fixed.npz'
    fixed = run_check(path, '--fix', out, cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f'wrote {out}' in fixed.stdout and check_file(out).clean
    again = run_check(path, '--fix', out, cwd=tmp_path)  # exists: refused, file kept
    assert_one_line_failure(again, names=['fixed.npz'])
    clean, _ = sample_npz('clean.npz')
    nothing = run_check(clean, '--fix', tmp_path / 'none.npz', cwd=tmp_path)
    assert 'nothing to fix' in assert_one_line_failure(nothing, absent=[tmp_path / 'none.npz'])
    same = run_check(path, '--fix', path, '--overwrite', cwd=tmp_path)
    assert 'never overwrites' in assert_one_line_failure(same)
    two = run_check(path, clean, '--fix', tmp_path / 'x.npz', cwd=tmp_path)
    assert 'exactly one FILE' in assert_one_line_failure(two, absent=[tmp_path / 'x.npz'])


def test_real_run1084_report(shared_data):
    report = check_file(shared_data / 'run1084_recon3_postPC.npz')
    assert report.producer == 'PtychoPINN reconstruction (no diffraction stack)'
    assert report.shapes['probe'] == [64, 64] and report.shapes['object'] == [227, 226]
    assert report.shapes['positions'] == [1087]
    assert report.on_object == 1.0
    assert report.clean
    assert report.physics is not None and report.physics['status'] == 'not applicable'
    assert {item['name'] for item in report.pixel_sizes if item['source'] == 'default'} >= {
        'object_pixel_width_m', 'photon_energy_eV'}
    assert 'differ by up to 3.88 px' in report.facts['positions']


def test_real_tike_siemens_star_is_not_a_ptychopinn_layout(shared_data, tmp_path):
    star = tmp_path / 'siemens-star.npz'
    star.write_bytes(bz2.decompress((shared_data / 'tike_siemens-star-small.npz.bz2').read_bytes()))
    report = check_file(star)
    assert report.producer == 'not a PtychoPINN layout' and codes(report) == {'not-ptychopinn'}
    assert 'data, probe, scan' in report.findings[0].what
    with pytest.raises(InvalidInputError, match='no known fix'):
        fix_file(star, tmp_path / 'out.npz')
    assert not (tmp_path / 'out.npz').exists()
    compressed = run_check(shared_data / 'tike_siemens-star-small.npz.bz2', cwd=tmp_path)
    assert compressed.returncode == 1 and 'bzip2-compressed' in compressed.stdout
    assert 'Traceback' not in compressed.stdout + compressed.stderr
