"""Ptychodus discovers our readers and writers through its own plugin loader, exactly once.

Everything here goes through ``PluginRegistry.load_plugins()`` of the installed
Ptychodus, which imports the modules on ``ptychodus.plugins.__path__`` -- among
them the bridge, whose folder our wheel's ``.pth`` hook adds to that path -- so
these tests need a normal (non-editable) install of the package.
"""

from __future__ import annotations

import importlib.metadata
import pkgutil
import re
import subprocess
import sys
import sysconfig
from collections import Counter
from pathlib import Path

import pytest
from ptychodus.api.plugins import PluginRegistry

import ptychopinn_ptychodus
from ptychopinn_ptychodus import plugin

BRIDGE_NAME = 'ptychopinn_ptychodus_entry_points.py'
BRIDGE_MODULE = 'ptychodus.plugins.ptychopinn_ptychodus_entry_points'
DISTRIBUTION = 'ptychopinn-ptychodus'
ADAPTER_CHOOSERS = ('probe_file_readers', 'object_file_readers', 'probe_position_file_readers')
#: "Description (*.ext1 *.ext2)": what Ptychodus turns into file-dialog filters and globs.
DISPLAY_NAME = re.compile(r'^[^()]*\S \((\*\.[A-Za-z0-9]+)( \*\.[A-Za-z0-9]+)*\)$')


def _expected_per_chooser() -> Counter[tuple[str, str, str]]:
    """(chooser, simple name, display name) -> how often PLUGINS puts it there."""
    expected: Counter[tuple[str, str, str]] = Counter()
    for entry in plugin.PLUGINS:
        expected[(entry.chooser, entry.simple_name, entry.display_name)] += 1
        if entry.with_adapters:
            for chooser in ADAPTER_CHOOSERS:
                expected[(chooser, entry.simple_name, entry.display_name)] += 1
    return expected


def _ours_in(registry: PluginRegistry) -> Counter[tuple[str, str, str]]:
    """Everything the registry holds under one of our simple or display names."""
    simple = {entry.simple_name.casefold() for entry in plugin.PLUGINS}
    display = {entry.display_name for entry in plugin.PLUGINS}
    found: Counter[tuple[str, str, str]] = Counter()
    for chooser_name, chooser in vars(registry).items():
        if not hasattr(chooser, 'register_plugin'):
            continue
        for registered in chooser:
            if registered.simple_name.casefold() in simple or registered.display_name in display:
                found[(chooser_name, registered.simple_name, registered.display_name)] += 1
    return found


def test_tests_run_against_the_installed_wheel():
    site = Path(sysconfig.get_paths()['purelib']).resolve()
    assert Path(ptychopinn_ptychodus.__file__).resolve().is_relative_to(site), (
        f'tests imported {ptychopinn_ptychodus.__file__}, not the installed package in {site}; '
        'run `pip install --no-deps --force-reinstall .` and start pytest from tests/'
    )


def test_plugins_table_is_not_empty_and_names_every_expected_chooser():
    choosers = {entry.chooser for entry in plugin.PLUGINS}
    assert {'diffraction_file_readers', 'diffraction_file_writers', 'product_file_readers',
            'product_file_writers'} <= choosers
    assert any(entry.with_adapters for entry in plugin.PLUGINS)


def test_load_plugins_lists_every_plugins_entry_exactly_once(registry):
    expected = _expected_per_chooser()
    found = _ours_in(registry)
    assert found == expected, (
        f'missing: {dict(expected - found)}; unexpected or duplicated: {dict(found - expected)}'
    )


@pytest.mark.parametrize('entry', plugin.PLUGINS, ids=lambda e: f'{e.chooser}-{e.simple_name}')
def test_each_entry_is_found_by_ptychodus_lookup(registry, entry):
    choosers = [entry.chooser, *(ADAPTER_CHOOSERS if entry.with_adapters else ())]
    for chooser_name in choosers:
        chooser = getattr(registry, chooser_name)
        by_simple = chooser.find_plugin(entry.simple_name)
        by_display = chooser.find_plugin(entry.display_name)
        assert by_simple is not None, f'{entry.simple_name} not found in {chooser_name}'
        assert by_simple is by_display, f'{chooser_name}: simple and display names resolve differently'
        assert by_simple.simple_name == entry.simple_name
        assert by_simple.display_name == entry.display_name
    # The registered strategy is an instance of the class PLUGINS names.
    # Plugin.strategy, not get_strategy_by_name: the latter is missing in Ptychodus 1.5.1.
    found = getattr(registry, entry.chooser).find_plugin(entry.simple_name)
    assert found is not None
    strategy = found.strategy
    assert type(strategy) is entry.factory


