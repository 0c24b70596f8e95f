"""``ptychopinn-ptychodus doctor``: does the installed Ptychodus see our plugin, and if not, why?

Also ``install-bridge`` / ``remove-bridge`` for editable (development) installs,
where pip cannot place the bridge module into Ptychodus's ``plugins`` folder.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

BRIDGE_NAME = 'ptychopinn_ptychodus_entry_points.py'
DISTRIBUTION = 'ptychopinn-ptychodus'
SUPPORTED = ((1, 7), (1, 8))  # [lower, upper)
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


def diagnose() -> list[Check]:
    checks: list[Check] = []
    try:
        host_version = metadata.version('ptychodus')
        import ptychodus  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return [Check(False, f'Ptychodus is not importable: {exc}', "pip install 'ptychodus>=1.7,<1.8'")]
    supported = SUPPORTED[0] <= _version_tuple(host_version)[:2] < SUPPORTED[1]
    checks.append(Check(
        supported, f'Ptychodus {host_version} ' + ('(supported)' if supported else '(untested version)'),
        '' if supported else "this release is tested with ptychodus 1.7.x: pip install 'ptychodus>=1.7,<1.8'",
    ))
    try:
        own_version = metadata.version(DISTRIBUTION)
        checks.append(Check(True, f'{DISTRIBUTION} {own_version} installed'))
    except metadata.PackageNotFoundError:
        checks.append(Check(False, f'{DISTRIBUTION} is not installed as a distribution',
                            'pip install ptychopinn-ptychodus (or `pip install .` in a checkout)'))
    eps = [ep for ep in metadata.entry_points(group='ptychodus.plugins') if ep.value == ENTRY_POINT]
    checks.append(Check(bool(eps), 'entry point ptychodus.plugins -> ' + ENTRY_POINT,
                        'reinstall the package; its metadata lacks the entry point'))
    folder = plugins_folder()
    bridge = None if folder is None else folder / BRIDGE_NAME
    present = bridge is not None and bridge.is_file()
    editable = is_editable()
    checks.append(Check(
        present, f'bridge module {bridge}' + (' present' if present else ' missing'),
        ('editable installs cannot place it: run `ptychopinn-ptychodus install-bridge`'
         if editable else 'reinstall non-editably (`pip install --force-reinstall ptychopinn-ptychodus`) '
         'or run `ptychopinn-ptychodus install-bridge`'),
    ))
    try:
        plugin = importlib.import_module('ptychopinn_ptychodus.plugin')
    except Exception as exc:  # noqa: BLE001
        checks.append(Check(False, f'our plugin module fails to import: {type(exc).__name__}: {exc}',
                            'check the Ptychodus version and reinstall'))
        return checks
    checks.append(Check(True, 'plugin module imports'))
    from ptychodus.api.plugins import PluginRegistry

    logging.getLogger('ptychodus').setLevel(logging.ERROR)
    registry = PluginRegistry.load_plugins()
    for entry in plugin.PLUGINS:
        choosers = [entry.chooser]
        if entry.with_adapters:
            choosers += ['probe_file_readers', 'object_file_readers', 'probe_position_file_readers']
        for chooser in choosers:
            names = [p.simple_name for p in getattr(registry, chooser)]
            count = names.count(entry.simple_name)
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
    if folder is None:
        raise SystemExit('ptychodus is not importable; install it first')
    target = folder / BRIDGE_NAME
    if target.exists() and not force:
        raise SystemExit(f'{target} already exists (use --force to replace it)')
    source = Path(__file__).with_name('ptychodus_bridge.py')
    shutil.copyfile(source, target)
    return target


def remove_bridge() -> Path | None:
    folder = plugins_folder()
    target = None if folder is None else folder / BRIDGE_NAME
    if target is not None and target.exists():
        target.unlink()
        return target
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='ptychopinn-ptychodus')
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('doctor', help='check that Ptychodus discovers our readers and writers')
    install = sub.add_parser('install-bridge', help='copy the bridge into Ptychodus (editable installs)')
    install.add_argument('--force', action='store_true')
    sub.add_parser('remove-bridge', help='remove a bridge copied by install-bridge')
    args = parser.parse_args(argv)
    if args.command == 'install-bridge':
        print(f'installed {install_bridge(args.force)}; undo with `ptychopinn-ptychodus remove-bridge`')
        return 0
    if args.command == 'remove-bridge':
        removed = remove_bridge()
        print(f'removed {removed}' if removed else 'no bridge to remove')
        return 0
    checks = diagnose()
    for check in checks:
        print(f'{"ok  " if check.ok else "FAIL"}  {check.what}')
        if not check.ok and check.fix:
            print(f'        fix: {check.fix}')
    healthy = all(check.ok for check in checks)
    print('Ptychodus discovers every PtychoPINN reader and writer.' if healthy
          else 'Problems found; see the fixes above.')
    return 0 if healthy else 1


def run() -> None:
    sys.exit(main())
