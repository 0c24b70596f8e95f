"""The physical quantities a PtychoPINN dataset does not record, in one table.

Every place that names a quantity derives it from :data:`QUANTITIES`: the
keywords of :class:`ExportMeta` (and their aliases, e.g. PtychoPINN's own
``probe_energy_eV``), sidecar JSON keys, CLI flags, the keys our NPZ writer
adds, the product HDF5 attributes (both spellings where Ptychodus versions
differ) and the field names of Ptychodus's metadata objects. Adding a
quantity means adding one row.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import InvalidInputError

#: Where a quantity lives in a product (or in Ptychodus's diffraction file).
Place = Literal['root', 'object', 'probe', 'patterns']


@dataclass(frozen=True)
class Quantity:
    """One physical quantity and every spelling of it."""

    name: str  # core spelling, unit in the name; also our NPZ key and sidecar key
    help: str
    place: Place
    attrs: tuple[str, ...]  # HDF5 attribute names: all are written, the first present is read
    # stand-in when unknown; None: derived (see metadata.py). Detector pixels are derived from
    # far-field sampling and fall back to their default only without a detector distance.
    default: float | None = 0.0
    warn: bool = False  # defaulting stands in for unknown physics: warn and record it
    positive: bool = False
    aliases: tuple[str, ...] = ()  # other spellings accepted as keyword, sidecar key, CLI flag
    square: str | None = None  # one name that sets a width/height pair together
    flag: str | None = None  # the spelling shown in --help (default: the name)
    ptychodus: tuple[str, ...] = ()  # metadata field names in Ptychodus, newest first

    @property
    def spellings(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


QUANTITIES: tuple[Quantity, ...] = (
    Quantity(
        'detector_distance_m',
        'detector-object distance (m)',
        'root',
        ('detector_object_distance_m',),
        default=0.75,
        warn=True,
        aliases=('detector_object_distance_m',),
        ptychodus=('detector_distance_m',),
    ),
    Quantity(
        'photon_energy_eV',
        'photon energy (eV)',
        'root',
        ('photon_energy_eV', 'probe_energy_eV'),
        default=8000.0,
        warn=True,
        positive=True,
        aliases=('probe_energy_eV',),
        flag='probe_energy_eV',
        ptychodus=('photon_energy_eV', 'probe_energy_eV'),
    ),
    Quantity(
        'exposure_time_s',
        'exposure time per position (s)',
        'root',
        ('exposure_time_s',),
        ptychodus=('exposure_time_s',),
    ),
    Quantity(
        'probe_photon_count',
        'probe photon count',
        'root',
        ('probe_photon_count',),
        ptychodus=('probe_photon_count',),
    ),
    Quantity(
        'mass_attenuation_m2_per_kg',
        'mass attenuation (m^2/kg)',
        'root',
        ('mass_attenuation_m2_per_kg', 'mass_attenuation_m2_kg'),
        aliases=('mass_attenuation_m2_kg',),
        flag='mass_attenuation_m2_kg',
        ptychodus=('mass_attenuation_m2_per_kg', 'mass_attenuation_m2_kg'),
    ),
    Quantity(
        'tomography_angle_deg',
        'tomography angle (deg)',
        'root',
        ('tomography_angle_deg',),
        ptychodus=('tomography_angle_deg',),
    ),
    Quantity(
        'object_pixel_width_m',
        'object pixel width (m)',
        'object',
        ('pixel_width_m',),
        default=5e-8,
        warn=True,
        positive=True,
        square='object_pixel_size_m',
    ),
    Quantity(
        'object_pixel_height_m',
        'object pixel height (m)',
        'object',
        ('pixel_height_m',),
        default=5e-8,
        warn=True,
        positive=True,
        square='object_pixel_size_m',
    ),
    Quantity('object_center_x_m', 'object centre x (m, default 0)', 'object', ('center_x_m',)),
    Quantity('object_center_y_m', 'object centre y (m, default 0)', 'object', ('center_y_m',)),
    Quantity(
        'probe_pixel_width_m',
        'probe pixel width (m, default: the object pixel)',
        'probe',
        ('pixel_width_m',),
        default=None,
        positive=True,
        square='probe_pixel_size_m',
    ),
    Quantity(
        'probe_pixel_height_m',
        'probe pixel height (m, default: the object pixel)',
        'probe',
        ('pixel_height_m',),
        default=None,
        positive=True,
        square='probe_pixel_size_m',
    ),
    Quantity(
        'detector_pixel_width_m',
        'detector pixel width (m, default: derived)',
        'patterns',
        ('detector_pixel_width_m',),
        default=75e-6,
        warn=True,
        positive=True,
        square='detector_pixel_size_m',
    ),
    Quantity(
        'detector_pixel_height_m',
        'detector pixel height (m, default: derived)',
        'patterns',
        ('detector_pixel_height_m',),
        default=75e-6,
        warn=True,
        positive=True,
        square='detector_pixel_size_m',
    ),
)
BY_NAME: dict[str, Quantity] = {q.name: q for q in QUANTITIES}
#: Text fields that travel with the quantities (not physics, never defaulted with a warning).
TEXT_FIELDS = ('name', 'comments')


def in_place(place: Place) -> tuple[Quantity, ...]:
    return tuple(q for q in QUANTITIES if q.place == place)


def _spelling_targets() -> dict[str, tuple[str, ...]]:
    """Every accepted spelling -> the canonical names it sets."""
    targets: dict[str, tuple[str, ...]] = {}
    for q in QUANTITIES:
        for spelling in q.spellings:
            targets[spelling] = (q.name,)
        if q.square is not None:
            targets[q.square] = (*targets.get(q.square, ()), q.name)
    return targets


SPELLINGS: dict[str, tuple[str, ...]] = _spelling_targets()


def check_number(source: str, key: str, value: Any) -> float:
    """A finite real number, or a one-line error naming where it came from."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputError(source, f'{key} must be a finite number, got {value!r}')
    return float(value)


