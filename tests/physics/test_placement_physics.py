"""The placement test (``convert/placement.py``) on files with a known placement (issue 19, item 4).

Run in the pty-chi venv: ``tests/matrix.py physics`` (``.venv/bin/python -m pytest tests/physics``).

Verified here:

(a) the physics-check simulation (``simulate.py``: PtychoPINN's patch rule) with the
    true probe and object: the ptychopinn convention, clearly;
(b) a pty-chi LSQML reconstruction of that simulation made in headless Ptychodus 1.7
    (``placement_jobs.py``), exported with Ptychodus's own
    ``save_ptychopinn_training_data``: identity detected, and flagged (the file
    records nothing, so PtychoPINN's default would misplace it); the same result
    exported with our ``training-data`` command: ptychopinn;
(c) the real tike Siemens star (``../shared/data/tike_siemens-star-small.npz.bz2``)
    reconstructed the same way and exported both ways: detected both ways;
(d) Run1084 (a reconstruction without a diffraction stack): not applicable;
plus the cost on 1000 patterns of 128 x 128 (the figure goes to the report).

The reconstructions run once per module (two worker processes, one per dataset, one
torch thread each). Measured figures go to ``test-artifacts/placement_physics.json``
before any assertion.
"""

from __future__ import annotations

import bz2
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ptychopinn_ptychodus.convert.placement import (
    CONSISTENT,
    NOT_APPLICABLE,
    PlacementVerdict,
    assess_placement,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARTIFACTS = REPO / 'test-artifacts'
SIM_EPOCHS = 60
TIKE_EPOCHS = 40
BATCH_SIZE = 32
WORKER_TIMEOUT_S = 1500


def _load(name: str, file: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, HERE / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


simulate = _load('ptychopinn_placement_simulate', 'simulate.py')


def _needs_ptychi() -> None:
    try:
        import ptychi  # noqa: F401
        import ptychodus.model  # noqa: F401
    except ImportError as exc:
        if os.environ.get('PTYCHOPINN_PHYSICS_REQUIRED') == '1':
            raise
        pytest.skip(f'needs pty-chi and Ptychodus ({exc}); run `make test-physics`')


def _tool() -> str:
    found = shutil.which('ptychopinn-ptychodus', path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f'ptychopinn-ptychodus is not installed next to {sys.executable}')
    return found


def tike_ptychopinn_npz(shared: Path, folder: Path) -> Path:
    """tike's Siemens star as a PtychoPINN NPZ, the way PtychoPINN's own files are laid out.

    tike (``tests/data`` of the tike repository) stores counts with the zero frequency at
    the array corner and ``scan`` as the probe window's corner (``[..., 0]`` = row). A
    PtychoPINN file holds ``diffraction`` amplitudes with the zero frequency at ``N // 2``
    (``ptycho/tf_helper.py`` ``pad_and_diffract`` fftshifts) and positions as the object
    pixel at patch index ``N // 2`` (``ptycho/raw_data.py`` ``get_image_patches``), so
    ``xcoords = corner + N // 2``; the object guess is all ones.
    """
    source = shared / 'tike_siemens-star-small.npz.bz2'
    if not source.exists():
        pytest.fail(f'{source} is missing (the shared data folder must hold it)')
    unpacked = folder / 'tike.npz'
    with bz2.open(source, 'rb') as packed, open(unpacked, 'wb') as out:
        shutil.copyfileobj(packed, out)
    with np.load(unpacked, allow_pickle=False) as tike:
        data, probe, scan = tike['data'][0], tike['probe'][0, 0, 0, 0], tike['scan'][0]
    unpacked.unlink()
    n = data.shape[-1]
    rows, cols = scan[:, 0].astype(np.float64), scan[:, 1].astype(np.float64)
    xcoords = cols - cols.min() + 8 + n // 2
    ycoords = rows - rows.min() + 8 + n // 2
    height = int(np.ceil(ycoords.max() + n / 2)) + 9
    width = int(np.ceil(xcoords.max() + n / 2)) + 9
    path = folder / 'tike_ptychopinn.npz'
    np.savez(
        path,
        diffraction=np.sqrt(np.fft.fftshift(data, axes=(-2, -1))).astype(np.float32),
        probeGuess=probe.astype(np.complex64),
        objectGuess=np.ones((height, width), dtype=np.complex64),
        xcoords=xcoords,
        ycoords=ycoords,
        xcoords_start=xcoords,
        ycoords_start=ycoords,
        scan_index=np.zeros(xcoords.size, dtype=np.int64),
    )
    return path


def _verdict_of_npz(path: Path, *, intensities: bool) -> PlacementVerdict:
    """The placement test on a PtychoPINN NPZ's stack, probe, object and coordinates.

    ``intensities``: the stack holds intensities (Ptychodus's export writes what it
    measured) rather than amplitudes (ours writes ``diff3d`` amplitudes).
    ``_metadata`` (a pickled object array) is never read.
    """
    with np.load(path, allow_pickle=False) as npz:
        stack = npz['diff3d'].astype(np.float32)
        if intensities:
            stack = np.sqrt(np.maximum(stack, 0))
        return assess_placement(stack, npz['probeGuess'], npz['objectGuess'], npz['xcoords'], npz['ycoords'])


def _summary(verdict: PlacementVerdict) -> dict[str, Any]:
    return {
        'status': verdict.status,
        'best': verdict.best,
        'errors': verdict.errors,
        'best_offset_px': verdict.best_offset_px,
        'disagrees_with_recorded': verdict.disagrees_with_recorded,
        't': verdict.t_statistic,
        'shuffled_error': verdict.shuffled_error,
        'patterns_used': verdict.patterns_used,
        'seconds': round(verdict.seconds, 2),
        'sentence': verdict.sentence,
        'notes': list(verdict.notes),
    }


@pytest.fixture(scope='module')
def report() -> dict[str, Any]:
    return {}


@pytest.fixture(scope='module', autouse=True)
def _write_report(report: dict[str, Any]) -> Any:
    yield
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / 'placement_physics.json').write_text(
        json.dumps(report, indent=2, default=str), encoding='utf-8'
    )


@pytest.fixture(scope='module')
def sim(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return simulate.simulate(tmp_path_factory.mktemp('placement_sim'))


@pytest.fixture(scope='module')
def exports(
    sim: dict[str, Path], shared_data: Path, tmp_path_factory: pytest.TempPathFactory, report: dict[str, Any]
) -> dict[str, Any]:
    """Both reconstructions (one worker each, in parallel) and their exports both ways."""
    _needs_ptychi()
    work = tmp_path_factory.mktemp('placement_recon')
    inputs = {
        'sim': (sim['perturbed_probe'], SIM_EPOCHS, simulate.PROBE_N),
        'tike': (tike_ptychopinn_npz(shared_data, work), TIKE_EPOCHS, 128),
    }
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}
    procs = []
    t0 = time.perf_counter()
    for name, (path, epochs, n) in inputs.items():
        job = {
            'name': name,
            'input': str(path),
            'epochs': epochs,
            'batch_size': BATCH_SIZE,
            'crop_px': n,
            'ptychodus_npz': str(work / f'{name}_ptychodus.npz'),
            'product_h5': str(work / f'{name}_product.h5'),
        }
        jobs_file = work / f'jobs_{name}.json'
        jobs_file.write_text(json.dumps([job]), encoding='utf-8')
        log_path = work / f'worker_{name}.log'
        log = log_path.open('w', encoding='utf-8')
        proc = subprocess.Popen(
            [sys.executable, str(HERE / 'placement_jobs.py'), str(jobs_file)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
            cwd=work,
        )
        procs.append((name, proc, log, log_path))
    out: dict[str, Any] = {'work': work, 'inputs': {k: v[0] for k, v in inputs.items()}, 'info': {}}
    for name, proc, log, log_path in procs:
        try:
            stdout, _ = proc.communicate(timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, _ = proc.communicate()
        log.close()
        lines = [json.loads(line) for line in stdout.splitlines() if line.startswith('{')]
        info = lines[-1] if lines else {'error': f'no result; log tail: {log_path.read_text()[-2000:]}'}
        out['info'][name] = info
    report['reconstruction_wall_s'] = round(time.perf_counter() - t0, 1)
    report['reconstructions'] = out['info']
    for name, (path, _, _) in inputs.items():
        info = out['info'][name]
        if 'error' in info:
            continue
        ours = work / f'{name}_ours.npz'
        run = subprocess.run(
            [
                _tool(),
                'training-data',
                str(path),
                '--diffraction-reader',
                'PtychoPINN_NPZ',
                '--product',
                str(work / f'{name}_product.h5'),
                '--product-reader',
                'HDF5',
                '-o',
                str(ours),
                '--quiet',
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        info['ours_export'] = run.returncode == 0 and ours.exists()
        info['ours_export_stderr'] = run.stderr[-2000:]
    return out


def _export(exports: dict[str, Any], name: str, how: str) -> Path:
    info = exports['info'][name]
    assert 'error' not in info, f'{name} reconstruction failed: {info["error"]}'
    if how == 'ours':
        assert info['ours_export'], info['ours_export_stderr']
    return exports['work'] / f'{name}_{how}.npz'


# -- (a) the simulation's truth ---------------------------------------------------------------


def test_simulation_truth_is_ptychopinn_clearly(sim: dict[str, Path], report: dict[str, Any]) -> None:
    truth = np.load(sim['truth'])
    with np.load(sim['true_probe']) as npz:
        verdict = assess_placement(
            npz['diffraction'], truth['probe'], truth['object'], npz['xcoords'], npz['ycoords']
        )
    report['a_simulation_truth'] = _summary(verdict)
    print(verdict.sentence)
    assert verdict.status == CONSISTENT and verdict.best == 'ptychopinn'
    assert not verdict.disagrees_with_recorded
    assert verdict.errors['identity'] > 1.3 * verdict.errors['ptychopinn']
    assert verdict.best_offset_px == pytest.approx((0.5, 0.5), abs=0.1)


# -- (b) a pty-chi reconstruction of the simulation and (c) the real tike Siemens star, each
# exported by Ptychodus's own PtychoPINN export (identity positions, intensities in diff3d) and by us


@pytest.mark.parametrize(
    ('source', 'exporter', 'key', 'expected'),
    [
        ('sim', 'ptychodus', 'b_sim_ptychodus_export', 'identity'),
        ('sim', 'ours', 'b_sim_our_export', 'ptychopinn'),
        ('tike', 'ptychodus', 'c_tike_ptychodus_export', 'identity'),
        ('tike', 'ours', 'c_tike_our_export', 'ptychopinn'),
    ],
)
def test_exported_reconstruction_supports_the_exporters_convention(
    exports: dict[str, Any], report: dict[str, Any], source: str, exporter: str, key: str, expected: str
) -> None:
    by_ptychodus = exporter == 'ptychodus'
    verdict = _verdict_of_npz(_export(exports, source, exporter), intensities=by_ptychodus)
    report[key] = _summary(verdict)
    print(verdict.sentence)
    assert verdict.status == CONSISTENT and verdict.best == expected, verdict.sentence
    # Ptychodus's export records no convention, so PtychoPINN's default (ptychopinn) is wrong for it
    # and the check must say so; ours records the right one
    assert verdict.disagrees_with_recorded == by_ptychodus
    if by_ptychodus:
        assert 'disagrees with the default ptychopinn (nothing recorded)' in verdict.sentence


# -- (d) Run1084 --------------------------------------------------------------------------------


def test_run1084_is_not_applicable(shared_data: Path, report: dict[str, Any]) -> None:
    path = shared_data / 'run1084_recon3_postPC.npz'
    if not path.exists():
        pytest.fail(f'{path} is missing (the shared data folder must hold it)')
    with np.load(path, allow_pickle=False) as npz:
        stack = npz['diffraction'] if 'diffraction' in npz.files else None
        verdict = assess_placement(
            stack, npz['probeGuess'], npz['objectGuess'], npz['xcoords'], npz['ycoords']
        )
    report['d_run1084'] = _summary(verdict)
    assert verdict.status == NOT_APPLICABLE
    assert verdict.sentence == 'placement test not applicable: no diffraction stack'


# -- cost ---------------------------------------------------------------------------------------


def test_cost_of_1000_patterns_of_128(report: dict[str, Any]) -> None:
    """The issue's budget: about 10 s for 1000 patterns of 128 x 128 on 2 cores (default subsampling)."""
    rng = np.random.default_rng(1)
    n, m = 128, 1000
    side = int(np.ceil(np.sqrt(m)))
    obj = np.exp(1j * rng.uniform(-1, 1, (n + 8 * side + 16, n + 8 * side + 16))).astype(np.complex64)
    grid = 8.0 + n / 2 + 8.0 * np.arange(side)
    yy, xx = np.meshgrid(grid, grid, indexing='ij')
    x, y = xx.ravel()[:m] + rng.uniform(-1, 1, m), yy.ravel()[:m] + rng.uniform(-1, 1, m)
    probe = simulate.make_probe(n, 12.0, 0.02).astype(np.complex64)
    amplitudes = rng.uniform(0, 10, (m, n, n)).astype(np.float32)
    t0 = time.perf_counter()
    verdict = assess_placement(amplitudes, probe, obj, x, y)
    seconds = time.perf_counter() - t0
    report['cost_1000x128'] = {
        'seconds': round(seconds, 2),
        'patterns_used': verdict.patterns_used,
        'cpu_count': os.cpu_count(),
        'load_average': os.getloadavg(),
    }
    print(f'{m} patterns of {n}x{n}: {seconds:.1f} s ({verdict.patterns_used} modelled)')
    assert verdict.patterns_used == 256
    assert seconds < 60, f'{seconds:.1f} s (budget about 10 s on an idle 2-core machine)'