@pytest.mark.parametrize('entry', plugin.PLUGINS, ids=lambda e: f'{e.chooser}-{e.simple_name}')
def test_display_names_are_file_dialog_filters(entry):
    assert DISPLAY_NAME.match(entry.display_name), entry.display_name


def test_display_name_globs_match_the_formats():
    globs = {entry.simple_name: entry.display_name for entry in plugin.PLUGINS}
    assert globs[plugin.NPZ_SIMPLE_NAME].endswith('(*.npz)')
    assert '*.h5' in globs[plugin.H5_SIMPLE_NAME] and '*.hdf5' in globs[plugin.H5_SIMPLE_NAME]


def test_our_simple_names_are_unique_in_every_chooser(registry):
    """Ptychodus looks names up case-insensitively and returns the first match."""
    ours = {entry.simple_name.casefold() for entry in plugin.PLUGINS}
    for chooser_name, chooser in vars(registry).items():
        if not hasattr(chooser, 'register_plugin'):
            continue
        names = Counter(p.simple_name.casefold() for p in chooser)
        clashes = {name: n for name, n in names.items() if name in ours and n > 1}
        assert not clashes, f'{chooser_name}: simple names registered more than once: {clashes}'
        displays = Counter(p.display_name for p in chooser)
        ours_display = {e.display_name for e in plugin.PLUGINS}
        dup_display = {d: n for d, n in displays.items() if d in ours_display and n > 1}
        assert not dup_display, f'{chooser_name}: display names registered more than once: {dup_display}'


def test_bridge_called_again_registers_nothing_twice():
    registry = PluginRegistry.load_plugins()
    before = _ours_in(registry)
    bridge = __import__(BRIDGE_MODULE, fromlist=['register_plugins'])
    bridge.register_plugins(registry)
    bridge.register_plugins(registry)
    assert _ours_in(registry) == before == _expected_per_chooser()


def test_direct_entry_point_call_after_load_plugins_registers_nothing_twice():
    """A future Ptychodus that reads entry points itself would call our hook after the bridge did."""
    registry = PluginRegistry.load_plugins()
    (entry_point,) = [
        ep for ep in importlib.metadata.entry_points(group='ptychodus.plugins')
        if ep.dist is not None and ep.dist.metadata['Name'] == DISTRIBUTION
    ]
    hook = entry_point.load()
    assert hook is plugin.register_plugins
    hook(registry)
    plugin.register_plugins(registry)
    assert _ours_in(registry) == _expected_per_chooser()


def test_entry_point_first_then_bridge_registers_nothing_twice():
    registry = PluginRegistry()
    plugin.register_plugins(registry)
    assert _ours_in(registry) == _expected_per_chooser()
    bridge = __import__(BRIDGE_MODULE, fromlist=['register_plugins'])
    bridge.register_plugins(registry)
    assert _ours_in(registry) == _expected_per_chooser()


def _scan() -> dict[str, Path]:
    """What Ptychodus's ``load_plugins`` (1.5.1, 1.6.0, 1.7.0) walks: module name -> folder."""
    import ptychodus.plugins

    return {info.name: Path(info.module_finder.path)  # type: ignore[union-attr]
            for info in pkgutil.iter_modules(ptychodus.plugins.__path__, 'ptychodus.plugins.')}


def test_ptychodus_scan_lists_the_bridge_from_our_folder_not_from_ptychodus():
    """The ``.pth`` hook adds our folder to the scan; nothing of ours sits in Ptychodus's folder."""
    import ptychodus.plugins

    host_folder = Path(list(ptychodus.plugins.__path__)[0]).resolve()
    ours = (Path(ptychopinn_ptychodus.__file__).parent / 'host' / 'ptychodus_plugins').resolve()
    assert _scan()[BRIDGE_MODULE].resolve() == ours
    assert not (host_folder / BRIDGE_NAME).exists(), 'a bridge copy sits in Ptychodus (install-bridge?)'
    assert sorted(p.name for p in ours.glob('*.py')) == [BRIDGE_NAME]  # nothing else is scanned


def test_bridge_stays_on_the_scan_path_after_invalidate_caches():
    """Python >= 3.12 recomputes a namespace path on invalidate_caches; our plain list does not forget."""
    import importlib

    importlib.invalidate_caches()
    assert BRIDGE_MODULE in _scan()


