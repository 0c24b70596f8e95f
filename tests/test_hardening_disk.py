"""Full disks and file-size limits are a clean, one-line failure.

The CLI runs in a subprocess under ``RLIMIT_FSIZE`` far below the size of the
product (the CLI ignores SIGXFSZ, so writes fail with EFBIG), and, as root, with
its destination on a 1 MiB tmpfs (a real ENOSPC). Every run must exit 1 with one
stderr line naming the destination and the limit / lack of space, publish
nothing and leave no temporary file.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import FULL_META, assert_no_temp_files, assert_one_line_failure

from ptychopinn_ptychodus import export_product

LIMIT_PATTERN = r'file size limit|too large'
SPACE_PATTERN = r'no space left'
IS_ROOT = os.geteuid() == 0


@pytest.fixture
def medium_npz(sample_npz) -> Path:
    """144 patterns of 64 x 64 float32: a ~2.5 MB input whose products are MBs."""
    path, _ = sample_npz('medium.npz', pattern_px=64, scan_side=12)
    return path


@pytest.fixture
def medium_product(medium_npz, tmp_path) -> Path:
    product = tmp_path / 'medium_product.h5'
    export_product(medium_npz, product, compression='none')
    assert product.stat().st_size > 2_000_000
    return product


def _fsize_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _check(result: subprocess.CompletedProcess[str], dest: Path, pattern: str, folder: Path) -> None:
    line = assert_one_line_failure(result, names=[dest.name], absent=[dest])
    assert re.search(pattern, line, re.IGNORECASE), f'{pattern!r} not in {line!r}'
    assert_no_temp_files(folder)


# -- RLIMIT_FSIZE ------------------------------------------------------------------------------


@pytest.mark.parametrize('limit', [200_000, 1_000_000], ids=['200kB', '1MB'])
@pytest.mark.parametrize('compression', ['gzip', 'none'])
def test_file_size_limit_forward(medium_npz, run_cli, tmp_path, limit, compression):
    out = tmp_path / 'out' / 'product.h5'
    out.parent.mkdir()
    result = run_cli(
        '--input-npz', medium_npz, '--output-product', out, '--compression', compression, *FULL_META,
        preexec_fn=_fsize_limit(limit),
    )
    _check(result, out, LIMIT_PATTERN, tmp_path)


def test_file_size_limit_with_diffraction_output(medium_npz, run_cli, tmp_path):
    """The product fits (no raw bundle, ~90 kB) but the diffraction file does not: neither is kept."""
    out = tmp_path / 'product.h5'
    diffraction = tmp_path / 'diffraction.h5'
    result = run_cli(
        '--input-npz', medium_npz, '--output-product', out, '--no-include-diffraction',
        '--output-diffraction', diffraction, '--compression', 'none', *FULL_META,
        preexec_fn=_fsize_limit(500_000),
    )
    _check(result, diffraction, LIMIT_PATTERN, tmp_path)
    assert not out.exists(), 'the product was published although the diffraction file failed'


def test_file_size_limit_reverse(medium_product, run_cli, tmp_path):
    back = tmp_path / 'back.npz'
    result = run_cli(
        '--input-product', medium_product, '--output-npz', back,
        preexec_fn=_fsize_limit(200_000),
    )
    _check(result, back, LIMIT_PATTERN, tmp_path)


# -- a real full disk (tmpfs of 1 MiB) -----------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 1 MiB tmpfs inside ``tmp_path``; needs root and a kernel that lets us mount."""
    mount_point = tmp_path / 'small-disk'
    mount_point.mkdir()
    if not IS_ROOT or shutil.which('mount') is None:
        pytest.skip('a real ENOSPC needs root to mount a tmpfs')
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f'mounting a tmpfs is not permitted here: {mounted.stderr.strip()}')
    try:
        yield mount_point
    finally:
        unmounted = subprocess.run(['umount', str(mount_point)], capture_output=True, text=True)
        if unmounted.returncode != 0:
            subprocess.run(['umount', '-l', str(mount_point)], capture_output=True)


@pytest.mark.parametrize('compression', ['gzip', 'none'])
def test_full_disk_forward(medium_npz, small_disk, run_cli, compression):
    out = small_disk / 'product.h5'
    result = run_cli('--input-npz', medium_npz, '--output-product', out, '--compression', compression,
                     *FULL_META)
    _check(result, out, SPACE_PATTERN, small_disk)
    assert list(small_disk.iterdir()) == []


def test_full_disk_diffraction_output(medium_npz, small_disk, run_cli, tmp_path):
    out = tmp_path / 'product.h5'  # on the big disk: succeeds, but must go with the failed one
    diffraction = small_disk / 'diffraction.h5'
    result = run_cli(
        '--input-npz', medium_npz, '--output-product', out, '--output-diffraction', diffraction,
        '--compression', 'none', *FULL_META,
    )
    _check(result, diffraction, SPACE_PATTERN, small_disk)
    assert not out.exists()
    assert_no_temp_files(tmp_path)


def test_full_disk_reverse(medium_product, small_disk, run_cli):
    back = small_disk / 'back.npz'
    result = run_cli('--input-product', medium_product, '--output-npz', back)
    _check(result, back, SPACE_PATTERN, small_disk)
    assert list(small_disk.iterdir()) == []
