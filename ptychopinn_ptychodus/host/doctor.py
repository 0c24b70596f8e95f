"""``ptychopinn-ptychodus doctor``: does the installed Ptychodus see our plugin, and if not, why?

Also ``install-bridge`` / ``remove-bridge`` for editable (development) installs,
where pip cannot place the bridge module into Ptychodus's ``plugins`` folder.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

BRIDGE_NAME = 'ptychopinn_ptychodus_entry_points.py'
DISTRIBUTION = 'ptychopinn-ptychodus'
#: Ptychodus releases this package is tested with: [lower, upper).
SUPPORTED = ((1, 5, 1), (1, 8))
ENTRY_POINT = 'ptychopinn_ptychodus.plugin:register_plugins'


@dataclass
class Check:
    ok: bool
    what: str
    fix: str = ''


def _version_tuple(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split('.'):
        digits = ''.join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def plugins_folder() -> Path | None:
    try:
        import ptychodus.plugins as host_plugins
    except Exception:  # noqa: BLE001 - reported by the caller
        return None
    return Path(list(host_plugins.__path__)[0])


def is_editable() -> bool:
    try:
        text = metadata.distribution(DISTRIBUTION).read_text('direct_url.json')
    except metadata.PackageNotFoundError:
        return False
    if not text:
        return False
    return bool(json.loads(text).get('dir_info', {}).get('editable', False))


def host_version() -> str | None:
    """The installed Ptychodus distribution's version, or None."""
    try:
        return metadata.version('ptychodus')
    except metadata.PackageNotFoundError:
        return None


def is_supported(version: str) -> bool:
    return SUPPORTED[0] <= _version_tuple(version)[:3] < SUPPORTED[1]


def orphan_plugins_folder() -> Path | None:
    """A ``ptychodus/`` folder that only our bridge file created (Ptychodus not installed)."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if str(file).endswith(f'ptychodus/plugins/{BRIDGE_NAME}'):
            bridge = Path(str(dist.locate_file(file)))
            package = bridge.parent.parent
            if bridge.is_file() and not (package / '__init__.py').exists():
                return package
    return None


def diagnose() -> list[Check]:
    """Every check, in the order a user would fix them; stops where the next ones cannot run."""
    version = host_version()
    if version is None:
        return _headless_checks()
    try:
        import ptychodus  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a diagnosis reports every failure
        return [
            Check(False, f'Ptychodus {version} is installed but not importable: {exc}', 'reinstall Ptychodus')
        ]
    checks = [_host_check(version), *_install_checks()]
    try:
        plugin = importlib.import_module('ptychopinn_ptychodus.plugin')
    except Exception as exc:  # noqa: BLE001 - a diagnosis reports every failure
        problem = f'our plugin module fails to import: {type(exc).__name__}: {exc}'
        return [*checks, Check(False, problem, 'check the Ptychodus version and reinstall')]
    return [*checks, Check(True, 'plugin module imports'), *_registry_checks(plugin.PLUGINS)]


def _headless_checks() -> list[Check]:
    checks = [
        Check(
            False,
            'Ptychodus is not installed: the converter and its script work, the plugin sleeps',
            "pip install 'ptychopinn-ptychodus[ptychodus]' (or Ptychodus from conda-forge)",
        )
    ]
    orphan = orphan_plugins_folder()
    if orphan is not None:
        checks.append(
            Check(
                False,
                f'{orphan} holds only our bridge module (created by this package; harmless, '
                'a Ptychodus installed later uses it)',
                'nothing to do; `ptychopinn-ptychodus remove-bridge` removes it',
            )
        )
    return checks


def _host_check(version: str) -> Check:
    supported = is_supported(version)
    lower, upper = ('.'.join(map(str, v)) for v in SUPPORTED)
    return Check(
        supported,
        f'Ptychodus {version} ' + ('(supported)' if supported else '(untested version)'),
        '' if supported else f'this release is tested with Ptychodus >= {lower}, < {upper}',
    )


def _install_checks() -> list[Check]:
    checks = []
    try:
        checks.append(Check(True, f'{DISTRIBUTION} {metadata.version(DISTRIBUTION)} installed'))
    except metadata.PackageNotFoundError:
        checks.append(
            Check(
                False,
                f'{DISTRIBUTION} is not installed as a distribution',
                'pip install ptychopinn-ptychodus (or `pip install .` in a checkout)',
            )
        )
    eps = [ep for ep in metadata.entry_points(group='ptychodus.plugins') if ep.value == ENTRY_POINT]
    checks.append(
        Check(
            bool(eps),
            'entry point ptychodus.plugins -> ' + ENTRY_POINT,
            'reinstall the package; its metadata lacks the entry point',
        )
    )
    folder = plugins_folder()
    bridge = None if folder is None else folder / BRIDGE_NAME
    present = bridge is not None and bridge.is_file()
    fix = (
        'editable installs cannot place it: run `ptychopinn-ptychodus install-bridge`'
        if is_editable()
        else 'reinstall non-editably (`pip install --force-reinstall ptychopinn-ptychodus`) '
        'or run `ptychopinn-ptychodus install-bridge`'
    )
    checks.append(Check(present, f'bridge module {bridge}' + (' present' if present else ' missing'), fix))
    return checks


def _registry_checks(entries: Any) -> list[Check]:
    """What Ptychodus's own registry lists for each of our registrations."""
    from ptychodus.api.plugins import PluginRegistry

    logging.getLogger('ptychodus').setLevel(logging.ERROR)
    registry = PluginRegistry.load_plugins()
    checks = []
    for entry in entries:
        choosers = [entry.chooser]
        if entry.with_adapters:
            choosers += ['probe_file_readers', 'object_file_readers', 'probe_position_file_readers']
        for chooser in choosers:
            count = [p.simple_name for p in getattr(registry, chooser)].count(entry.simple_name)
            what = f'{chooser}: {entry.simple_name} "{entry.display_name}"'
            if count == 1:
                checks.append(Check(True, what + ' registered'))
            elif count == 0:
                checks.append(Check(False, what + ' NOT registered', 'see the bridge check above'))
            else:
                checks.append(Check(False, what + f' registered {count} times', 'remove duplicate bridges'))
    return checks


def install_bridge(force: bool = False) -> Path:
    folder = plugins_folder()
    if folder is None or host_version() is None:
        raise SystemExit('ptychodus is not installed; install it first')
    target = folder / BRIDGE_NAME
    if target.exists() and not force:
        raise SystemExit(f'{target} already exists (use --force to replace it)')
    source = Path(__file__).with_name('bridge.py')
    shutil.copyfile(source, target)
    return target


def remove_bridge() -> Path | None:
    folder = plugins_folder()
    target = None if folder is None else folder / BRIDGE_NAME
    if target is not None and target.exists():
        target.unlink()
        return target
    return None
