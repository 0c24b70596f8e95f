"""The test matrix beyond the default environment: other Ptychodus releases, other Pythons, pty-chi.

    python tests/matrix.py hosts     # plugin + real-host tests on Ptychodus 1.5.1 and 1.6.0
    python tests/matrix.py hosts-gui # the real GUI tests on Ptychodus 1.5.1 and 1.6.0 (with PyQt5)
    python tests/matrix.py pythons   # core + CLI tests on Python 3.12 and 3.13 (with Ptychodus 1.7)
    python tests/matrix.py physics   # pty-chi reconstruction check (Ptychodus 1.7 + pty-chi, CPU)
    python tests/matrix.py sdist     # the sdist alone: built, installed, and the suite run from it
    python tests/matrix.py --prepare-only physics   # build the venv now, test later

Several groups may be given; their venvs are prepared concurrently (installs
are mostly waiting on disk and network), then the tests run one env at a time.

Each environment is a venv under ``$MATRIX_VENVS`` (default ``.venvs/``, git-ignored),
built once and reused while its requirements and interpreter stay the same. Our
package goes in as a normal wheel (so Ptychodus finds the bridge), after the
host: the run fails if installing it changed the installed Ptychodus, or, where
there is no Ptychodus, if ``import ptychodus`` succeeds after our install. A
missing interpreter is reported as SKIPPED with where it was looked for.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / 'tests'
VENVS = Path(os.environ.get('MATRIX_VENVS', ROOT / '.venvs'))
TEST_TOOLS = ['pytest>=8', 'hypothesis>=6']
#: Our [dask] extra, so the batch export runs on a real LocalCluster next to each older host too.
DASK = 'dask[distributed]>=2024.1'
#: What runs where: the plugin promises on older hosts, the core and CLI on newer Pythons.
HOST_TESTS = ['test_hosts.py', 'test_plugin_startup.py', 'test_plugin_registry.py', 'test_plugin_doctor.py',
              'test_training_data.py', 'test_training_batch.py',
              'test_plugin_processed_saves.py', 'test_plugin_unbound_products.py']
PYTHON_TESTS = ['test_core_*.py', 'test_cli.py', 'test_rawdata_api.py', 'test_ptychopinn_exporter_products.py', 'test_streaming.py',
                'test_ptychopinn_flavours.py', 'test_lossless.py', 'test_sidecar_collision.py', 'test_lossless_unknown.py',
                'test_pairing.py', 'test_check.py', 'test_placement.py']

GUI_TESTS = ('test_gui.py', 'test_gui_unbound.py', 'test_gui_saves.py')


@dataclass(frozen=True)
class Env:
    name: str
    python: str  # '3.11' (the default interpreter) or another minor version
    requirements: tuple[str, ...]
    tests: tuple[str, ...]
    host: str | None = None  # the Ptychodus version that must survive our install
    marker: str = 'not gui'  # pytest -m: the GUI tests run only in the envs that install PyQt


ENVS = {
    'hosts': [
        Env('ptychodus-1.5.1', '3.11', ('ptychodus==1.5.1', DASK, *TEST_TOOLS), tuple(HOST_TESTS), '1.5.1'),
        Env('ptychodus-1.6.0', '3.11', ('ptychodus==1.6.0', DASK, *TEST_TOOLS), tuple(HOST_TESTS), '1.6.0'),
    ],
    # the real Qt main window on the older hosts (ptychodus[gui] pulls PyQt5 wheels)
    'hosts-gui': [
        Env('ptychodus-1.5.1-gui', '3.11', ('ptychodus[gui]==1.5.1', *TEST_TOOLS), GUI_TESTS, '1.5.1', 'gui'),
        Env('ptychodus-1.6.0-gui', '3.11', ('ptychodus[gui]==1.6.0', *TEST_TOOLS), GUI_TESTS, '1.6.0', 'gui'),
    ],
    'pythons': [
        Env('py3.12', '3.12', ('ptychodus==1.7.0', *TEST_TOOLS), tuple(PYTHON_TESTS), '1.7.0'),
        Env('py3.13', '3.13', ('ptychodus==1.7.0', *TEST_TOOLS), tuple(PYTHON_TESTS), '1.7.0'),
        # no Ptychodus at all: the converter, the script and doctor's report (host stays absent)
        Env('headless', '3.11', tuple(TEST_TOOLS), ('test_headless.py',), None),
    ],
    'physics': [
        Env('ptychi', '3.11', ('ptychodus[ptychi]==1.7.0', 'matplotlib', *TEST_TOOLS), ('physics',), '1.7.0'),
    ],
    'sdist': [
        Env('sdist', '3.11', ('ptychodus[gui]==1.7.0', DASK, 'matplotlib', *TEST_TOOLS),
            ('test_*.py',), '1.7.0'),
    ],
}


def find_python(minor: str) -> tuple[str | None, list[str]]:
    """An interpreter for ``3.X``: the running one, pyenv's, or ``python3.X`` on PATH (one that runs)."""
    looked: list[str] = []
    if f'{sys.version_info.major}.{sys.version_info.minor}' == minor:
        return sys.executable, looked
    candidates: list[str] = []
    pyenv = shutil.which('pyenv')
    if pyenv:
        root = subprocess.run([pyenv, 'root'], capture_output=True, text=True).stdout.strip()
        pattern = os.path.join(root, 'versions', f'{minor}.*', 'bin', 'python3')
        candidates += sorted(glob.glob(pattern), reverse=True)
        looked.append(pattern)
    on_path = shutil.which(f'python{minor}')
    looked.append(f'python{minor} on PATH')
    if on_path:
        candidates.append(on_path)  # may be a pyenv shim that refuses to run: checked below
    for candidate in candidates:
        probe = subprocess.run([candidate, '-c', 'import sys; print(sys.version_info[:2])'],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == str(tuple(int(n) for n in minor.split('.'))):
            return candidate, looked
    return None, looked


def run(cmd: list[str], **kwargs: object) -> None:
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def build_dists(folder: Path) -> tuple[Path, Path]:
    """Our package as an sdist, and a wheel built *from that sdist* (as pip would), in ``folder``."""
    run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps', '-w', str(folder), str(ROOT)])
    wheel = next(folder.glob('ptychopinn_ptychodus-*.whl'))
    sdist_dir = folder / 'sdist'
    run([sys.executable, '-m', 'build', '--sdist', '--outdir', str(sdist_dir), str(ROOT)], stdout=subprocess.DEVNULL)
    return wheel, next(sdist_dir.glob('ptychopinn_ptychodus-*.tar.gz'))


def host_version(python: Path) -> str | None:
    code = 'import importlib.metadata as m\ntry: print(m.version("ptychodus"))\nexcept Exception: print("")'
    out = subprocess.run([str(python), '-c', code], capture_output=True, text=True, check=True).stdout.strip()
    return out or None


def prepare(env: Env, interpreter: str, package: Path) -> Path:
    """The env's venv with its requirements (reused when unchanged) and our package installed.

    ``package`` is our wheel, or (for the sdist check) the sdist, which pip then builds itself.
    """
    venv = VENVS / env.name
    python = venv / 'bin' / 'python'
    stamp = venv / '.matrix-requirements'
    key = json.dumps({'python': os.path.realpath(interpreter), 'requirements': env.requirements,
                      # a host-less venv that once held a <= 0.2.0 wheel keeps the empty ptychodus/
                      # folder pip leaves behind: rebuild it once so the headless check starts clean
                      **({} if env.host else {'no-ptychodus-folder': True})})
    if not python.exists() or not stamp.exists() or stamp.read_text() != key:
        shutil.rmtree(venv, ignore_errors=True)
        run([interpreter, '-m', 'venv', str(venv)])
        run([str(python), '-m', 'pip', 'install', '--quiet', '--upgrade', 'pip'])
        run([str(python), '-m', 'pip', 'install', '--quiet', *env.requirements])
        stamp.write_text(key)
    before = host_version(python)
    run([str(python), '-m', 'pip', 'install', '--quiet', '--force-reinstall', '--no-deps', str(package)])
    run([str(python), '-m', 'pip', 'install', '--quiet', str(package)])  # our own deps, if any are missing
    after = host_version(python)
    if before != after or (env.host is not None and after != env.host):
        raise SystemExit(f'{env.name}: Ptychodus was {before} before installing our package and {after} after')
    if env.host is None:  # issue 18: our install must not make `import ptychodus` succeed
        probe = subprocess.run([str(python), '-c', 'import ptychodus'], capture_output=True, text=True)
        if probe.returncode == 0:
            raise SystemExit(f'{env.name}: `import ptychodus` succeeds after installing our package')
    print(f"{env.name}: Ptychodus {after or 'absent'} unchanged by our install", flush=True)
    return python


def run_tests(env: Env, python: Path, tests: Path = TESTS) -> None:
    patterns = [str(p.relative_to(tests)) for pattern in env.tests for p in sorted(tests.glob(pattern))]
    environment = {**os.environ, 'QT_QPA_PLATFORM': 'offscreen', 'MPLBACKEND': 'Agg',
                   'PTYCHOPINN_PHYSICS_REQUIRED': '1', 'PTYCHOPINN_SHARED_DATA': str(ROOT.parent / 'shared' / 'data')}
    config = tests.parent / 'pyproject.toml'
    run([str(python), '-m', 'pytest', '-c', str(config), f'--rootdir={tests.parent}', '-q', '-p', 'no:cacheprovider',
         '-m', env.marker, *patterns], cwd=tests, env=environment)


def unpack_sdist(sdist: Path, folder: Path) -> Path:
    """The sdist's own tree (its tests run from there, not from this checkout)."""
    with tarfile.open(sdist) as archive:
        archive.extractall(folder, filter='data')
    return next(p for p in folder.iterdir() if p.is_dir() and p.name.startswith('ptychopinn_ptychodus-'))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('groups', nargs='+', choices=sorted(ENVS))
    parser.add_argument('--prepare-only', action='store_true', help='build the venvs; run no tests')
    args = parser.parse_args(argv)
    envs = [env for group in args.groups for env in ENVS[group]]
    summary: list[str] = []
    with tempfile.TemporaryDirectory(prefix='matrix-') as scratch:
        wheel, sdist = build_dists(Path(scratch))
        found = {env.name: find_python(env.python) for env in envs}
        ready = [env for env in envs if found[env.name][0] is not None]
        for env in envs:
            if found[env.name][0] is None:
                looked = '; '.join(found[env.name][1])
                summary.append(f'SKIPPED {env.name}: no Python {env.python} found (looked for {looked})')
                print(summary[-1], flush=True)
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {env.name: pool.submit(prepare, env, str(found[env.name][0]),
                                             sdist if env.name == 'sdist' else wheel) for env in ready}
            pythons = {name: future.result() for name, future in futures.items()}
        if args.prepare_only:
            return 0
        for env in ready:
            start = time.monotonic()
            tests = unpack_sdist(sdist, Path(scratch)) / 'tests' if env.name == 'sdist' else TESTS
            run_tests(env, pythons[env.name], tests)
            summary.append(f'passed  {env.name} ({time.monotonic() - start:.0f} s)')
    print('\n'.join(['matrix ' + ' '.join(args.groups) + ':', *summary]))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
