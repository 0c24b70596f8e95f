"""The module our ``ptychodus.plugins`` entry point names (``...plugin:register_plugins``).

It stays at this path because bridges installed by 0.2.0 and users'
``pyproject.toml`` files name it; the adapter itself is :mod:`.host.plugin`.
"""

from __future__ import annotations

from .host.plugin import (
    H5_DISPLAY_NAME,
    H5_SIMPLE_NAME,
    NPZ_DISPLAY_NAME,
    NPZ_SIMPLE_NAME,
    PLUGINS,
    BundledDiffractionFileReader,
    BundledProductFileReader,
    NPZDiffractionFileReader,
    NPZDiffractionFileWriter,
    NPZProductFileReader,
    NPZProductFileWriter,
    PluginEntry,
    register_plugins,
)

__all__ = [
    'H5_DISPLAY_NAME',
    'H5_SIMPLE_NAME',
    'NPZ_DISPLAY_NAME',
    'NPZ_SIMPLE_NAME',
    'PLUGINS',
    'BundledDiffractionFileReader',
    'BundledProductFileReader',
    'NPZDiffractionFileReader',
    'NPZDiffractionFileWriter',
    'NPZProductFileReader',
    'NPZProductFileWriter',
    'PluginEntry',
    'register_plugins',
]
