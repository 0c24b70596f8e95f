"""Show our bridge to Ptychodus without creating a ``ptychodus`` folder in site-packages.

The wheel installs this file a second time as the top-level module
``_ptychopinn_ptychodus_hook`` and a ``ptychopinn_ptychodus_hook.pth`` whose one
line calls :func:`install` at interpreter start (the mechanism setuptools uses
for its editable finders). :func:`install` only puts a finder on
``sys.meta_path``: it imports nothing and touches no file, so programs that
never import Ptychodus pay a string comparison per import. When Ptychodus
imports ``ptychodus.plugins``, the finder lets the real finders find it and adds
our folder -- holding only the bridge module -- to its search path; Ptychodus
1.5.1, 1.6.0 and 1.7.0 list plugins with ``pkgutil.iter_modules`` over that
path, so the bridge is found as ``ptychodus.plugins.ptychopinn_ptychodus_entry_points``.
Without Ptychodus nothing is found and ``import ptychodus`` fails as before.
Standard library only: it runs in every Python process of the environment.
"""

# No ``from __future__ import annotations``: it would import ``__future__`` in every process;
# the names only mypy sees are quoted instead.
import os
import sys

#: Not ``typing.TYPE_CHECKING``: importing typing or collections.abc here would cost every
#: Python process of the environment a few milliseconds at start (mypy honours this name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

TARGET = 'ptychodus.plugins'
#: The folder, inside our installed package, that holds only the bridge module.
FOLDER_PARTS = ('host', 'ptychodus_plugins')
BRIDGE_NAME = 'ptychopinn_ptychodus_entry_points.py'


def bridge_folder() -> str | None:
    """Our installed bridge folder, found next to this file without importing our package; None if absent.

    The top-level copy sits beside ``ptychopinn_ptychodus/`` in site-packages (also in
    hatchling's editable installs, which install the force-included files); the
    package copy sits in ``host/``.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    top_level = os.path.join(here, 'ptychopinn_ptychodus', *FOLDER_PARTS)
    in_package = os.path.join(here, FOLDER_PARTS[-1])
    for folder in (top_level, in_package):
        if os.path.isfile(os.path.join(folder, BRIDGE_NAME)):
            return folder
    return None


def extend(module: 'ModuleType') -> bool:
    """Add our folder to ``module.__path__`` once; True if it is there afterwards.

    The path becomes a plain list: a namespace package's own path object is
    recomputed (dropping additions) whenever ``importlib.invalidate_caches`` runs
    (Python >= 3.12), and ``ptychodus.plugins`` has one fixed portion anyway.
    """
    folder = bridge_folder()
    path = getattr(module, '__path__', None)
    if folder is None or path is None:
        return False
    entries = list(path)
    if folder not in entries:
        module.__path__ = [*entries, folder]
    return True


class PluginPathFinder:
    """A meta-path finder that only answers for ``ptychodus.plugins``, by asking the others."""

    @classmethod
    def find_spec(cls, fullname: str, path: 'Sequence[str] | None' = None,
                  target: 'ModuleType | None' = None) -> 'ModuleSpec | None':
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, 'find_spec', None)
            if finder is cls or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        folder = bridge_folder()
        locations = spec.submodule_search_locations
        if folder is not None and locations is not None and folder not in list(locations):
            spec.submodule_search_locations = [*locations, folder]
        return spec


def installed() -> bool:
    """Whether a finder of this kind (from either copy of this file) is on ``sys.meta_path``."""
    return any(getattr(f, '__name__', '') == PluginPathFinder.__name__ for f in sys.meta_path)


def install() -> None:
    """Called by the ``.pth`` line: never raises, never imports Ptychodus."""
    try:
        module = sys.modules.get(TARGET)
        if module is not None:
            extend(module)
        elif not installed():
            sys.meta_path.insert(0, PluginPathFinder)
    except Exception:  # noqa: BLE001 - a .pth error must not disturb an unrelated program
        pass
