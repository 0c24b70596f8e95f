"""Bad paths are one-line errors naming the path, in both directions.

Every case runs the real CLI in a subprocess and checks: exit status 1, exactly
one stderr line that names the offending path, no traceback, nothing written at
the destination and no temporary file anywhere under ``tmp_path``.

Permission cases run the CLI without the capabilities that let root ignore file
modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER are dropped from its
bounding set before ``exec``), so ``chmod 000`` and a 0o500 folder really deny
access whether the suite runs as root or not.
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
from pathlib import Path

import pytest
from helpers import FULL_META, assert_no_temp_files, assert_one_line_failure

from ptychopinn_ptychodus import export_product

DIRECTIONS = ['forward', 'reverse']


def drop_file_permission_override() -> None:
    """``preexec_fn``: a root child loses CAP_DAC_OVERRIDE/DAC_READ_SEARCH/FOWNER.

    Dropping them from the bounding set before ``exec`` means the new program runs
    as uid 0 without them, so file modes (``chmod 000``, a 0o500 folder) apply to
    it exactly as to an ordinary user. A no-op when not root.
    """
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), 'prctl(PR_CAPBSET_DROP) failed')


@pytest.fixture
def inputs(sample_npz, tmp_path) -> dict[str, Path]:
    npz, _ = sample_npz('good.npz')
    product = tmp_path / 'good.h5'
    export_product(npz, product)
    return {'forward': npz, 'reverse': product}


def _args(direction: str, source: Path | str, dest: Path | str) -> list[str]:
    if direction == 'forward':
        return ['--input-npz', str(source), '--output-product', str(dest), *FULL_META]
    return ['--input-product', str(source), '--output-npz', str(dest)]


def _suffix(direction: str) -> str:
    return '.h5' if direction == 'forward' else '.npz'


@pytest.fixture
def readonly_folder(tmp_path) -> Path:
    folder = tmp_path / 'readonly'
    folder.mkdir()
    folder.chmod(0o500)
    yield folder
    folder.chmod(0o700)


# -- bad destinations ------------------------------------------------------------------------------


@pytest.mark.parametrize('direction', DIRECTIONS)
def test_destination_whose_parent_is_a_file(run_cli, inputs, tmp_path, direction):
    blocker = tmp_path / 'not-a-folder'
    blocker.write_text('a regular file')
    dest = blocker / f'out{_suffix(direction)}'
    result = run_cli(*_args(direction, inputs[direction], dest))
    assert_one_line_failure(result, names=[str(dest)])
    assert blocker.read_text() == 'a regular file'
    assert_no_temp_files(tmp_path)


@pytest.mark.parametrize('direction', DIRECTIONS)
def test_destination_in_proc(run_cli, inputs, tmp_path, direction):
    """``/proc`` refuses new files even for root."""
    dest = Path(f'/proc/ptychopinn_test{_suffix(direction)}')
    result = run_cli(*_args(direction, inputs[direction], dest))
    assert_one_line_failure(result, names=[str(dest)], absent=[dest])
    assert_no_temp_files(tmp_path)


@pytest.mark.parametrize('direction', DIRECTIONS)
def test_destination_in_a_read_only_folder(run_cli, inputs, tmp_path, readonly_folder, direction):
    dest = readonly_folder / f'out{_suffix(direction)}'
    result = run_cli(*_args(direction, inputs[direction], dest),
                     preexec_fn=drop_file_permission_override)
    line = assert_one_line_failure(result, names=[str(dest)], absent=[dest])
    assert 'writable' in line or 'permission' in line.lower(), line
    assert list(readonly_folder.iterdir()) == []


@pytest.mark.parametrize('direction', DIRECTIONS)
def test_destination_is_an_existing_directory(run_cli, inputs, tmp_path, direction):
    dest = tmp_path / f'folder{_suffix(direction)}'
    dest.mkdir()
    (dest / 'keep.txt').write_text('keep')
    for extra in ([], ['--overwrite']):
        result = run_cli(*_args(direction, inputs[direction], dest), *extra)
        line = assert_one_line_failure(result, names=[str(dest)])
        assert 'directory' in line, line
        assert dest.is_dir() and (dest / 'keep.txt').read_text() == 'keep'
    assert_no_temp_files(tmp_path)


@pytest.mark.parametrize('direction', DIRECTIONS)
def test_destination_folder_missing(run_cli, inputs, tmp_path, direction):
    """Convention since issue 20: the CLI creates a missing folder, as the Python API does, and says so."""
    dest = tmp_path / 'missing-folder' / f'out{_suffix(direction)}'
    result = run_cli(*_args(direction, inputs[direction], dest))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == f'convert_to_ptychodus_product: created folder {dest.parent}'
    assert dest.is_file()
    assert_no_temp_files(tmp_path)


@pytest.mark.parametrize('direction', DIRECTIONS)
def test_destination_folder_cannot_be_created(run_cli, inputs, tmp_path, direction):
    blocker = tmp_path / 'a-file'
    blocker.write_text('keep')
    dest = blocker / 'sub' / f'out{_suffix(direction)}'
    result = run_cli(*_args(direction, inputs[direction], dest))
    line = assert_one_line_failure(result, names=[str(dest)])
    assert 'cannot create folder' in line, line
    assert blocker.read_text() == 'keep'
    assert_no_temp_files(tmp_path)


# -- bad inputs ----------------------------------------------------------------------------------


@pytest.mark.parametrize('direction', DIRECTIONS)
def test_missing_input(run_cli, tmp_path, direction):
    source = tmp_path / f'nowhere{".npz" if direction == "forward" else ".h5"}'
    dest = tmp_path / f'out{_suffix(direction)}'
    result = run_cli(*_args(direction, source, dest))
    assert_one_line_failure(result, names=[str(source)], absent=[dest])
    assert_no_temp_files(tmp_path)


@pytest.mark.parametrize('direction', DIRECTIONS)
def test_unreadable_input(run_cli, inputs, tmp_path, direction):
    source = inputs[direction]
    source.chmod(0o000)
    dest = tmp_path / f'out{_suffix(direction)}'
    try:
        result = run_cli(*_args(direction, source, dest),
                         preexec_fn=drop_file_permission_override)
    finally:
        source.chmod(0o644)
    line = assert_one_line_failure(result, names=[str(source)], absent=[dest])
    assert 'permission' in line.lower(), line
    assert_no_temp_files(tmp_path)


@pytest.mark.parametrize('direction', DIRECTIONS)
def test_input_is_a_directory(run_cli, tmp_path, direction):
    source = tmp_path / f'folder{".npz" if direction == "forward" else ".h5"}'
    source.mkdir()
    dest = tmp_path / f'out{_suffix(direction)}'
    result = run_cli(*_args(direction, source, dest))
    line = assert_one_line_failure(result, names=[str(source)], absent=[dest])
    assert 'directory' in line, line
    assert_no_temp_files(tmp_path)


@pytest.mark.parametrize('direction', DIRECTIONS)
def test_input_is_a_fifo(run_cli, tmp_path, direction):
    """Opening a FIFO for reading blocks until a writer appears: a converter must refuse
    anything that is not a regular file instead of waiting forever."""
    source = tmp_path / f'pipe{".npz" if direction == "forward" else ".h5"}'
    os.mkfifo(source)
    dest = tmp_path / f'out{_suffix(direction)}'
    try:
        result = run_cli(*_args(direction, source, dest), timeout=2)
    except subprocess.TimeoutExpired:
        pytest.fail(f'the CLI hangs on a FIFO given as input ({direction}); it should refuse it')
    assert_one_line_failure(result, names=[str(source)], absent=[dest])
    assert_no_temp_files(tmp_path)


def _address_space_limit() -> None:
    limit = 1 << 30  # keeps an unbounded read from exhausting the machine
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.parametrize('direction', DIRECTIONS)
def test_input_is_an_endless_character_device(run_cli, tmp_path, direction):
    """``/dev/zero`` never ends: it must be refused, not read into memory until it runs out."""
    dest = tmp_path / f'out{_suffix(direction)}'
    try:
        result = run_cli(*_args(direction, '/dev/zero', dest), timeout=30,
                         preexec_fn=_address_space_limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f'the CLI hangs reading /dev/zero ({direction})')
    assert_one_line_failure(result, names=['/dev/zero'], absent=[dest])
    assert_no_temp_files(tmp_path)
