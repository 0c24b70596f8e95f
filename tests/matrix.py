"""The test matrix beyond the default environment: other Ptychodus releases, other Pythons, pty-chi.

    python tests/matrix.py hosts     # plugin + real-host tests on Ptychodus 1.5.1 and 1.6.0
    python tests/matrix.py pythons   # core + CLI tests on Python 3.12 and 3.13 (with Ptychodus 1.7)
    python tests/matrix.py physics   # pty-chi reconstruction check (Ptychodus 1.7 + pty-chi, CPU)

Each environment is a venv under ``$MATRIX_VENVS`` (default ``.venvs/``, git-ignored),
built once and reused while its requirements and interpreter stay the same. Our
package goes in as a normal wheel (so Ptychodus finds the bridge), after the
host: the run fails if installing it changed the installed Ptychodus. A
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
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / 'tests'
VENVS = Path(os.environ.get('MATRIX_VENVS', ROOT / '.venvs'))
WHEELS = ROOT / 'build' / 'matrix-wheel'
TEST_TOOLS = ['pytest>=8', 'hypothesis>=6']
#: What runs where: the plugin promises on older hosts, the core and CLI on newer Pythons.
HOST_TESTS = ['test_hosts.py', 'test_plugin_startup.py']
PYTHON_TESTS = ['test_core_*.py', 'test_cli.py', 'test_rawdata_api.py', 'test_streaming.py']


@dataclass(frozen=True)
class Env:
    name: str
    python: str  # '3.11' (the default interpreter) or another minor version
    requirements: tuple[str, ...]
    tests: tuple[str, ...]
    host: str | None = None  # the Ptychodus version that must survive our install


ENVS = {
    'hosts': [
        Env('ptychodus-1.5.1', '3.11', ('ptychodus==1.5.1', *TEST_TOOLS), tuple(HOST_TESTS), '1.5.1'),
        Env('ptychodus-1.6.0', '3.11', ('ptychodus==1.6.0', *TEST_TOOLS), tuple(HOST_TESTS), '1.6.0'),
    ],
    'pythons': [
        Env('py3.12', '3.12', ('ptychodus==1.7.0', *TEST_TOOLS), tuple(PYTHON_TESTS), '1.7.0'),
        Env('py3.13', '3.13', ('ptychodus==1.7.0', *TEST_TOOLS), tuple(PYTHON_TESTS), '1.7.0'),
    ],
    'physics': [
        Env('ptychi', '3.11', ('ptychodus[ptychi]==1.7.0', 'matplotlib', *TEST_TOOLS), ('physics',), '1.7.0'),
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


def build_wheel() -> Path:
    """Our package as a wheel, built once per matrix run."""
    shutil.rmtree(WHEELS, ignore_errors=True)
    run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps', '-w', str(WHEELS), str(ROOT)])
    return next(WHEELS.glob('ptychopinn_ptychodus-*.whl'))


def host_version(python: Path) -> str | None:
    code = 'import importlib.metadata as m\ntry: print(m.version("ptychodus"))\nexcept Exception: print("")'
    out = subprocess.run([str(python), '-c', code], capture_output=True, text=True, check=True).stdout.strip()
    return out or None


def prepare(env: Env, interpreter: str, wheel: Path) -> Path:
    """The env's venv with its requirements (reused when unchanged) and our wheel installed."""
    venv = VENVS / env.name
    python = venv / 'bin' / 'python'
    stamp = venv / '.matrix-requirements'
    key = json.dumps({'python': os.path.realpath(interpreter), 'requirements': env.requirements})
    if not python.exists() or not stamp.exists() or stamp.read_text() != key:
        shutil.rmtree(venv, ignore_errors=True)
        run([interpreter, '-m', 'venv', str(venv)])
        run([str(python), '-m', 'pip', 'install', '--quiet', '--upgrade', 'pip'])
        run([str(python), '-m', 'pip', 'install', '--quiet', *env.requirements])
        stamp.write_text(key)
    before = host_version(python)
    run([str(python), '-m', 'pip', 'install', '--quiet', '--force-reinstall', '--no-deps', str(wheel)])
    run([str(python), '-m', 'pip', 'install', '--quiet', str(wheel)])  # our own deps, if any are missing
    after = host_version(python)
    if env.host is not None and not (before == after == env.host):
        raise SystemExit(f'{env.name}: Ptychodus was {before} before installing our package and {after} after')
    print(f'{env.name}: Ptychodus {after} unchanged by our install', flush=True)
    return python


def run_tests(env: Env, python: Path) -> None:
    patterns = [str(p.relative_to(TESTS)) for pattern in env.tests for p in sorted(TESTS.glob(pattern))]
    environment = {**os.environ, 'QT_QPA_PLATFORM': 'offscreen', 'MPLBACKEND': 'Agg',
                   'PTYCHOPINN_PHYSICS_REQUIRED': '1'}
    run([str(python), '-m', 'pytest', '-c', '../pyproject.toml', '--rootdir=..', '-q', '-p', 'no:cacheprovider',
         '-m', 'not gui', *patterns], cwd=TESTS, env=environment)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('group', choices=sorted(ENVS))
    args = parser.parse_args(argv)
    wheel = build_wheel()
    summary = []
    for env in ENVS[args.group]:
        interpreter, looked = find_python(env.python)
        if interpreter is None:
            line = f'SKIPPED {env.name}: no Python {env.python} found (looked for {"; ".join(looked)})'
            print(line, flush=True)
            summary.append(line)
            continue
        start = time.monotonic()
        python = prepare(env, interpreter, wheel)
        run_tests(env, python)
        summary.append(f'passed  {env.name} ({time.monotonic() - start:.0f} s)')
    print('\n'.join(['matrix ' + args.group + ':', *summary]))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
