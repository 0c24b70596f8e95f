"""``ptychopinn-ptychodus doctor``: the installed console script, as a user runs it.

``python -m`` runs the converter, not the doctor, so the script next to
``sys.executable`` is the only entry. Nothing here modifies the shared
environment: the bridge-copy commands are pointed at ``tmp_path``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ptychopinn_ptychodus import plugin
from ptychopinn_ptychodus.host import doctor

SCRIPT = Path(sys.executable).parent / 'ptychopinn-ptychodus'


def run_doctor(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.is_file(), f'console script {SCRIPT} is not installed'
    environment = {k: v for k, v in os.environ.items() if k != 'PTYCHOPINN_PTYCHODUS_DISABLE'}
    environment.update(env)
    return subprocess.run([str(SCRIPT), *args], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope='module')
def healthy(tmp_path_factory) -> subprocess.CompletedProcess[str]:
    return run_doctor(tmp_path_factory.mktemp('doctor'), 'doctor')


def test_doctor_exits_zero(healthy):
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert 'FAIL' not in healthy.stdout


@pytest.mark.parametrize('entry', plugin.PLUGINS, ids=lambda e: f'{e.chooser}-{e.simple_name}')
def test_doctor_reports_every_plugin_registered(healthy, entry):
    lines = [line for line in healthy.stdout.splitlines()
             if entry.chooser in line and entry.simple_name in line]
    assert len(lines) == 1, healthy.stdout
    assert lines[0].startswith('ok') and 'registered' in lines[0]
    assert entry.display_name in lines[0]


def test_doctor_names_the_bridge_it_checked(healthy):
    """The bridge is where Ptychodus's own scan finds it: our folder, added by the .pth hook."""
    bridge = Path(doctor.pth_hook.__file__).with_name('ptychodus_plugins') / doctor.BRIDGE_NAME
    assert bridge.is_file()
    assert f"ok    Ptychodus's plugin scan lists the bridge module {bridge} (added by the plugin hook)" in healthy.stdout
    pth = doctor.hook_file()
    assert pth is not None and f'ok    plugin hook {pth} active' in healthy.stdout


def test_doctor_fails_when_the_pth_hook_did_not_run(tmp_path):
    """As under ``python -S`` or an interpreter that skips site-packages .pth files: doctor must say so."""
    code = ('import sys; sys.meta_path[:] = [f for f in sys.meta_path '
            'if getattr(f, "__name__", "") != "PluginPathFinder"]; '
            'from ptychopinn_ptychodus.cli.tool import main; sys.exit(main(["doctor"]))')
    environment = {k: v for k, v in os.environ.items() if k != 'PTYCHOPINN_PTYCHODUS_DISABLE'}
    result = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith('FAIL') and 'did not run in this interpreter' in line
               and 'removed its finder' in line for line in lines), result.stdout
    assert any(line.startswith('FAIL') and 'plugin scan does not list' in line for line in lines), result.stdout
    assert any(line.startswith('FAIL') and 'NOT registered' in line for line in lines), result.stdout
    assert 'ptychopinn-ptychodus install-bridge' in result.stdout


def test_doctor_under_python_dash_S_says_why_and_how_to_fix(tmp_path):
    """``python -S`` with site-packages on PYTHONPATH: Ptychodus imports, but no .pth file is read."""
    import sysconfig

    purelib = sysconfig.get_paths()['purelib']
    environment = {k: v for k, v in os.environ.items() if k != 'PTYCHOPINN_PTYCHODUS_DISABLE'}
    environment['PYTHONPATH'] = purelib
    plugins = ('from ptychodus.api.plugins import PluginRegistry; '
               'print(sorted({p.simple_name for p in PluginRegistry.load_plugins().product_file_readers}))')
    seen = subprocess.run([sys.executable, '-S', '-c', plugins], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=120)
    assert seen.returncode == 0, seen.stderr
    assert plugin.NPZ_SIMPLE_NAME not in seen.stdout  # what a Ptychodus started with -S sees
    code = 'import sys; from ptychopinn_ptychodus.cli.tool import main; sys.exit(main(["doctor"]))'
    result = subprocess.run([sys.executable, '-S', '-c', code], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.split()[1:3] == ['plugin', 'hook']]
    assert line.startswith('FAIL') and 'Python was started with -S' in line, result.stdout
    assert 'run `ptychopinn-ptychodus install-bridge` once' in result.stdout
    assert 'Traceback' not in result.stderr


def test_doctor_fails_when_ptychodus_does_not_see_the_plugins(tmp_path):
    """The bridge's off switch makes discovery fail: doctor must notice and exit non-zero."""
    result = run_doctor(tmp_path, 'doctor', PTYCHOPINN_PTYCHODUS_DISABLE='1')
    assert result.returncode == 1, result.stdout + result.stderr
    for entry in plugin.PLUGINS:
        assert any(line.startswith('FAIL') and entry.simple_name in line and 'NOT registered' in line
                   for line in result.stdout.splitlines()), result.stdout


def test_doctor_without_command_is_a_usage_error(tmp_path):
    result = run_doctor(tmp_path)
    assert result.returncode == 2
    assert 'doctor' in result.stderr


def test_install_bridge_works_from_the_installed_wheel(tmp_path, monkeypatch):
    """``install-bridge`` is the fix doctor prints when the bridge is missing, also for wheels.

    Pointed at a scratch folder so the shared Ptychodus stays untouched.
    """
    monkeypatch.setattr(doctor, 'plugins_folder', lambda: tmp_path)
    target = doctor.install_bridge(force=False)
    assert target == tmp_path / doctor.BRIDGE_NAME
    installed = doctor.bridge_location()
    assert installed is not None and target.read_bytes() == installed.read_bytes()
    with pytest.raises(SystemExit):
        doctor.install_bridge(force=False)  # refuses to overwrite without --force
    assert doctor.remove_bridge() == target
    assert not target.exists()
    assert doctor.remove_bridge() is None


DOC = Path(__file__).resolve().parents[1] / 'docs' / 'installation.md'


def _blocks(language: str) -> list[str]:
    text = DOC.read_text()
    return re.findall(rf'^```{language}\n(.*?)^```', text, flags=re.S | re.M)


def test_installation_page_console_blocks_run_as_shown(tmp_path):
    """Every ``$`` command of docs/installation.md runs here; the lines shown appear, in order."""
    blocks = _blocks('console')
    assert blocks, f'{DOC} has no console block'
    for block in blocks:
        command, *shown = block.splitlines()
        assert command.startswith('$ ptychopinn-ptychodus '), command
        result = run_doctor(tmp_path, *command.split()[2:])
        assert result.returncode == 0, result.stdout + result.stderr
        actual = iter(result.stdout.splitlines())
        for line in (s for s in shown if s != '...'):
            assert any(a == line for a in actual), f'{line!r} not in order in:\n{result.stdout}'


def test_installation_page_python_blocks_run(tmp_path):
    blocks = _blocks('python')
    assert blocks, f'{DOC} has no python block'
    for block in blocks:
        result = subprocess.run([sys.executable, '-c', block], cwd=tmp_path, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, block + result.stderr
