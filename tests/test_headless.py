"""A headless install: our package without Ptychodus (a PtychoPINN/TensorFlow environment).

Runs in the matrix environment ``headless`` (``tests/matrix.py pythons``), where
``pip install ptychopinn-ptychodus`` went into a venv that has no Ptychodus: the
core, the script and the in-memory API work, ``import ptychodus`` fails exactly
as it did before we were installed (issue 18: wheels up to 0.2.0 created a
``ptychodus/`` folder that made it succeed), and ``doctor`` says what it sees.
Where Ptychodus *is* installed (the default suite) these promises cannot be
observed, and the module skips with that reason.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import sysconfig
from pathlib import Path

import h5py
import numpy as np
import pytest

try:
    importlib.metadata.version('ptychodus')
except importlib.metadata.PackageNotFoundError:
    pass
else:
    pytest.skip('Ptychodus is installed here; the headless promises run in the matrix env "headless"',
                allow_module_level=True)

from ptychopinn_ptychodus import export_product, import_product_to_rawdata  # noqa: E402
from ptychopinn_ptychodus.cli.sample import write_sample  # noqa: E402

DOCTOR = Path(sys.executable).parent / 'ptychopinn-ptychodus'
CONVERTER = Path(sys.executable).parent / 'convert_to_ptychodus_product'


def test_import_ptychodus_fails_as_without_us():
    """What ``pytest.importorskip('ptychodus')`` and every "is Ptychodus here?" check rely on."""
    code = ('import importlib.util, sys\n'
            'assert "_ptychopinn_ptychodus_hook" in sys.modules, "the .pth hook did not run"\n'
            'assert importlib.util.find_spec("ptychodus") is None\n'
            'import ptychodus\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    assert result.stderr.strip().splitlines()[-1] == "ModuleNotFoundError: No module named 'ptychodus'"


def test_nothing_of_ours_is_under_a_ptychodus_folder():
    files = importlib.metadata.files('ptychopinn-ptychodus')
    assert files is not None
    assert not [f for f in files if f.as_posix().startswith('ptychodus/')]
    purelib = Path(sysconfig.get_paths()['purelib'])
    assert not (purelib / 'ptychodus').exists()


def test_doctor_reports_no_ptychodus_and_that_import_ptychodus_fails():
    result = subprocess.run([str(DOCTOR), 'doctor'], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result
    lines = result.stdout.splitlines()
    assert lines[0].startswith('FAIL') and 'Ptychodus is not installed' in lines[0]
    assert 'ok    `import ptychodus` fails, as it should: this package adds no ptychodus folder' in lines
    assert any(line.startswith('ok') and 'ptychopinn_ptychodus_hook.pth installed' in line for line in lines)
    assert 'Traceback' not in result.stderr


def test_script_and_api_work_without_ptychodus(tmp_path):
    arrays = write_sample(tmp_path / 'in.npz', pattern_px=16, scan_side=3)
    result = subprocess.run([str(CONVERTER), '--input-npz', str(tmp_path / 'in.npz'),
                             '--output-product', str(tmp_path / 'out.h5'), '--quiet'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result
    with h5py.File(tmp_path / 'out.h5', 'r') as h5:
        assert h5['probe_position_x_m'].shape == arrays['xcoords'].shape
        assert h5.attrs['ptychopinn_position_convention'] == 'ptychopinn'
    export_product(tmp_path / 'in.npz', tmp_path / 'api.h5')
    raw = import_product_to_rawdata(tmp_path / 'api.h5')
    np.testing.assert_array_equal(raw.xcoords, arrays['xcoords'])
    assert 'ptychodus.api' not in sys.modules
