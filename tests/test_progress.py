"""The progress bar shows on a terminal only, and --quiet silences it."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from ptychopinn_ptychodus.sample import write_sample


def run_with_stderr_on_tty(args: list[str]) -> tuple[int, str]:
    leader, follower = pty.openpty()
    # a fresh pseudo-terminal is 0x0; give it a real terminal's size
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0, 0))
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO once the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=120), b''.join(chunks).decode(errors='replace')


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / 'in.npz'
    write_sample(path, pattern_px=32, scan_side=8)
    return path


def command(dataset: Path, *extra: str) -> list[str]:
    out = dataset.with_name('out.h5')
    return [sys.executable, '-m', 'ptychopinn_ptychodus', '--input-npz', str(dataset),
            '--output-product', str(out), '--overwrite', '--object-pixel-size-m', '5e-8',
            '--probe-energy-eV', '8000', '--detector-distance-m', '1', *extra]


def test_progress_bar_on_a_terminal(dataset: Path) -> None:
    code, stderr = run_with_stderr_on_tty(command(dataset))
    assert code == 0, stderr
    assert 'pattern' in stderr and '64/64' in stderr


def test_quiet_silences_progress_on_a_terminal(dataset: Path) -> None:
    code, stderr = run_with_stderr_on_tty(command(dataset, '--quiet'))
    assert code == 0, stderr
    assert stderr.strip() == ''


def test_no_progress_when_stderr_is_not_a_terminal(dataset: Path) -> None:
    proc = subprocess.run(command(dataset), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '64/64' not in proc.stderr and '%|' not in proc.stderr
