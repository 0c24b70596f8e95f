"""``ptychopinn-ptychodus doctor``: does the installed Ptychodus see our plugin, and if not, why?

The wheel delivers the bridge through a ``.pth`` hook (:mod:`.pth_hook`), never
a file under ``site-packages/ptychodus/``; doctor checks each link of that chain
the way Ptychodus itself walks it. Also ``install-bridge`` / ``remove-bridge``
where the hook is missing (an install that skipped the wheel's force-included files).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import pkgutil
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from . import pth_hook

BRIDGE_NAME = pth_hook.BRIDGE_NAME
BRIDGE_MODULE = 'ptychodus.plugins.' + BRIDGE_NAME.removesuffix('.py')
PTH_NAME = 'ptychopinn_ptychodus_hook.pth'
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
    """A ``ptychodus/`` folder without ``__init__.py`` that makes ``import ptychodus`` succeed.

    Wheels up to 0.2.0 created one (with only our bridge) where Ptychodus was absent.
    """
    if host_version() is not None:
        return None
    try:
        spec = importlib.util.find_spec('ptychodus')
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or ()) if spec is not None else ():
        if not (Path(location) / '__init__.py').exists():
            return Path(location)
    return None


def hook_file() -> Path | None:
    """Our installed ``.pth`` file as RECORD locates it, if it is on disk."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == PTH_NAME:
            path = Path(str(dist.locate_file(file)))
            return path if path.is_file() else None
    return None


def _hook_checks() -> list[Check]:
    """Is the ``.pth`` hook installed, and did it run in this interpreter?"""
    pth = hook_file()
    # hatchling's editable wheels install it too (force-include); other tools' may not
    how = 'an editable install' if is_editable() else 'this install'
    fix = (f'{how} lacks it: reinstall (`pip install --force-reinstall ptychopinn-ptychodus`) '
           'or run `ptychopinn-ptychodus install-bridge`')
    if pth is None:
        return [Check(False, f'plugin hook {PTH_NAME} not installed', fix)]
    active = pth_hook.installed() or 'ptychodus.plugins' in sys.modules
    if active:
        return [Check(True, f'plugin hook {pth} active')]
    why = _why_no_pth(pth)
    return [Check(False, f'plugin hook {pth} installed but did not run in this interpreter: {why}',
                  'start Python without -S, or run `ptychopinn-ptychodus install-bridge` once '
                  '(copies the bridge into Ptychodus\'s own plugins folder, which needs no hook)')]


def _why_no_pth(pth: Path) -> str:
    """Why Python's ``site`` module did not run our ``.pth`` line, as far as this interpreter tells."""
    import site

    if sys.flags.no_site:
        return 'Python was started with -S (no site module: .pth files are not read)'
    folder = pth.parent.resolve()
    user_site = getattr(site, 'ENABLE_USER_SITE', False) and site.getusersitepackages()
    site_dirs = {Path(d).resolve() for d in site.getsitepackages()}
    if user_site:
        site_dirs.add(Path(user_site).resolve())
    if folder not in site_dirs:
        return (f'{folder} is not a site directory (PYTHONPATH, pip --target or -s/-I with a --user '
                'install): Python reads .pth files only in site directories')
    return 'something removed its finder from sys.meta_path after start-up'


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
    if orphan is None:
        what = '`import ptychodus` fails, as it should: this package adds no ptychodus folder'
        checks.append(Check(True, what))
    else:
        checks.append(
            Check(
                False,
                f'{orphan} is a folder without Ptychodus in it, so `import ptychodus` succeeds '
                '(left by ptychopinn-ptychodus <= 0.2.0 or another tool)',
                f'remove the folder: rm -r {orphan}',
            )
        )
    pth = hook_file()
    if pth is not None:
        what = f'plugin hook {pth} installed: a Ptychodus installed later finds the plugin'
        checks.append(Check(True, what))
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
    return [*checks, *_hook_checks(), _bridge_check()]


def bridge_location() -> Path | None:
    """Where Ptychodus's own scan (``iter_modules`` over ``ptychodus.plugins.__path__``) finds the bridge."""
    try:
        import ptychodus.plugins as host_plugins
    except Exception:  # noqa: BLE001 - reported by the caller
        return None
    for info in pkgutil.iter_modules(host_plugins.__path__, host_plugins.__name__ + '.'):
        if info.name == BRIDGE_MODULE:
            folder = getattr(info.module_finder, 'path', None)
            return None if folder is None else Path(folder) / BRIDGE_NAME
    return None


def _bridge_check() -> Check:
    found = bridge_location()
    if found is None:
        return Check(False, f'Ptychodus\'s plugin scan does not list {BRIDGE_MODULE}',
                     'see the plugin hook check above, or run `ptychopinn-ptychodus install-bridge`')
    how = 'copied by install-bridge' if found.parent == plugins_folder() else 'added by the plugin hook'
    return Check(True, f'Ptychodus\'s plugin scan lists the bridge module {found} ({how})')


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