class ExportMeta:
    """What the user knows about the experiment; an unset quantity means "not given".

    Accepts every spelling of :data:`QUANTITIES` as a keyword: our names
    (``photon_energy_eV``), PtychoPINN's (``probe_energy_eV``,
    ``mass_attenuation_m2_kg``), and square sizes (``object_pixel_size_m``
    sets width and height). Each quantity is readable under any of its
    spellings too, so code written against PtychoPINN's ``ExportMeta`` works.
    Immutable; :meth:`overlay` combines two.
    """

    __slots__ = ('name', 'comments', '_values')

    name: str | None
    comments: str | None
    _values: dict[str, float]

    def __init__(self, name: str | None = None, comments: str | None = None, **quantities: Any) -> None:
        values: dict[str, float] = {}
        for key, value in _ordered(quantities):
            targets = SPELLINGS.get(key)
            if targets is None:
                known = ', '.join(sorted((*TEXT_FIELDS, *SPELLINGS)))
                raise TypeError(f'ExportMeta got an unknown keyword {key!r}; known: {known}')
            if value is None:
                continue
            for target in targets:
                values[target] = check_number('ExportMeta', key, value)
        for label, text in (('name', name), ('comments', comments)):
            if text is not None and not isinstance(text, str):
                raise InvalidInputError('ExportMeta', f'{label} must be a string')
        object.__setattr__(self, 'name', name)
        object.__setattr__(self, 'comments', comments)
        object.__setattr__(self, '_values', values)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError('ExportMeta is immutable; use overlay()')

    def __getattr__(self, key: str) -> float | None:
        targets = SPELLINGS.get(key)
        if targets is None:
            raise AttributeError(key)
        return self._values.get(targets[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExportMeta):
            return NotImplemented
        return (self.name, self.comments, self._values) == (other.name, other.comments, other._values)

    def __hash__(self) -> int:
        return hash((self.name, self.comments, tuple(sorted(self._values.items()))))

    def __repr__(self) -> str:
        given = [f'{k}={v!r}' for k, v in (('name', self.name), ('comments', self.comments)) if v is not None]
        given += [f'{k}={v!r}' for k, v in self._values.items()]
        return f'ExportMeta({", ".join(given)})'

    def __reduce__(self) -> tuple[Any, ...]:  # picklable for process pools
        return (_rebuild, (self.name, self.comments, dict(self._values)))

    def given(self) -> dict[str, float]:
        """The quantities that were given, by canonical name."""
        return dict(self._values)

    def overlay(self, other: ExportMeta) -> ExportMeta:
        """Values of ``other`` where given, else ours."""
        return ExportMeta(
            name=other.name if other.name is not None else self.name,
            comments=other.comments if other.comments is not None else self.comments,
            **{**self._values, **other._values},
        )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str = 'metadata') -> ExportMeta:
        """Build from a JSON-like mapping (any spelling); errors name ``source``."""
        quantities: dict[str, float] = {}
        texts: dict[str, str | None] = {}
        for key, value in values.items():
            if key in TEXT_FIELDS:
                if not isinstance(value, str):
                    raise InvalidInputError(source, f'{key} must be a string')
                texts[key] = value
            elif key in SPELLINGS:
                quantities[key] = check_number(source, key, value)
            else:
                near = difflib.get_close_matches(key, [*TEXT_FIELDS, *SPELLINGS], n=1, cutoff=0.6)
                hint = f' (did you mean {near[0]!r}?)' if near else ''
                raise InvalidInputError(source, f'unknown metadata key {key!r}{hint}')
        return cls(texts.get('name'), texts.get('comments'), **quantities)


def _rebuild(name: str | None, comments: str | None, values: dict[str, float]) -> ExportMeta:
    meta = ExportMeta(name, comments)
    object.__setattr__(meta, '_values', dict(values))
    return meta


def _ordered(values: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Square sizes first, so an explicit width/height refines them whatever the order given."""
    squares = [(k, v) for k, v in values.items() if len(SPELLINGS.get(k, ())) > 1]
    return iter([*squares, *((k, v) for k, v in values.items() if len(SPELLINGS.get(k, ())) <= 1)])


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON file holding an object, or a one-line error naming the file."""
    try:
        values = json.loads(Path(path).read_text(encoding='utf-8'))
    except OSError as exc:
        raise InvalidInputError(path, f'cannot read metadata file: {exc.strerror or exc}') from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(path, f'not valid JSON: {exc}') from exc
    if not isinstance(values, dict):
        raise InvalidInputError(path, 'metadata JSON must be an object')
    return values