def test_wheel_record_has_no_file_under_ptychodus():
    """A file there would make ``import ptychodus`` succeed where Ptychodus is absent (issue 18)."""
    files = importlib.metadata.files(DISTRIBUTION)
    assert files is not None, f'{DISTRIBUTION} has no RECORD'
    assert not [f for f in files if f.as_posix().startswith('ptychodus/')]


@pytest.mark.parametrize('target', [
    'ptychopinn_ptychodus_hook.pth',
    '_ptychopinn_ptychodus_hook.py',
    f'ptychopinn_ptychodus/host/ptychodus_plugins/{BRIDGE_NAME}',
])
def test_wheel_record_lists_the_hook_and_bridge_so_pip_uninstall_removes_them(target):
    files = importlib.metadata.files(DISTRIBUTION)
    assert files is not None, f'{DISTRIBUTION} has no RECORD'
    (recorded,) = [f for f in files if f.as_posix() == target]
    located = Path(recorded.locate()).resolve()
    assert located.is_file()
    assert located.is_relative_to(Path(sysconfig.get_paths()['purelib']).resolve())
    # pip only removes what RECORD describes correctly: the hash must match the file on disk.
    assert recorded.hash is not None
    import base64
    import hashlib

    digest = base64.urlsafe_b64encode(hashlib.new(recorded.hash.mode, located.read_bytes()).digest())
    assert digest.rstrip(b'=').decode() == recorded.hash.value
    assert recorded.size == located.stat().st_size


def test_pth_line_imports_only_the_tiny_hook():
    """site.py runs the line in every Python of the environment: it must not import our package."""
    (pth,) = [f for f in importlib.metadata.files(DISTRIBUTION) or () if f.name == 'ptychopinn_ptychodus_hook.pth']
    lines = Path(pth.locate()).read_text().splitlines()
    assert lines == ['import _ptychopinn_ptychodus_hook; _ptychopinn_ptychodus_hook.install()']
    code = 'import sys; print(sorted(m for m in sys.modules if "ptycho" in m))'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['_ptychopinn_ptychodus_hook']"


def test_wheel_declares_the_entry_point_the_bridge_loads():
    eps = [ep for ep in importlib.metadata.entry_points(group='ptychodus.plugins')
           if ep.dist is not None and ep.dist.metadata['Name'] == DISTRIBUTION]
    assert [ep.value for ep in eps] == ['ptychopinn_ptychodus.plugin:register_plugins']


def test_the_hook_imports_nothing_at_start_up():
    """``python -X importtime``: the hook module is a leaf (it uses only the already-imported os and sys)."""
    result = subprocess.run([sys.executable, '-X', 'importtime', '-c', 'pass'], capture_output=True, text=True,
                            check=True)
    rows = [line.split('|') for line in result.stderr.splitlines() if line.startswith('import time:')]
    names = [row[-1].rstrip() for row in rows]
    (at,) = [i for i, name in enumerate(names) if name.strip() == '_ptychopinn_ptychodus_hook']
    depth = len(names[at]) - len(names[at].lstrip())
    before = names[at - 1] if at else ''
    # importtime lists children before their parent, one level deeper: none may precede ours
    assert not before or len(before) - len(before.lstrip()) <= depth, names[max(0, at - 3):at + 1]


def _installed_hook() -> object:
    import importlib.util

    (record,) = [f for f in importlib.metadata.files(DISTRIBUTION) or () if f.name == '_ptychopinn_ptychodus_hook.py']
    spec = importlib.util.spec_from_file_location('_hook_copy_under_test', record.locate())
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_broken_environment_does_not_make_the_hook_raise(monkeypatch):
    """site.py runs ``install()`` in every Python of the environment: it must never raise."""
    hook = _installed_hook()

    class Hostile:
        @property
        def __path__(self):
            raise RuntimeError('a module whose path cannot be read')

    monkeypatch.setitem(sys.modules, 'ptychodus.plugins', Hostile())
    hook.install()  # must not raise
    monkeypatch.setattr(sys, 'meta_path', None)  # not even with no meta path at all
    hook.install()


def test_a_broken_hook_file_does_not_stop_python(tmp_path):
    """If our hook module is damaged, site.py reports the .pth line and Python still starts."""
    (pth,) = [f for f in importlib.metadata.files(DISTRIBUTION) or () if f.name == 'ptychopinn_ptychodus_hook.pth']
    (tmp_path / pth.name).write_text(Path(pth.locate()).read_text())
    (tmp_path / '_ptychopinn_ptychodus_hook.py').write_text('raise ImportError("damaged")\n')
    code = f'import site; site.addsitedir({str(tmp_path)!r}); print("started")'
    result = subprocess.run([sys.executable, '-I', '-c', code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == 'started', result
