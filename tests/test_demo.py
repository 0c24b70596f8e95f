"""``make demo`` (``python -m ptychopinn_ptychodus.demo DIR``): what it prints explains what it writes.

Run as a user runs it, in a subprocess with Ptychodus installed; the demo itself validates the
product and the diffraction file with Ptychodus's own loaders and exits non-zero if they differ.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from helpers import cli_env


def run_demo(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, '-m', 'ptychopinn_ptychodus.demo', 'demo_output'], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=cli_env(MPLBACKEND='Agg'))


def test_demo_prints_each_warning_once_and_names_every_file(tmp_path: Path) -> None:
    done = run_demo(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    warnings = [line for line in lines if line.startswith('WARNING')]  # how the converter warns
    repeated = {line: n for line, n in Counter(warnings).items() if n > 1}
    assert not repeated, repeated
    assert len(warnings) <= 2, warnings  # a demo with full metadata has (almost) nothing to warn about
    out = tmp_path / 'demo_output'
    written = sorted(p.name for p in out.iterdir())
    assert written == ['sample_diffraction.h5', 'sample_preview.png', 'sample_product.h5',
                       'sample_ptychopinn.npz', 'sample_ptychopinn.ptychodus.json']
    printed = '\n'.join(lines)
    for name in written:
        assert f'demo_output/{name}' in printed, f'{name} is written but the demo does not say so'
    assert 'object identical: True' in printed
    assert json.loads((out / 'sample_ptychopinn.ptychodus.json').read_text())['object_pixel_size_m'] == 5e-8
    assert (out / 'sample_preview.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_demo_removes_and_explains_a_sidecar_an_older_demo_left(tmp_path: Path) -> None:
    """0.2.0's demo wrote ``sample_ptychopinn.json``: a rerun leaves one sidecar and says why."""
    out = tmp_path / 'demo_output'
    out.mkdir()
    stale = out / 'sample_ptychopinn.json'
    stale.write_text(json.dumps({'object_pixel_size_m': 5e-8}))
    done = run_demo(tmp_path)
    assert done.returncode == 0, done.stderr
    assert not stale.exists()
    assert f'removed demo_output/{stale.name}' in done.stdout
