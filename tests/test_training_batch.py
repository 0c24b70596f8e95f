"""Training-data exports in batch: ``export_many`` on real executors and the CLI's batch form.

No fake executors: the default process pool and a real ``dask.distributed.LocalCluster``
(two worker processes, ``client.get_executor()``), as tests/test_batch.py does for the
converter. Inputs are written by Ptychodus's own CXI and HDF5 product writers
(``_ptychodus_files`` in tests/test_training_data.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip('ptychodus', reason='Ptychodus is needed to read and write its own formats')

from test_training_data import _ptychodus_files, assert_ptychopinn_loads  # noqa: E402

from ptychopinn_ptychodus.cli.tool import main  # noqa: E402
from ptychopinn_ptychodus.convert.training_npz import TrainingReport  # noqa: E402
from ptychopinn_ptychodus.host.training import TrainingJob, TrainingSources, export_many  # noqa: E402


def _two_scans(tmp_path: Path) -> list[tuple[Path, Path, dict[str, np.ndarray]]]:
    scans = []
    for name, side in (('a', 5), ('b', 6)):
        folder = tmp_path / name
        folder.mkdir()
        cxi, product_h5, arrays = _ptychodus_files(folder, scan_side=side)
        renamed = folder / f'scan_{name}.cxi'
        cxi.rename(renamed)
        scans.append((renamed, product_h5, arrays))
    return scans


def _jobs(scans: list[Any], out: Path) -> list[TrainingJob]:
    jobs = [TrainingJob(TrainingSources(cxi, product=h5, product_reader='HDF5'), out / f'{cxi.stem}.npz')
            for cxi, h5, _ in scans]
    missing = TrainingSources(out / 'missing.cxi', product=scans[0][1], product_reader='HDF5')
    return [jobs[0], TrainingJob(missing, out / 'missing.npz'), jobs[1]]


def _check(results: list[Any], scans: list[Any], out: Path) -> None:
    assert isinstance(results[1], str) and 'missing.cxi: no such file' in results[1]
    assert not (out / 'missing.npz').exists()
    for result, (cxi, _, original) in zip((results[0], results[2]), scans, strict=True):
        assert isinstance(result, TrainingReport)
        got = assert_ptychopinn_loads(out / f'{cxi.stem}.npz')
        np.testing.assert_allclose(got['xcoords'], original['xcoords'], atol=1e-6, rtol=0)
        np.testing.assert_allclose(got['ycoords'], original['ycoords'], atol=1e-6, rtol=0)
        np.testing.assert_array_equal(got['probeGuess'], original['probeGuess'])


def test_export_many_default_process_pool(tmp_path: Path) -> None:
    scans = _two_scans(tmp_path)
    out = tmp_path / 'out'
    out.mkdir()
    _check(list(export_many(_jobs(scans, out))), scans, out)


def test_export_many_on_dask_local_cluster(tmp_path: Path) -> None:
    distributed = pytest.importorskip('dask.distributed', reason="needs the [dask] extra")
    scans = _two_scans(tmp_path)
    out = tmp_path / 'out'
    out.mkdir()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=':0') as cluster, distributed.Client(cluster) as client:
        results = list(export_many(_jobs(scans, out), client.get_executor()))
    _check(results, scans, out)


def test_cli_batch_pairs_products_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scans = _two_scans(tmp_path)
    out = tmp_path / 'batch'
    argv = ['training-data', *(str(s[0]) for s in scans), '--product', *(str(s[1]) for s in scans),
            '--product-reader', 'HDF5', '--output-dir', str(out), '--jobs', '2']
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == '2 of 2 exported'
    for cxi, _, original in scans:
        got = assert_ptychopinn_loads(out / f'{cxi.stem}.npz')
        np.testing.assert_allclose(got['xcoords'], original['xcoords'], atol=1e-6, rtol=0)
    # three products for two diffraction files: refused in one line, nothing written
    bad = tmp_path / 'bad'
    argv = ['training-data', *(str(s[0]) for s in scans), '--product', *(str(s[1]) for s in scans),
            str(scans[0][1]), '--output-dir', str(bad)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['ptychopinn-ptychodus training-data: error: --product: give one file, or one per '
                   'diffraction file (2), not 3']
    assert not bad.exists()
    assert main(['training-data', str(scans[0][0]), str(scans[1][0]), '-o', str(tmp_path / 'x.npz')]) == 1
    assert 'several diffraction files need --output-dir' in capsys.readouterr().err
