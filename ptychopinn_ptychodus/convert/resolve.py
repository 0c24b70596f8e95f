"""Deciding every quantity of a conversion: explicit values, then the file's own, then defaults.

Defaults that stand in for unknown physics are warned about, listed in the
product's comments and recorded in ``ptychopinn_defaulted``. The detector
pixel is derived from far-field sampling so that Ptychodus reconstructs at
the product's object pixel size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..facts.errors import InvalidInputError
from ..facts.geometry import ObjectGrid, derive_detector_pixel_m
from ..facts.quantities import BY_NAME, QUANTITIES, ExportMeta, in_place
from ..npz.dataset import PtychoPINNDataset
from ..product.layout import ProductMetadata

NOTE_PREFIX = '[ptychopinn-ptychodus]'


@dataclass
class ResolvedMeta:
    """Every value decided, with a record of which ones are stand-ins."""

    values: dict[str, float]
    name: str
    comments: str
    defaulted: list[str] = field(default_factory=list)

    def grid(self, height: int, width: int) -> ObjectGrid:
        v = self.values
        return ObjectGrid(
            width_px=width,
            height_px=height,
            pixel_width_m=v['object_pixel_width_m'],
            pixel_height_m=v['object_pixel_height_m'],
            center_x_m=v['object_center_x_m'],
            center_y_m=v['object_center_y_m'],
        )

    def product_metadata(self, notes: list[str]) -> ProductMetadata:
        """Root metadata, with our notes appended to the user's comments."""
        comments = self.comments
        if notes:
            lines = '\n'.join(f'{NOTE_PREFIX} {note}' for note in notes)
            comments = f'{comments}\n{lines}' if comments else lines
        root = {q.name: self.values[q.name] for q in in_place('root')}
        return ProductMetadata(name=self.name, comments=comments, values=root)


def strip_notes(comments: str) -> str:
    """The user's comments without the notes :meth:`ResolvedMeta.product_metadata` added."""
    return '\n'.join(line for line in comments.splitlines() if not line.startswith(NOTE_PREFIX))


def resolve_meta(
    dataset: PtychoPINNDataset, meta: ExportMeta, *, need_detector: bool = False
) -> ResolvedMeta:
    """Explicit values win, then the file's own keys, then documented defaults.

    ``need_detector`` records a defaulted detector pixel too (it only matters
    when a diffraction file is written).
    """
    explicit = {**dataset.stored_values, **meta.given()}
    values = dict(explicit)
    defaulted: list[str] = []
    for quantity in QUANTITIES:
        if quantity.name in values or quantity.default is None or quantity.place == 'patterns':
            continue
        values[quantity.name] = quantity.default
        if quantity.warn:
            defaulted.append(quantity.name)
    _probe_pixels(dataset, values)
    _check_positive(dataset.path, values)
    if dataset.diffraction is not None:
        _detector_pixels(dataset, values, explicit, defaulted, need_detector)
    for key in defaulted:
        dataset.note(_default_note(key, values[key]))
    name = meta.name or dataset.stored_name or dataset.path.stem
    comments = meta.comments if meta.comments is not None else dataset.stored_comments or ''
    return ResolvedMeta(values=values, name=name, comments=comments, defaulted=defaulted)


def default_hint(key: str) -> str:
    """How a user gives a quantity: its command-line flag and its sidecar key (from the table)."""
    quantity = BY_NAME[key]
    flag = '--' + (quantity.flag or quantity.name).replace('_', '-')
    return f'pass {flag}, or set "{quantity.name}" in the JSON sidecar'


def _default_note(key: str, value: float) -> str:
    return f'{key} unknown; using the default {value:g} ({default_hint(key)})'


def _probe_pixels(dataset: PtychoPINNDataset, values: dict[str, float]) -> None:
    """PtychoPINN samples the probe on the object grid: default it there, note a difference."""
    for axis in ('width', 'height'):
        probe_key, object_key = f'probe_pixel_{axis}_m', f'object_pixel_{axis}_m'
        if probe_key not in values:
            values[probe_key] = values[object_key]
        elif values[probe_key] != values[object_key]:
            dataset.note(
                f'{probe_key}={values[probe_key]:g} differs from {object_key}='
                f'{values[object_key]:g}; PtychoPINN probes are sampled on the object grid'
            )


def _check_positive(path: Path, values: dict[str, float]) -> None:
    for quantity in QUANTITIES:
        value = values.get(quantity.name)
        if quantity.positive and value is not None and value <= 0:
            raise InvalidInputError(path, f'{quantity.name} must be positive, got {value:g}')


def _detector_pixels(
    dataset: PtychoPINNDataset,
    values: dict[str, float],
    explicit: dict[str, float],
    defaulted: list[str],
    need_detector: bool,
) -> None:
    """Derive the detector pixel from energy, distance and object pixel unless it was given.

    Deriving it even from stand-in values keeps Ptychodus at the product's
    object pixel size; only a zero distance falls back to the table default.
    """
    info = dataset.diffraction
    assert info is not None
    derived: list[str] = []
    for axis, pattern_px in (('width', info.width), ('height', info.height)):
        key = f'detector_pixel_{axis}_m'
        if key in explicit:
            continue
        inputs = ('photon_energy_eV', 'detector_distance_m', f'object_pixel_{axis}_m')
        from_defaults = any(k in defaulted for k in inputs)
        if values['detector_distance_m'] > 0:
            values[key] = derive_detector_pixel_m(
                values['photon_energy_eV'],
                values['detector_distance_m'],
                pattern_px,
                values[f'object_pixel_{axis}_m'],
            )
            if not from_defaults:
                derived.append(key)
        else:
            values[key] = float(BY_NAME[key].default or 0.0)
        if need_detector and (from_defaults or values['detector_distance_m'] <= 0):
            defaulted.append(key)
    if derived:  # one note for both axes
        sizes = ' x '.join(f'{values[key]:.6g}' for key in derived)
        dataset.note(f'{" and ".join(derived)} = {sizes} m derived from energy, distance and object pixel')
