"""Differences between the Ptychodus releases we support (1.5.1, 1.6.x, 1.7.x), by feature.

Nothing here compares version numbers: each difference is detected from the
running Ptychodus itself (field names, constructor signatures, and the host's
own probe -> object pixel mapping), so a patched or intermediate release works
as long as it has one of the known shapes.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..facts.quantities import BY_NAME, in_place


def parameter_names(cls: Any) -> tuple[str, ...]:
    """Keyword names a class accepts (dataclass fields or ``__init__`` parameters)."""
    if dataclasses.is_dataclass(cls):
        return tuple(field.name for field in dataclasses.fields(cls))
    return tuple(name for name in inspect.signature(cls).parameters if name != 'self')


def construct(cls: Any, values: Mapping[tuple[str, ...] | str, Any]) -> Any:
    """Build ``cls`` from values keyed by candidate names (newest spelling first).

    The first candidate the host's class accepts is used; a value none of whose
    names it accepts is dropped (the host predates that field).
    """
    return cls(**_accepted_keywords(cls, values))


def _accepted_keywords(func: Any, values: Mapping[tuple[str, ...] | str, Any]) -> dict[str, Any]:
    """Each value under the first of its candidate names that ``func`` accepts; the others dropped."""
    accepted = set(parameter_names(func))
    kwargs: dict[str, Any] = {}
    for names, value in values.items():
        candidates = (names,) if isinstance(names, str) else names
        chosen = next((name for name in candidates if name in accepted), None)
        if chosen is not None:
            kwargs[chosen] = value
    return kwargs


def quantity_keywords(func: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (our quantity names) under the keyword names ``func`` of the running host takes.

    E.g. ``create_product(photon_energy_eV=...)`` in 1.7 is ``probe_energy_eV=`` in 1.5.1/1.6.0;
    a quantity the host has no keyword for is dropped, as :func:`construct` does.
    """
    named = {(BY_NAME[key].ptychodus if key in BY_NAME and BY_NAME[key].ptychodus else key): value
             for key, value in values.items()}
    return _accepted_keywords(func, named)


def first_attr(obj: Any, names: Sequence[str], default: Any = None) -> Any:
    """The value of the first of ``names`` that ``obj`` has."""
    for name in names:
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


# ---------------------------------------------------------------------------
# metadata
# ---------------------------------------------------------------------------


def product_metadata(cls: Any, name: str, comments: str, values: Mapping[str, float]) -> Any:
    """Ptychodus ``ProductMetadata`` from our root quantities, under the host's field names."""
    fields: dict[tuple[str, ...] | str, Any] = {'name': name, 'comments': comments}
    for quantity in in_place('root'):
        fields[quantity.ptychodus] = float(values.get(quantity.name, 0.0))
    return construct(cls, fields)


def product_metadata_values(meta: Any) -> tuple[str, str, dict[str, float]]:
    """Name, comments and root quantities of a Ptychodus ``ProductMetadata``."""
    values = {q.name: float(first_attr(meta, q.ptychodus, 0.0) or 0.0) for q in in_place('root')}
    return str(meta.name), str(meta.comments), values


def diffraction_metadata(cls: Any, values: Mapping[str, Any]) -> Any:
    """Ptychodus ``DiffractionMetadata``: energy is ``photon_energy_eV`` (1.7) or ``probe_energy_eV``."""
    fields: dict[tuple[str, ...] | str, Any] = {}
    for key, value in values.items():
        fields[BY_NAME[key].ptychodus if key in BY_NAME else key] = value
    return construct(cls, fields)


def diffraction_quantities(meta: Any) -> dict[str, float | None]:
    """Distance, energy and detector pixel of a Ptychodus ``DiffractionMetadata``."""
    pixel = getattr(meta, 'detector_pixel_geometry', None)
    return {
        'detector_distance_m': getattr(meta, 'detector_distance_m', None),
        'photon_energy_eV': first_attr(meta, BY_NAME['photon_energy_eV'].ptychodus),
        'detector_pixel_width_m': None if pixel is None else pixel.width_m,
        'detector_pixel_height_m': None if pixel is None else pixel.height_m,
    }


def processed_pixel_geometry(dataset: Any) -> Any:
    """Detector pixel of the patterns Ptychodus assembled (after binning), or ``None``.

    1.6/1.7: ``get_processed_pixel_geometry()``; 1.5.1: the dataset's pattern sizer.
    ``metadata.detector_pixel_geometry`` is the raw detector's in every release.
    """
    getter = getattr(dataset, 'get_processed_pixel_geometry', None)
    if getter is not None:
        return getter()
    # 1.5.1: the assembled data keep the raw pixel; the dataset's own PatternSizer (private, no
    # public accessor in that release) folds binning/transpose in, as its product geometry does.
    sizer = getattr(dataset, '_sizer', None)
    raw = getattr(dataset, 'get_raw_pixel_geometry', None)
    if sizer is not None and raw is not None and hasattr(sizer, 'get_processed_pixel_geometry'):
        return sizer.get_processed_pixel_geometry(raw())
    return None


def assembled_bad_pixels(dataset: Any) -> np.ndarray | None:
    """The bad-pixel mask of the assembled (processed) patterns, where the dataset has one."""
    data = getattr(dataset, 'get_assembled_data', None)
    return None if data is None else np.asarray(data().get_bad_pixels())


