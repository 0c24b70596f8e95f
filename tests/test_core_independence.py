"""The converter core runs where Ptychodus cannot be imported (numpy + h5py only)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    '''
    import importlib.abc
    import sys


    class BlockPtychodus(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == 'ptychodus' or name.startswith('ptychodus.'):
                raise ModuleNotFoundError(f'No module named {name!r} (blocked by the test)', name=name)
            return None


    sys.meta_path.insert(0, BlockPtychodus())
    try:
        import ptychodus  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit('the blocker did not work: ptychodus imported')

    from pathlib import Path

    import numpy as np

    import ptychopinn_ptychodus
    from ptychopinn_ptychodus import export_product, import_product
    from ptychopinn_ptychodus.cli.sample import write_sample

    folder = Path(sys.argv[1])
    arrays = write_sample(folder / 'in.npz', key='diff3d', counts=True, pattern_px=16, scan_side=3)
    export_product(folder / 'in.npz', folder / 'p.h5', diffraction_output=folder / 'd.h5')
    import_product(folder / 'p.h5', folder / 'back.npz')
    with np.load(folder / 'back.npz', allow_pickle=False) as back:
        for key, value in arrays.items():
            assert np.array_equal(back[key], value) and back[key].dtype == value.dtype, key
    loaded = sorted(name for name in sys.modules if name == 'ptychodus' or name.startswith('ptychodus.'))
    assert not loaded, loaded
    print('CORE-OK')
    '''
)


def test_export_and_import_without_ptychodus(tmp_path):
    result = subprocess.run(
        [sys.executable, '-c', SCRIPT, str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert 'CORE-OK' in result.stdout
    assert (tmp_path / 'p.h5').exists() and (tmp_path / 'd.h5').exists()


def test_cli_without_ptychodus(tmp_path):
    """The console entry point, too, must not need Ptychodus."""
    script = textwrap.dedent(
        '''
        import sys
        sys.modules['ptychodus'] = None  # "import ptychodus" now raises ImportError
        from ptychopinn_ptychodus.cli.sample import write_sample
        from ptychopinn_ptychodus.cli import main
        write_sample(sys.argv[1] + '/in.npz', pattern_px=16, scan_side=3)
        folder = sys.argv[1]
        argv = ['--input-npz', folder + '/in.npz', '--output-product', folder + '/p.h5', '--quiet']
        raise SystemExit(main(argv))
        '''
    )
    result = subprocess.run(
        [sys.executable, '-c', script, str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'p.h5').exists()
