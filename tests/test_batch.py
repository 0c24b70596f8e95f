"""``convert_many`` on real executors, and the CLI's ``--dask-scheduler``.

No fake executors: the default process pool, a real ``dask.distributed.LocalCluster``
of two worker processes (one module-scoped cluster, closed at the end), and the CLI
in subprocesses. Products are checked with Ptychodus's ``load_product``.

The interrupt tests convert ~100 MB inputs (1600 x 128 x 128 float32, a few seconds
of gzip each) and signal the CLI while two conversions are running. What must hold
is that no destination name ever holds a partial product. What else is left:

* local pool, signal to the whole process group (Ctrl-C, a batch system's kill):
  the workers stop too, their temporary files are removed, nothing is published;
* local pool, signal to the CLI process only (``kill PID``): the CLI waits for the
  conversions already handed to the pool, which publish complete products;
* Dask: the CLI exits at once and cancels what has not started, but the workers
  finish the running conversions (a thread cannot be stopped); their temporary
  files are there when the CLI exits and are renamed to complete products later.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    FULL_META,
    assert_no_temp_files,
    assert_one_line_failure,
    start_cli,
    stderr_lines,
    temp_files,
)
from ptychodus.api.io import load_product

from ptychopinn_ptychodus import ConversionResult, ExportMeta, convert_many
from ptychopinn_ptychodus.cli.sample import write_sample

distributed = pytest.importorskip('dask.distributed')

#: Every quantity given (as ``FULL_META`` on the command line): no "unknown; using default" warnings.
META = ExportMeta(object_pixel_size_m=5e-8, probe_energy_eV=8000, detector_distance_m=1.5,
                  detector_pixel_size_m=7.5e-5)
#: A scan big enough that its conversion takes seconds: 1600 patterns of 128 x 128 float32 (~100 MB).
BIG = {'pattern_px': 128, 'scan_side': 40}
BIG_POSITIONS = 40 * 40


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def cluster() -> Iterator[Any]:
    """A real local Dask cluster: a scheduler and two single-threaded worker processes."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=':0') as local:
        yield local