#: What Ptychodus's default crop does, for ``--inspect`` and the layout tree our readers show.
CROP_NOTE = (
    "Ptychodus crops to 64x64 around pixel (32, 32) by default when opened headless: patterns larger "
    "than 64 lose their centre (PtychoPINN's zero frequency is at N//2). The Open Dataset wizard applies "
    "the beam centre we report (N//2); headless pass crop_region=CropRegion(...) centred at N//2 "
    "(1.6+; 1.5.1: crop_center=/crop_extent=) or set diffraction_settings.crop_enabled False."
)


def beam_center(module: Any, x_px: int, y_px: int) -> dict[str, Any]:
    """``DiffractionMetadata`` field for the direct-beam pixel, under the host's name.

    1.6+: ``beam_center=BeamCenter(x_px, y_px)``; 1.5.1: ``crop_center=CropCenter(position_x_px,
    position_y_px)``. Both are what the Open Dataset wizard applies as the crop centre.
    """
    if hasattr(module, 'BeamCenter'):
        return {'beam_center': module.BeamCenter(int(x_px), int(y_px))}
    if hasattr(module, 'CropCenter'):
        return {'crop_center': module.CropCenter(int(x_px), int(y_px))}
    return {}


# ---------------------------------------------------------------------------
# positions and geometry
# ---------------------------------------------------------------------------


def position_arrays(positions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indexes and x/y metres of a ``ProbePositionSequence`` in every release.

    ``ProbePosition`` is ``(index, x, y, ...)`` everywhere; only the names of x
    and y changed (``coordinate_x_m`` before 1.6), so values are read by position.
    """
    rows = [tuple(getattr(p, f.name) for f in dataclasses.fields(p)[:3]) for p in positions]
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    index, x_m, y_m = zip(*rows, strict=True)
    return np.asarray(index, np.int64), np.asarray(x_m, np.float64), np.asarray(y_m, np.float64)


def object_center(cls: Any, x_m: float, y_m: float) -> Any:
    """``ObjectCenter`` (``x_m``/``y_m``, or ``coordinate_x_m``/``coordinate_y_m`` before 1.6)."""
    return cls(x_m, y_m)


_OFFSETS: dict[tuple[Any, Any], float] = {}


def host_pixel_offset(geometry_cls: Any, position_cls: Any) -> float:
    """Where the running Ptychodus puts the object centre, minus ``(W - 1) / 2``, in pixels.

    Measured with the host's own ``map_coordinates_probe_to_object`` on a
    4-pixel-wide object: 0.0 for Ptychodus >= 1.6 (``(W - 1) / 2``), 0.5 for
    1.5.1 (``W / 2``). Our metres are written for ``(W - 1) / 2``; positions
    handed to an older host are moved by this offset so that they land on the
    same object pixels there.
    """
    key = (geometry_cls, position_cls)
    if key not in _OFFSETS:
        _OFFSETS[key] = _measure_offset(geometry_cls, position_cls)
    return _OFFSETS[key]


def _measure_offset(geometry_cls: Any, position_cls: Any) -> float:
    geometry = construct(
        geometry_cls,
        {
            'width_px': 4,
            'height_px': 4,
            'pixel_width_m': 1.0,
            'pixel_height_m': 1.0,
            'center_x_m': 0.0,
            'center_y_m': 0.0,
        },
    )
    mapped = geometry.map_coordinates_probe_to_object(position_cls(0, 0.0, 0.0))
    return float(first_attr(mapped, ('x_px', 'coordinate_x_px'))) - 1.5


def find_strategy(chooser: Any, simple_name: str) -> Any:
    """A registered strategy by simple name (``get_strategy_by_name`` is absent before 1.6)."""
    plugin = chooser.find_plugin(simple_name)
    if plugin is None:
        raise LookupError(simple_name)
    return plugin.strategy


def host_object_pixels(geometry: Any, positions: Any) -> tuple[np.ndarray, np.ndarray]:
    """Every position mapped to object pixels by the running host's own mapping (any release)."""
    mapped = [geometry.map_coordinates_probe_to_object(position) for position in positions]
    x_px = [float(first_attr(point, ('x_px', 'coordinate_x_px'))) for point in mapped]
    y_px = [float(first_attr(point, ('y_px', 'coordinate_y_px'))) for point in mapped]
    return np.asarray(x_px), np.asarray(y_px)


def crop_arguments(x0: int, y0: int, width: int, height: int) -> dict[str, Any]:
    """``load_diffraction_data`` keywords cropping columns ``x0:x0+width``, rows ``y0:y0+height``.

    1.6+ take a ``CropRegion``; 1.5.1 takes a centre and an extent and slices
    ``[centre - size//2, centre + size//2)``, which is the region asked for only for
    even sizes (an odd size is refused: 1.5.1 would crop one pixel fewer).
    """
    from ptychodus.api import diffraction

    region_cls = getattr(diffraction, 'CropRegion', None)
    if region_cls is not None:
        return {'crop_region': region_cls(x_range=(x0, x0 + width), y_range=(y0, y0 + height))}
    if width % 2 or height % 2:
        raise ValueError(f'Ptychodus 1.5.1 crops only even sizes (asked {height}x{width}); give an even crop')
    from ptychodus.api.geometry import ImageExtent

    centre = diffraction.CropCenter(  # type: ignore[attr-defined]  # 1.5.1 only
        position_x_px=x0 + width // 2, position_y_px=y0 + height // 2)
    return {'crop_center': centre, 'crop_extent': ImageExtent(width_px=width, height_px=height)}
