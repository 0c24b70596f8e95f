"""The PtychoPINN dataset: which keys mean what, in every flavour found in the wild.

Opening a dataset reads only the small arrays (positions, probe, object); the
diffraction stack stays in its source and is served block by block by a
:mod:`pattern_reader`. The same interpretation runs on an NPZ file and on
arrays already in memory (PtychoPINN's ``RawData``), so both give the same product.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..facts.errors import AmbiguousLayoutError, InvalidInputError
from ..facts.geometry import DEFAULT_CONVENTION, PositionConvention, PositionMapping
from ..facts.quantities import QUANTITIES
from ..facts.stack import DiffractionInfo, Domain, Layout, convert_domain
from .patterns import PatternReader, Region
from .store import ArchiveStore, ArrayStore, read_coords, read_numeric, read_object, read_probe

logger = logging.getLogger(__name__)

DIFFRACTION_KEYS = ('diffraction', 'diff3d')
#: Keys this project adds so that a re-read is lossless; PtychoPINN ignores them.
DOMAIN_KEY = 'diffraction_domain'
NAME_KEY = 'product_name'
COMMENTS_KEY = 'product_comments'
CONVENTION_KEY = 'position_convention'
PositionChoice = Literal['actual', 'nominal']
FloatArray = npt.NDArray[np.float64]


@dataclass
class Positions:
    """Scan positions in object pixels, with the actual and nominal sets as found."""

    x_px: FloatArray
    y_px: FloatArray
    present: bool
    x_actual: FloatArray | None = None
    y_actual: FloatArray | None = None
    x_start: FloatArray | None = None
    y_start: FloatArray | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class PtychoPINNDataset:
    """An open PtychoPINN dataset; call :meth:`close` (or use ``with``) when done."""

    path: Path
    store: ArrayStore
    positions: Positions
    position_choice: PositionChoice
    diffraction: DiffractionInfo | None = None
    probe: npt.NDArray[np.complexfloating[Any, Any]] | None = None
    probe_source_shape: tuple[int, ...] | None = None
    object_guess: npt.NDArray[np.complexfloating[Any, Any]] | None = None
    scan_index: npt.NDArray[np.integer[Any]] | None = None
    bad_pixels: npt.NDArray[np.bool_] | None = None
    metadata: dict[str, Any] | None = None
    stored_values: dict[str, float] = field(default_factory=dict)
    stored_name: str | None = None
    stored_comments: str | None = None
    notes: list[str] = field(default_factory=list)
    convention: PositionConvention = DEFAULT_CONVENTION
    convention_reason: str = 'PtychoPINN convention (default)'
    _reader: PatternReader | None = None

    def __enter__(self) -> PtychoPINNDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self.store.close()

    @property
    def x_px(self) -> FloatArray:
        return self.positions.x_px

    @property
    def y_px(self) -> FloatArray:
        return self.positions.y_px

    @property
    def num_positions(self) -> int:
        if not self.positions.present and self.diffraction is not None:
            return self.diffraction.num_patterns
        return int(self.x_px.shape[0])

    def mapping(self) -> PositionMapping:
        """How this file's coordinates become Ptychodus object pixels (probe size, convention)."""
        if self.probe is not None:
            height, width = self.probe.shape[-2:]
        elif self.diffraction is not None:
            height, width = self.diffraction.height, self.diffraction.width
        else:
            height = width = 1
        return PositionMapping(int(width), int(height), self.convention)

    def note(self, message: str) -> None:
        """Record a decision or a stand-in default: logged now, written to outputs later."""
        logger.warning('%s: %s', self.path.name, message)
        self.notes.append(message)

    def describe_convention(self) -> str:
        """The position convention in use and why (for ``--inspect`` and the layout tree)."""
        return f'{self.mapping().describe()} [{self.convention_reason}]'

    def require_stack(self) -> DiffractionInfo:
        """The diffraction stack, or the one-line error that there is none."""
        if self.diffraction is None:
            raise InvalidInputError(self.path, 'has no diffraction stack (diffraction or diff3d)')
        return self.diffraction

    def reader(self, info: DiffractionInfo | None = None) -> PatternReader:
        """The (cached) block reader of the stack; ``info`` before the domain is decided."""
        info = info or self.require_stack()
        if self._reader is None:
            self._reader = self.store.pattern_reader(info)
        return self._reader

    def iter_pattern_blocks(
        self,
        block_patterns: int,
        *,
        domain: Domain | None = None,
        region: Region | None = None,
        dtype: np.dtype[Any] | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Every pattern as (start, block) in NHW order, cropped, then put in ``domain``."""
        info = self.require_stack()
        reader = self.reader(info)
        target = domain or info.domain
        out_dtype = dtype or info.output_dtype(target)
        for start, raw in reader.iter_raw_blocks(block_patterns, region):
            yield start, convert_domain(raw, info.domain, target, out_dtype)


@dataclass(frozen=True)
class ReadOptions:
    """How to interpret a dataset; ``None`` means "decide and log why"."""

    domain: Domain | None = None
    positions: PositionChoice = 'actual'
    layout: Layout | None = None
    require_probe: bool = True
    require_diffraction: bool = False
    require_positions: bool = True
    load_guesses: bool = True
    position_convention: PositionConvention | None = None

    @classmethod
    def parse(
        cls,
        source: str | os.PathLike[str],
        *,
        domain: Domain | str | None = None,
        positions: str | None = None,
        layout: Layout | str | None = None,
        position_convention: PositionConvention | str | None = None,
        **flags: bool,
    ) -> ReadOptions:
        """Options from user-given strings (API keywords, a sidecar); a bad value names ``source``."""
        choices = {
            'domain': (domain, Domain),
            'layout': (layout, Layout),
            'position_convention': (position_convention, PositionConvention),
        }
        parsed: dict[str, Any] = {}
        for name, (value, kind) in choices.items():
            if value is not None and value not in kind.__members__.values():
                allowed = ', '.join(member.value for member in kind)
                raise InvalidInputError(source, f'{name}={value!r} is not one of {allowed}')
            parsed[name] = None if value is None else kind(value)
        if positions not in (None, 'actual', 'nominal'):
            raise InvalidInputError(source, f'positions={positions!r} is not one of actual, nominal')
        return cls(positions=positions or 'actual', **parsed, **flags)  # type: ignore[arg-type]


def open_dataset(
    path: str | os.PathLike[str],
    *,
    domain: Domain | str | None = None,
    positions: PositionChoice = 'actual',
    layout: Layout | str | None = None,
    require_probe: bool = True,
    require_diffraction: bool = False,
    require_positions: bool = True,
    load_guesses: bool = True,
    position_convention: PositionConvention | str | None = None,
) -> PtychoPINNDataset:
    """Open and validate a PtychoPINN NPZ, loading only the small arrays.

    Parameters
    ----------
    path: the ``.npz`` file.
    domain: what the stack holds (``'amplitude'``/``'intensity'``); ``None`` decides
        from the file's own keys, its metadata, the dtype and PtychoPINN's conventions.
    positions: ``'actual'`` (``xcoords``) or ``'nominal'`` (``xcoords_start``).
    layout: pattern axis (``'NHW'``, ``'HWN'``, ``'NHW1'``); ``None`` matches it to the positions.
    require_probe / require_diffraction: refuse a file without ``probeGuess`` / a stack.
    require_positions: ``False`` (diffraction-only reading) accepts an archive without
        scan positions; its stack is then taken as NHW unless a layout is given.
    load_guesses: ``False`` skips ``probeGuess``/``objectGuess`` (an object can be large).
    position_convention: ``'ptychopinn'`` (``xcoords`` is the pixel at patch index N//2,
        PtychoPINN's own rule) or ``'identity'`` (``xcoords`` already are Ptychodus object
        pixels, as Ptychodus's own exporter writes); ``None``: the file's
        ``position_convention`` key, else ``'ptychopinn'``.
    """
    options = ReadOptions.parse(
        path,
        domain=domain,
        positions=positions,
        layout=layout,
        position_convention=position_convention,
        require_probe=require_probe,
        require_diffraction=require_diffraction,
        require_positions=require_positions,
        load_guesses=load_guesses,
    )
    return interpret(ArchiveStore(path), options)


def interpret(store: ArrayStore, options: ReadOptions) -> PtychoPINNDataset:
    """Validate a store's arrays and decide what they mean; closes the store on failure."""
    try:
        return _interpret(store, options)
    except BaseException:
        store.close()
        raise


def _interpret(store: ArrayStore, options: ReadOptions) -> PtychoPINNDataset:
    positions = _read_positions(store, options)
    dataset = PtychoPINNDataset(
        path=store.path, store=store, positions=positions, position_choice=options.positions
    )
    for message in positions.notes:
        dataset.note(message)
    dataset.metadata = store.read_metadata('_metadata')
    _read_stored_values(dataset)
    dataset.convention, dataset.convention_reason = _decide_convention(store, options.position_convention)
    if options.load_guesses or options.require_probe:
        dataset.probe, dataset.probe_source_shape = read_probe(store, options.require_probe)
        dataset.object_guess = read_object(store)
    num = int(positions.x_px.shape[0]) if positions.present else None
    dataset.diffraction = _diffraction_info(dataset, num, options.domain, options.layout)
    if options.require_diffraction:
        dataset.require_stack()
    if not positions.present and dataset.diffraction is None:
        raise InvalidInputError(store.path, 'has neither scan positions nor a diffraction stack')
    _read_per_scan_arrays(dataset)
    return dataset


def _read_positions(store: ArrayStore, options: ReadOptions) -> Positions:
    found = {key: read_coords(store, key) for key in ('xcoords', 'ycoords', 'xcoords_start', 'ycoords_start')}
    x_actual, y_actual = found['xcoords'], found['ycoords']
    x_start, y_start = found['xcoords_start'], found['ycoords_start']

    def fail(problem: str) -> InvalidInputError:
        return InvalidInputError(store.path, problem)

    if (x_actual is None) != (y_actual is None) or (x_start is None) != (y_start is None):
        raise fail('has only one of xcoords/ycoords (or of xcoords_start/ycoords_start)')
    notes: list[str] = []
    if options.positions == 'nominal':
        if x_start is None or y_start is None:
            raise fail('nominal positions requested but xcoords_start/ycoords_start are missing')
        x_px, y_px = x_start, y_start
    elif x_actual is not None and y_actual is not None:
        x_px, y_px = x_actual, y_actual
    elif x_start is not None and y_start is not None:
        x_px, y_px = x_start, y_start
        notes.append('xcoords/ycoords missing; using the nominal xcoords_start/ycoords_start')
    elif options.require_positions:
        raise fail('missing required key xcoords/ycoords (scan positions)')
    else:
        x_px = y_px = np.zeros(0, dtype=np.float64)
    present = any(value is not None for value in found.values())
    num = int(x_px.shape[0])
    if num == 0 and present:
        raise fail('the scan is empty (xcoords has no positions)')
    for key, arr in found.items():
        if arr is not None and arr.shape[0] != num:
            raise fail(f'{key} has {arr.shape[0]} positions but the scan has {num}')
    return Positions(x_px, y_px, present, x_actual, y_actual, x_start, y_start, notes)


def _read_per_scan_arrays(dataset: PtychoPINNDataset) -> None:
    store, num, info = dataset.store, dataset.num_positions, dataset.diffraction
    if 'scan_index' in store:
        scan_index = read_numeric(store, 'scan_index', kinds='iu')
        if scan_index.shape != (num,):
            raise InvalidInputError(store.path, f'scan_index has shape {scan_index.shape}, expected ({num},)')
        dataset.scan_index = scan_index
    if 'bad_pixels' in store:
        bad = read_numeric(store, 'bad_pixels', kinds='biuf')
        if bad.ndim != 2 or (info is not None and bad.shape != (info.height, info.width)):
            raise InvalidInputError(
                store.path, f'bad_pixels has shape {bad.shape}, which does not match the patterns'
            )
        dataset.bad_pixels = bad.astype(bool)


def _read_stored_values(dataset: PtychoPINNDataset) -> None:
    store = dataset.store
    for quantity in QUANTITIES:
        key = quantity.name
        if key in store:
            value = read_numeric(store, key, kinds='iuf')
            if value.size != 1 or not np.isfinite(value).all():
                raise InvalidInputError(store.path, f'{key} must be one finite number')
            dataset.stored_values[key] = float(value.reshape(()))
    for key, attr in ((NAME_KEY, 'stored_name'), (COMMENTS_KEY, 'stored_comments')):
        if key in store and store.info(key).dtype.kind == 'U':
            setattr(dataset, attr, str(store.read(key).reshape(())))


def _decide_convention(
    store: ArrayStore, explicit: PositionConvention | None
) -> tuple[PositionConvention, str]:
    if explicit is not None:
        return explicit, 'chosen explicitly'
    if CONVENTION_KEY in store and store.info(CONVENTION_KEY).dtype.kind == 'U':
        value = str(store.read(CONVENTION_KEY).reshape(()))
        if value in PositionConvention.__members__.values():
            return PositionConvention(value), f'recorded in the file ({CONVENTION_KEY})'
        raise InvalidInputError(store.path, f'{CONVENTION_KEY}={value!r} is not one of ptychopinn, identity')
    return DEFAULT_CONVENTION, 'PtychoPINN convention (default)'


def _diffraction_info(
    dataset: PtychoPINNDataset, num: int | None, domain: Domain | None, layout: Layout | None
) -> DiffractionInfo | None:
    store = dataset.store
    present = [key for key in DIFFRACTION_KEYS if key in store]
    if not present:
        return None
    key = present[0]
    if len(present) > 1:
        dataset.note(f'both diffraction and diff3d present; using {key!r}')
    member = store.info(key)
    if member.is_object or member.dtype.kind not in 'iuf':
        raise InvalidInputError(
            store.path, f'{key} has dtype {member.dtype}; expected real numbers (amplitude or counts)'
        )
    shape = member.shape
    chosen = layout or _detect_layout(store.path, key, shape, num)
    expected = {Layout.NHW: 3, Layout.HWN: 3, Layout.NHW1: 4}[chosen]
    if len(shape) != expected or (chosen == Layout.NHW1 and shape[3] != 1):
        raise InvalidInputError(store.path, f'{key} has shape {shape}, which is not {chosen}')
    height, width, count = shape if chosen == Layout.HWN else (*shape[1:3], shape[0])
    if num is not None and count != num:
        raise InvalidInputError(
            store.path, f'{key} holds {count} patterns but there are {num} scan positions'
        )
    if height < 1 or width < 1:
        raise InvalidInputError(store.path, f'{key} has empty patterns {shape}')
    info = DiffractionInfo(
        key=key,
        layout=chosen,
        source_shape=shape,
        dtype=member.dtype,
        domain=Domain.AMPLITUDE,
        domain_reason='',
        num_patterns=count,
        height=height,
        width=width,
    )
    decided, reason = _decide_domain(dataset, info, domain)
    logger.info('%s: %s is %s (%s)', store.path.name, key, decided.value, reason)
    return replace(info, domain=decided, domain_reason=reason)


def _detect_layout(path: Path, key: str, shape: tuple[int, ...], num: int | None) -> Layout:
    if num is None:  # no positions to match: canonical order by convention
        return Layout.NHW1 if len(shape) == 4 else Layout.NHW
    if len(shape) == 4:
        if shape[0] == num and shape[3] == 1:
            return Layout.NHW1
        raise InvalidInputError(path, f'{key} has shape {shape}; only (M, N, N, 1) is understood in 4D')
    if len(shape) != 3:
        raise InvalidInputError(path, f'{key} must be 3-dimensional, got shape {shape}')
    first, last = shape[0] == num, shape[2] == num
    if first and last:
        raise AmbiguousLayoutError(
            path,
            f'{key} has shape {shape} and {num} positions: the pattern axis is ambiguous '
            '(choose the layout explicitly: NHW or HWN)',
        )
    if first:
        return Layout.NHW
    if last:
        return Layout.HWN
    raise InvalidInputError(path, f'{key} has shape {shape} but no axis matches the {num} scan positions')


def _decide_domain(
    dataset: PtychoPINNDataset, info: DiffractionInfo, explicit: Domain | None
) -> tuple[Domain, str]:
    """Explicit choice, then our own key, then the file's metadata, then dtype and key name."""
    if explicit is not None:
        return explicit, 'chosen explicitly'
    store = dataset.store
    if DOMAIN_KEY in store and store.info(DOMAIN_KEY).dtype.kind == 'U':
        value = str(store.read(DOMAIN_KEY).reshape(()))
        if value in Domain.__members__.values():
            return Domain(value), f'recorded in the file ({DOMAIN_KEY})'
    measured = (dataset.metadata or {}).get('measurement_domain')
    if isinstance(measured, str):
        if 'intensity' in measured or 'count' in measured:
            return Domain.INTENSITY, f'file metadata measurement_domain={measured!r}'
        if 'amplitude' in measured:
            return Domain.AMPLITUDE, f'file metadata measurement_domain={measured!r}'
    if info.dtype.kind in 'iu':
        return Domain.INTENSITY, f'integer dtype {info.dtype} means photon counts'
    if info.key == 'diffraction':
        return Domain.AMPLITUDE, 'PtychoPINN convention: "diffraction" holds amplitudes'
    sample = dataset.reader(info).raw_block(0, min(8, info.num_patterns), None)
    if sample.size and np.all(sample == np.rint(sample)) and float(sample.max()) > 1.0:
        return Domain.INTENSITY, 'diff3d holds integral values (photon counts)'
    return Domain.AMPLITUDE, 'diff3d holds non-integral floats (amplitudes)'
