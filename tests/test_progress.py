"""The progress bar shows on a terminal only, and --quiet silences it."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
from pathlib import Path

import pytest
from helpers import CLI, FULL_META


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
def dataset(sample_npz) -> Path:
    path, _ = sample_npz('in.npz', pattern_px=32, scan_side=8)  # 64 patterns
    return path


def arguments(dataset: Path, *extra: str) -> list[str]:
    out = dataset.with_name('out.h5')
    return ['--input-npz', str(dataset), '--output-product', str(out), '--overwrite', *FULL_META, *extra]


def test_progress_bar_on_a_terminal(dataset: Path) -> None:
    code, stderr = run_with_stderr_on_tty([*CLI, *arguments(dataset)])
    assert code == 0, stderr
    assert 'pattern' in stderr and '64/64' in stderr


def test_quiet_silences_progress_on_a_terminal(dataset: Path) -> None:
    code, stderr = run_with_stderr_on_tty([*CLI, *arguments(dataset, '--quiet')])
    assert code == 0, stderr
    assert stderr.strip() == ''


def test_no_progress_when_stderr_is_not_a_terminal(dataset: Path, run_cli) -> None:
    proc = run_cli(*arguments(dataset))
    assert proc.returncode == 0, proc.stderr
    assert '64/64' not in proc.stderr and '%|' not in proc.stderr
