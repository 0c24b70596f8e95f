"""Installed by our wheel as ``ptychopinn_ptychodus_entry_points.py`` in ``host/ptychodus_plugins/``.

Ptychodus (1.5.1-1.7) imports only modules found on ``ptychodus.plugins.__path__``;
it does not read entry points. :mod:`.pth_hook` adds that folder of ours to the
path when Ptychodus imports its plugins, so this module is found there (and
``install-bridge`` can still copy it into Ptychodus's own folder). It loads every entry
point of the ``ptychodus.plugins`` group and calls it with the registry. It
must never break Ptychodus's start-up, so every failure is caught and logged
by entry-point name, and it imports nothing heavy until Ptychodus calls it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

GROUP = 'ptychodus.plugins'
#: Set to 1 to make the bridge do nothing (diagnosis, benchmarks).
DISABLE_VARIABLE = 'PTYCHOPINN_PTYCHODUS_DISABLE'
_MARK = '_ptychopinn_bridge_loaded'
logger = logging.getLogger(__name__)


def _entry_points() -> list[Any]:
    try:
        from importlib.metadata import entry_points
    except ImportError:  # pragma: no cover - very old interpreters only
        from importlib_metadata import entry_points  # type: ignore[no-redef]
    seen: set[tuple[str, str]] = set()
    unique = []
    for ep in entry_points(group=GROUP):
        key = (ep.name, ep.value)
        if key not in seen:  # the same distribution on sys.path twice
            seen.add(key)
            unique.append(ep)
    return unique


def register_plugins(registry: Any) -> None:
    """Call every ``ptychodus.plugins`` entry point once per registry, never raising."""
    if os.environ.get(DISABLE_VARIABLE, '') not in ('', '0'):
        logger.info('%s is set; not loading %s entry points', DISABLE_VARIABLE, GROUP)
        return
    try:
        loaded: set[tuple[str, str]] = registry.__dict__.setdefault(_MARK, set())
        eps = _entry_points()
    except Exception:  # noqa: BLE001 - the host must start whatever happens here
        logger.exception('could not list %s entry points', GROUP)
        return
    for ep in eps:
        key = (ep.name, ep.value)
        if key in loaded:
            continue
        loaded.add(key)
        try:
            hook = ep.load()
        except BaseException as exc:  # noqa: BLE001 - ImportError and anything else
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            logger.warning('Skipping Ptychodus plugin entry point %r (%s): import failed: %s',
                           ep.name, ep.value, exc)
            continue
        try:
            hook(registry)
        except Exception as exc:  # noqa: BLE001
            logger.warning('Ptychodus plugin entry point %r (%s) failed to register: %s',
                           ep.name, ep.value, exc)
        else:
            logger.debug('Registered Ptychodus plugin entry point %r', ep.name)
