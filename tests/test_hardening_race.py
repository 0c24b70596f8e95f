"""Writers racing for one destination never produce a mixed or partial file.

Several CLI processes convert different inputs (different object sizes, so every
input is recognisable) to the same destination at the same time. Afterwards the
destination is one whole product that Ptychodus loads and that matches exactly
one input in every array, and no temporary file remains.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import FULL_META, assert_no_temp_files, assert_one_line_failure, start_cli
from ptychodus.api.io import load_product

WRITERS = 6


@pytest.fixture
def racing_inputs(sample_npz) -> list[tuple[Path, dict[str, np.ndarray]]]:
    made = [
        sample_npz(f'writer{i}.npz', pattern_px=32, scan_side=8 + i, step_px=5 + i, seed=i)
        for i in range(WRITERS)
    ]
    shapes = {arrays['objectGuess'].shape for _, arrays in made}
    assert len(shapes) == WRITERS, 'inputs must be distinguishable by their object size'
    return made


def _race(inputs: list[Path], dest: Path, cwd: Path, *extra: str) -> list[subprocess.CompletedProcess[str]]:
    procs = [
        start_cli('--input-npz', npz, '--output-product', dest, '--name', npz.stem, *extra, *FULL_META,
                  cwd=cwd)
        for npz in inputs
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def _matching_writer(dest: Path, made: list[tuple[Path, dict[str, np.ndarray]]]) -> int:
    """Index of the single input the destination is, checked array by array."""
    product = load_product(dest)  # Ptychodus's own loader: the file is whole
    obj = np.asarray(product.object_.get_array())
    obj = obj[0] if obj.ndim == 3 else obj
    matches = [
        i for i, (_, arrays) in enumerate(made)
        if obj.shape == arrays['objectGuess'].shape and np.array_equal(obj, arrays['objectGuess'])
    ]
    assert len(matches) == 1, f'the destination matches inputs {matches}, expected exactly one'
    winner = matches[0]
    arrays = made[winner][1]
    assert product.metadata.name == made[winner][0].stem
    assert len(product.probe_positions) == len(arrays['xcoords'])
    with h5py.File(dest, 'r') as h5:
        np.testing.assert_array_equal(h5['raw_data/xcoords'][()], arrays['xcoords'])
        np.testing.assert_array_equal(h5['raw_data/diffraction'][()], arrays['diffraction'])
        np.testing.assert_array_equal(h5['probe'][()], arrays['probeGuess'])
    return winner


def test_racing_writers_with_overwrite(racing_inputs, tmp_path):
    dest = tmp_path / 'shared' / 'product.h5'
    dest.parent.mkdir()
    results = _race([p for p, _ in racing_inputs], dest, tmp_path, '--overwrite')

    for result in results:
        assert result.returncode == 0, result
        assert 'Traceback' not in result.stderr, result
    _matching_writer(dest, racing_inputs)
    assert_no_temp_files(tmp_path)
    assert [p.name for p in dest.parent.iterdir()] == ['product.h5']


def test_racing_writers_without_overwrite(racing_inputs, tmp_path):
    """No-clobber: exactly one writer publishes; the others fail cleanly and replace nothing."""
    dest = tmp_path / 'shared' / 'product.h5'
    dest.parent.mkdir()
    results = _race([p for p, _ in racing_inputs], dest, tmp_path)

    succeeded = [i for i, r in enumerate(results) if r.returncode == 0]
    assert len(succeeded) == 1, results
    for i, result in enumerate(results):
        if i in succeeded:
            continue
        assert_one_line_failure(result, names=[str(dest)])
    assert _matching_writer(dest, racing_inputs) == succeeded[0]
    assert_no_temp_files(tmp_path)
    assert [p.name for p in dest.parent.iterdir()] == ['product.h5']
