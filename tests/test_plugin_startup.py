"""Broken third-party ``ptychodus.plugins`` entry points must not stop Ptychodus from starting.

Ptychodus 1.7 aborts ``PluginRegistry.load_plugins()`` -- and so its whole
start-up -- when a module on ``ptychodus.plugins.__path__`` raises anything but
``ModuleNotFoundError`` on import or anything but ``AttributeError`` from
``register_plugins``. Our bridge is such a module (its folder added to that
path by our ``.pth`` hook) and runs *other* distributions' entry points, so it
must contain their failures.

Each test installs a throw-away distribution (a folder with modules and a
``*.dist-info`` holding ``METADATA`` and ``entry_points.txt``) that only a
subprocess sees through ``PYTHONPATH``, then starts Ptychodus's real registry
and ``ModelCore`` there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ptychopinn_ptychodus import plugin

#: entry-point name -> (module:attr, what goes wrong). Working entries come last on purpose.
ENTRY_POINTS = {
    'fake_import_error': ('fake_plugin_broken:register_plugins', 'module raises ImportError'),
    'fake_missing_module': ('fake_plugin_not_there:register_plugins', 'ModuleNotFoundError'),
    'fake_runtime_error': ('fake_plugin:register_runtime_error', 'hook raises RuntimeError'),
    'fake_attribute_error': ('fake_plugin:register_attribute_error', 'hook raises AttributeError'),
    'fake_missing_attr': ('fake_plugin:no_such_function', 'attribute missing on load'),
    'fake_value_error_mid_way': ('fake_plugin:register_then_fail', 'registers one, then raises'),
    'fake_good': ('fake_plugin:register_good', 'works'),
}
BROKEN = [name for name, (_, what) in ENTRY_POINTS.items() if what != 'works']

FAKE_PLUGIN = '''
from ptychodus.api.diffraction import DiffractionFileReader


class FakeReader(DiffractionFileReader):
    def read(self, file_path):
        raise NotImplementedError


def register_runtime_error(registry):
    raise RuntimeError('fake_plugin: simulated crash in register_plugins')


def register_attribute_error(registry):
    raise AttributeError('fake_plugin: simulated AttributeError in register_plugins')


def register_then_fail(registry):
    registry.diffraction_file_readers.register_plugin(
        FakeReader(), simple_name='FakeHalf', display_name='Fake Half (*.fakehalf)')
    raise ValueError('fake_plugin: simulated failure after a registration')


def register_good(registry):
    registry.diffraction_file_readers.register_plugin(
        FakeReader(), simple_name='FakeGood', display_name='Fake Good Files (*.fakegood)')
'''

FAKE_BROKEN = '''
raise ImportError('fake_plugin_broken: simulated broken binary dependency')
'''

#: Runs in the subprocess: the registry, then a full ModelCore start, as Ptychodus does.
PROBE = r'''
import json, logging, sys
logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                    format='LOG %(levelname)s %(name)s: %(message)s')
from ptychodus.api.plugins import PluginRegistry

def summary(registry):
    out = {}
    for name, chooser in vars(registry).items():
        if hasattr(chooser, 'register_plugin'):
            out[name] = [p.simple_name for p in chooser]
    return out

registry = PluginRegistry.load_plugins()
result = {'registry': summary(registry)}
if 'registry-only' not in sys.argv:
    from ptychodus.model import ModelCore
    with ModelCore() as core:
        result['model_core'] = summary(core.plugin_registry)
        result['model_core_product_readers'] = list(
            core.product_core.product_api.get_open_file_filters())
print('RESULT ' + json.dumps(result))
'''


def _make_distribution(root: Path) -> Path:
    site = root / 'fake_site'
    site.mkdir()
    (site / 'fake_plugin.py').write_text(textwrap.dedent(FAKE_PLUGIN), encoding='utf-8')
    (site / 'fake_plugin_broken.py').write_text(FAKE_BROKEN, encoding='utf-8')
    info = site / 'fake_plugin-0.0.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: fake-plugin\nVersion: 0.0\n',
                                   encoding='utf-8')
    lines = ['[ptychodus.plugins]'] + [f'{name} = {value}' for name, (value, _) in ENTRY_POINTS.items()]
    (info / 'entry_points.txt').write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return site


def _run(
    tmp_path: Path, site: Path | None, *, model_core: bool = True
) -> tuple[dict, str, subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if k != 'PTYCHOPINN_PTYCHODUS_DISABLE'}
    env['PYTHONDONTWRITEBYTECODE'] = '1'
    if site is not None:
        env['PYTHONPATH'] = os.pathsep.join([str(site), *filter(None, [env.get('PYTHONPATH')])])
    completed = subprocess.run(
        [sys.executable, '-c', PROBE, *([] if model_core else ['registry-only'])], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, (
        f'Ptychodus failed to start (rc={completed.returncode})\n'
        f'stdout:\n{completed.stdout[-3000:]}\nstderr:\n{completed.stderr[-5000:]}'
    )
    (line,) = [ln for ln in completed.stdout.splitlines() if ln.startswith('RESULT ')]
    return json.loads(line[len('RESULT '):]), completed.stdout + completed.stderr, completed


@pytest.fixture(scope='module')
def broken_start(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('startup')
    site = _make_distribution(tmp_path)
    return _run(tmp_path, site)


def test_fake_distribution_is_visible_to_importlib_metadata(tmp_path):
    """Guards the set-up: otherwise the other tests would prove nothing."""
    site = _make_distribution(tmp_path)
    code = ('import importlib.metadata as m, json; '
            "print(json.dumps(sorted(e.name for e in m.entry_points(group='ptychodus.plugins'))))")
    out = subprocess.run([sys.executable, '-c', code], env={**os.environ, 'PYTHONPATH': str(site)},
                         capture_output=True, text=True, timeout=60, check=True).stdout
    names = json.loads(out)
    assert set(ENTRY_POINTS) <= set(names)
    assert 'ptychopinn' in names


def _ours_registered(summary: dict) -> None:
    for entry in plugin.PLUGINS:
        names = summary[entry.chooser]
        assert names.count(entry.simple_name) == 1, (entry.chooser, entry.simple_name, names)


def test_load_plugins_survives_broken_entry_points_and_keeps_ours(broken_start):
    result, _, _ = broken_start
    _ours_registered(result['registry'])


def test_model_core_starts_with_broken_entry_points_and_keeps_ours(broken_start):
    result, _, _ = broken_start
    _ours_registered(result['model_core'])
    assert plugin.NPZ_DISPLAY_NAME in result['model_core_product_readers']
    # Ptychodus's own plugins are all still there (the bridge did not abort the scan).
    for builtin in ('HDF5', 'NPZ', 'CXI'):
        assert builtin in result['model_core']['product_file_readers']


def test_entry_points_after_a_failure_still_run(broken_start):
    result, _, _ = broken_start
    assert result['registry']['diffraction_file_readers'].count('FakeGood') == 1
    assert result['model_core']['diffraction_file_readers'].count('FakeGood') == 1


@pytest.mark.parametrize('name', BROKEN)
def test_each_failure_is_logged_by_entry_point_name(broken_start, name):
    _, output, _ = broken_start
    logged = [line for line in output.splitlines()
              if line.startswith('LOG') and (f"'{name}'" in line or f'"{name}"' in line)]
    # Once for load_plugins(), once for ModelCore's own load_plugins().
    assert len(logged) >= 2, f'no log line names entry point {name!r}:\n{output[-4000:]}'
    assert all('WARNING' in line or 'ERROR' in line for line in logged), logged


def test_failure_messages_carry_the_cause(broken_start):
    _, output, _ = broken_start
    for text in ('simulated broken binary dependency', 'simulated crash in register_plugins',
                 'simulated AttributeError', 'simulated failure after a registration'):
        assert text in output, f'{text!r} not in the log'


def test_clean_start_logs_no_bridge_warnings(tmp_path):
    """Without broken plugins around, the bridge is silent and ours are registered."""
    result, output, _ = _run(tmp_path, None, model_core=False)
    _ours_registered(result['registry'])
    noisy = [line for line in output.splitlines()
             if line.startswith('LOG') and 'ptychopinn_ptychodus_entry_points' in line]
    assert not noisy, noisy