@pytest.fixture(scope='module')
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture(scope='module')
def big_npz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One ~100 MB input, written once; tests hard-link it under several names."""
    path = tmp_path_factory.mktemp('big-input') / 'big.npz'
    write_sample(path, **BIG)
    yield path
    path.unlink()  # do not keep 100 MB in pytest's retained temporary folders


def _copies(source: Path, folder: Path, stems: list[str]) -> list[Path]:
    """``source`` under other names (hard links when possible: the inputs are only read)."""
    paths = []
    for stem in stems:
        path = folder / f'{stem}.npz'
        try:
            os.link(source, path)
        except OSError:
            path.write_bytes(source.read_bytes())
        paths.append(path)
    return paths


def _bad_inputs(folder: Path, good: Path) -> list[Path]:
    """Inputs that must fail: not an archive, a cut-off archive, a corrupt member (fails mid-read)."""
    text = folder / 'text.npz'
    text.write_text('not an archive')
    truncated = folder / 'truncated.npz'
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = folder / 'corrupt.npz'
    write_sample(corrupt, pattern_px=32, scan_side=12, compress=True)
    damaged = bytearray(corrupt.read_bytes())
    middle = len(damaged) // 2  # inside the deflated diffraction stack (the last, biggest member)
    damaged[middle : middle + 64] = bytes(64)
    corrupt.write_bytes(damaged)
    return [text, truncated, corrupt]


def _products_dir(tmp_path: Path) -> Path:
    folder = tmp_path / 'products'
    folder.mkdir()
    return folder


def _assert_complete(product: Path, positions: int) -> None:
    assert len(load_product(product).probe_positions) == positions, product


def _assert_converted(result: ConversionResult, source: Path, positions: int) -> None:
    assert result.ok, result
    assert result.input_npz == source
    assert result.output_product is not None and result.output_product.name == f'{source.stem}.h5'
    assert source.name in result.summary
    _assert_complete(result.output_product, positions)


def _assert_failed(result: ConversionResult, source: Path) -> None:
    assert not result.ok, result
    assert result.input_npz == source
    assert result.error and '\n' not in result.error, result
    assert source.name in result.error, result
    assert 'internal error' not in result.error, result
    assert result.output_product is not None and not result.output_product.exists(), result


# -- convert_many ---------------------------------------------------------------------------------


def test_convert_many_default_executor(sample_npz, tmp_path):
    inputs = [sample_npz(f'{name}.npz', scan_side=side)[0] for name, side in (('a', 3), ('b', 5), ('c', 6))]
    folder = _products_dir(tmp_path)

    results = convert_many(inputs, folder, meta=META)

    assert len(results) == len(inputs)
    for result, source, side in zip(results, inputs, (3, 5, 6), strict=True):
        _assert_converted(result, source, side * side)
    assert sorted(p.name for p in folder.iterdir()) == ['a.h5', 'b.h5', 'c.h5']


def test_convert_many_on_dask_with_failing_files(client, sample_npz, tmp_path):
    first, _ = sample_npz('first.npz')
    second, _ = sample_npz('second.npz', scan_side=5)
    text, truncated, corrupt = _bad_inputs(tmp_path, first)
    inputs = [text, first, truncated, corrupt, second]
    folder = _products_dir(tmp_path)

    with distributed.get_task_stream(client) as stream:
        results = convert_many(inputs, folder, executor=client.get_executor(), meta=META)

    assert [r.input_npz for r in results] == inputs
    _assert_converted(results[1], first, 9)
    _assert_converted(results[4], second, 25)
    for index in (0, 2, 3):
        _assert_failed(results[index], inputs[index])
    assert 'CRC' in (results[3].error or ''), results[3]
    assert sorted(p.name for p in folder.iterdir()) == ['first.h5', 'second.h5']
    assert_no_temp_files(folder)
    ran = [task for task in stream.data if str(task['key']).startswith('convert_one')]
    assert len(ran) == len(inputs), 'the conversions did not run on the Dask workers'


# -- the CLI with --dask-scheduler ----------------------------------------------------------------


def _batch_args(inputs: list[Path], folder: Path, *extra: str) -> list[str | os.PathLike[str]]:
    return ['--input-npz', *inputs, '--output-dir', folder, *FULL_META, *extra]


def test_cli_on_dask(cluster, client, sample_npz, run_cli, tmp_path):
    inputs = [sample_npz(f'{name}.npz')[0] for name in ('one', 'two', 'three')]
    folder = _products_dir(tmp_path)

    with distributed.get_task_stream(client) as stream:
        result = run_cli(*_batch_args(inputs, folder, '--dask-scheduler', cluster.scheduler_address))

    assert result.returncode == 0, result
    assert result.stderr == '', result
    ok = [line for line in result.stdout.splitlines() if line.startswith('ok')]
    assert len(ok) == 3, result.stdout
    for line, source in zip(ok, inputs, strict=True):
        assert source.name in line, result.stdout
    assert '3 of 3 converted' in result.stdout
    for source in inputs:
        _assert_complete(folder / f'{source.stem}.h5', 9)
    assert_no_temp_files(folder)
    assert sum(str(task['key']).startswith('convert_one') for task in stream.data) == 3


def test_cli_on_dask_with_a_failing_file(cluster, sample_npz, run_cli, tmp_path):
    first, _ = sample_npz('first.npz')
    last, _ = sample_npz('last.npz')
    bad = tmp_path / 'broken.npz'
    bad.write_text('not an archive')
    folder = _products_dir(tmp_path)

    result = run_cli(*_batch_args([first, bad, last], folder, '--dask-scheduler', cluster.scheduler_address))

    line = assert_one_line_failure(result, absent=[folder / 'broken.h5'])
    assert '1 of 3' in line
    lines = result.stdout.splitlines()
    failed = [text for text in lines if text.startswith('FAILED')]
    assert len(failed) == 1 and 'broken.npz' in failed[0], result.stdout
    assert sum(text.startswith('ok') for text in lines) == 2, result.stdout
    assert '2 of 3 converted' in result.stdout
    _assert_complete(folder / 'first.h5', 9)
    _assert_complete(folder / 'last.h5', 9)
    assert_no_temp_files(folder)


def test_cli_unreachable_dask_scheduler(sample_npz, run_cli, tmp_path):
    inputs = [sample_npz(f'{name}.npz')[0] for name in ('one', 'two')]
    folder = _products_dir(tmp_path)
    with socket.socket() as reserved:  # bound, never listening: connections are refused
        reserved.bind(('127.0.0.1', 0))
        address = f'tcp://127.0.0.1:{reserved.getsockname()[1]}'
        started = time.monotonic()
        result = run_cli(*_batch_args(inputs, folder, '--dask-scheduler', address))
        elapsed = time.monotonic() - started

    line = assert_one_line_failure(result, names=[address])
    assert 'cannot reach' in line
    assert elapsed < 25, f'{elapsed:.1f} s to give up on a refused connection'  # a 10 s connect timeout
    assert list(folder.iterdir()) == []


def test_cli_dask_scheduler_without_dask(sample_npz, tmp_path):
    inputs = [sample_npz(f'{name}.npz')[0] for name in ('one', 'two')]
    folder = _products_dir(tmp_path)
    blocker = tmp_path / 'no-dask' / 'dask'
    blocker.mkdir(parents=True)
    (blocker / '__init__.py').write_text("raise ImportError('No module named dask (hidden by the test)')\n")
    path = os.pathsep.join(filter(None, [str(blocker.parent), os.environ.get('PYTHONPATH')]))

    proc = start_cli(*_batch_args(inputs, folder, '--dask-scheduler', 'tcp://127.0.0.1:8786'),
                     cwd=tmp_path, env={'PYTHONPATH': path})
    out, err = proc.communicate(timeout=60)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    line = assert_one_line_failure(result, names=['--dask-scheduler'])
    assert 'dask' in line.lower() and 'pip install' in line, line
    assert list(folder.iterdir()) == []


# -- interrupted batches ---------------------------------------------------------------------------


def _wait_for_temps(proc: subprocess.Popen[str], folder: Path, count: int, timeout: float = 60) -> None:
    """Until ``count`` conversions are writing (their temporary files exist)."""
    deadline = time.monotonic() + timeout
    while len(temp_files(folder)) < count:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f'the CLI ended (rc={proc.returncode}) before {count} conversions ran: {out!r} {err!r}')
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail(f'{count} temporary files never appeared')
        time.sleep(0.02)


def _interrupt(proc: subprocess.Popen[str], signum: int, *, group: bool) -> subprocess.CompletedProcess[str]:
    time.sleep(0.5)
    assert proc.poll() is None, 'the batch finished before the signal; make the inputs bigger'
    if group:
        os.killpg(proc.pid, signum)  # like Ctrl-C in a terminal: the CLI and its pool workers
    else:
        proc.send_signal(signum)  # like kill PID: the CLI alone
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail('the CLI did not stop after the signal')
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _assert_interrupted(result: subprocess.CompletedProcess[str], signum: int) -> None:
    described = f'rc={result.returncode} stdout={result.stdout!r} stderr={result.stderr!r}'
    assert result.returncode == 130, described
    lines = stderr_lines(result.stderr)
    assert len(lines) == 1 and signal.Signals(signum).name in lines[0], described
    assert 'Traceback' not in result.stdout + result.stderr, described


def _assert_only_complete_products(folder: Path, stems: list[str]) -> list[str]:
    """Every file at a destination name is a whole product; returns the stems published."""
    published = sorted(p.stem for p in folder.glob('*.h5'))
    assert set(published) <= set(stems), published
    for stem in published:
        _assert_complete(folder / f'{stem}.h5', BIG_POSITIONS)
    return published


def _wait_for_idle_workers(client: Any) -> None:
    """A cancelled task keeps its worker's only thread until it returns: a no-op task on
    every worker runs only once the orphaned conversions are over."""
    for worker in client.scheduler_info()['workers']:
        client.submit(time.sleep, 0, workers=[worker], pure=False).result(timeout=120)


STEMS = ['s1', 's2', 's3', 's4']


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_interrupted_dask_batch_publishes_no_partial_product(signum, cluster, client, big_npz, tmp_path):
    inputs = _copies(big_npz, tmp_path, STEMS)
    folder = _products_dir(tmp_path)
    proc = start_cli(*_batch_args(inputs, folder, '--dask-scheduler', cluster.scheduler_address),
                     cwd=tmp_path, start_new_session=True)
    _wait_for_temps(proc, folder, 2)

    result = _interrupt(proc, signum, group=True)

    _assert_interrupted(result, signum)
    _assert_only_complete_products(folder, STEMS)  # what the CLI left when it returned
    _wait_for_idle_workers(client)
    published = _assert_only_complete_products(folder, STEMS)  # and once the workers are done
    assert_no_temp_files(folder)
    assert len(published) <= 2, f'conversions not started at the signal were run: {published}'


@pytest.mark.parametrize(
    ('signum', 'group', 'stems'),
    [(signal.SIGINT, True, STEMS), (signal.SIGTERM, False, STEMS), (signal.SIGINT, False, STEMS)],
    ids=['SIGINT-process-group', 'SIGTERM-cli-only', 'SIGINT-cli-only'],
)
def test_interrupted_local_batch_publishes_no_partial_product(signum, group, stems, big_npz, tmp_path):
    inputs = _copies(big_npz, tmp_path, stems)
    folder = _products_dir(tmp_path)
    proc = start_cli(*_batch_args(inputs, folder, '--jobs', '2'), cwd=tmp_path, start_new_session=True)
    _wait_for_temps(proc, folder, 2)

    result = _interrupt(proc, signum, group=group)

    _assert_interrupted(result, signum)
    published = _assert_only_complete_products(folder, stems)
    assert_no_temp_files(folder)
    # Ctrl-C reaches the workers directly; `kill PID` reaches the CLI, which passes it on. Either
    # way the running conversions stop, remove their temporary files and publish nothing, and
    # the task a process pool has already queued beyond its workers is not run.
    assert published == []
    assert 'running conversions were stopped' in result.stderr

