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
from enum import Enum
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from ..facts.errors import AmbiguousLayoutError, InvalidInputError
from ..facts.geometry import (
    DEFAULT_CONVENTION,
    PlacedObject,
    PositionConvention,
    PositionMapping,
    grid_sample_convention,
)
from ..facts.quantities import QUANTITIES
from ..facts.stack import (
    LAYOUT_RANK,
    DiffractionInfo,
    Domain,
    Layout,
    convert_domain,
    pattern_axes,
    probe_size_mismatch,
    whole_number_verdict,
)
from .patterns import PatternReader, Region
from .store import ArchiveStore, ArrayStore, read_coords, read_numeric, read_object, read_probe

logger = logging.getLogger(__name__)

DIFFRACTION_KEYS = ('diffraction', 'diff3d')
#: Keys this project adds so that a re-read is lossless. Since 0.3 they live in PtychoPINN's
#: ``_metadata`` JSON under OUR_METADATA_KEY (its tools index shape[0] of every top-level array);
#: 0.2.0 wrote them as top-level 0-d arrays, which are still read (and win when both exist).
DOMAIN_KEY = 'diffraction_domain'
NAME_KEY = 'product_name'
COMMENTS_KEY = 'product_comments'
CONVENTION_KEY = 'position_convention'
OUR_METADATA_KEY = 'ptychopinn_ptychodus'
#: Patterns sampled (at the start, middle and end of the stack) to decide a float stack's domain.
DOMAIN_SAMPLE_PATTERNS = 8
#: Keys that ``ptycho_torch/datagen/datagen.py`` (``simulate_multiple_experiments``) writes and no
#: other PtychoPINN writer does: its patches are cut with ``grid_sample(align_corners=True)``.
TORCH_DATAGEN_KEYS = ('probeName', 'label')
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
    #: Scan positions in the file before trailing ones without a pattern were dropped.
    source_positions: int | None = None
    #: An object from a reconstruction output, placed on this dataset's grid (convert/pairing.py).
    placed_object: PlacedObject | None = None
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

    def probe_mismatch(self) -> str | None:
        """Why the probe cannot illuminate these patterns (its size differs), or ``None``."""
        info = self.diffraction
        if self.probe is None or info is None:
            return None
        mismatch = probe_size_mismatch(self.probe.shape, (info.height, info.width), 'probeGuess')
        if mismatch is None:
            return None
        return (
            f'{mismatch} ({info.key}): Ptychodus needs a probe of the pattern size (was the file '
            "binned by PtychoPINN's downsample_data_tool, which bins the probe but not a 'diffraction' "
            'stack?); bin or resample one of them to match'
        )

    def require_matching_probe(self) -> None:
        """Refuse a probe that cannot illuminate the patterns (one line naming the file)."""
        problem = self.probe_mismatch()
        if problem is not None:
            raise InvalidInputError(self.path, problem)

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
    if options.load_guesses or options.require_probe:
        dataset.probe, dataset.probe_source_shape = read_probe(store, options.require_probe)
        dataset.object_guess = read_object(store)
    num = int(positions.x_px.shape[0]) if positions.present else None
    dataset.diffraction = _diffraction_info(dataset, num, options.domain, options.layout)
    dataset.convention, dataset.convention_reason = _decide_convention(dataset, options.position_convention)
    mismatch = dataset.probe_mismatch()
    if mismatch is not None:
        dataset.note(mismatch)
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
        if not any(key in store for key in ('probeGuess', 'diffraction', 'diff3d', 'objectGuess')):
            keys = ', '.join(sorted(store.members)) or 'none'
            raise fail(
                f'not a PtychoPINN layout (keys found: {keys}); a PtychoPINN dataset has '
                'xcoords/ycoords, probeGuess and diffraction (or diff3d)'
            )
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
        if dataset.source_positions is not None and scan_index.shape == (dataset.source_positions,):
            scan_index = scan_index[:num]  # its trailing positions were dropped with the coordinates
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


def our_metadata(dataset: PtychoPINNDataset) -> dict[str, Any]:
    """Our keys from ``_metadata[OUR_METADATA_KEY]`` (empty for files not written by us since 0.3)."""
    ours = (dataset.metadata or {}).get(OUR_METADATA_KEY)
    return ours if isinstance(ours, dict) else {}


def _our_text(dataset: PtychoPINNDataset, key: str) -> str | None:
    """One of our text keys: the 0.2.0 top-level array, else our ``_metadata`` namespace."""
    store = dataset.store
    if key in store and store.info(key).dtype.kind == 'U':
        return str(store.read(key).reshape(()))
    value = our_metadata(dataset).get(key)
    return value if isinstance(value, str) else None


def _read_stored_values(dataset: PtychoPINNDataset) -> None:
    store = dataset.store
    ours = our_metadata(dataset)
    for quantity in QUANTITIES:
        key = quantity.name
        if key not in store and key in ours:
            number = ours[key]
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not np.isfinite(number):
                raise InvalidInputError(store.path, f'_metadata {OUR_METADATA_KEY}.{key} must be one number')
            dataset.stored_values[key] = float(number)
        if key in store:
            value = read_numeric(store, key, kinds='iuf')
            if value.size != 1 or not np.isfinite(value).all():
                raise InvalidInputError(store.path, f'{key} must be one finite number')
            dataset.stored_values[key] = float(value.reshape(()))
    for key, attr in ((NAME_KEY, 'stored_name'), (COMMENTS_KEY, 'stored_comments')):
        text = _our_text(dataset, key)
        if text is not None:
            setattr(dataset, attr, text)


def _decide_convention(
    dataset: PtychoPINNDataset, explicit: PositionConvention | None
) -> tuple[PositionConvention, str]:
    """Explicit choice, then our own key, then the torch datagen's signature, then PtychoPINN's rule."""
    store = dataset.store
    if explicit is not None:
        return explicit, 'chosen explicitly'
    recorded = _recorded_choice(dataset, CONVENTION_KEY, PositionConvention)
    if recorded is not None:
        return recorded
    if all(key in store for key in TORCH_DATAGEN_KEYS) and 'xcoords_start' not in store:
        return _torch_datagen_convention(dataset)
    return DEFAULT_CONVENTION, 'PtychoPINN convention (default)'


def _torch_datagen_convention(dataset: PtychoPINNDataset) -> tuple[PositionConvention, str]:
    """The convention of a ``ptycho_torch`` datagen file (keys probeName + label), from its sizes."""
    obj, probe = dataset.object_guess, dataset.probe
    if obj is None:
        obj_shape = dataset.store.info('objectGuess').shape if 'objectGuess' in dataset.store else None
    else:
        obj_shape = obj.shape
    patch = probe.shape[-2:] if probe is not None else None
    if patch is None and dataset.diffraction is not None:
        patch = (dataset.diffraction.height, dataset.diffraction.width)
    if obj_shape is None or len(obj_shape) < 2 or patch is None:
        dataset.note(
            'looks like ptycho_torch datagen output (probeName, label) but without objectGuess the '
            'patch rule cannot be told; using the PtychoPINN convention (choose --position-convention)'
        )
        return DEFAULT_CONVENTION, 'PtychoPINN convention (default; datagen file without objectGuess)'
    found = grid_sample_convention((int(obj_shape[-2]), int(obj_shape[-1])), (int(patch[0]), int(patch[1])))
    if found is None:
        dataset.note(
            f'ptycho_torch datagen output with object {tuple(obj_shape[-2:])} and patches {tuple(patch)}: '
            'its patch rule matches neither convention on both axes; using the PtychoPINN convention '
            '(positions may be half a pixel off on one axis)'
        )
        return DEFAULT_CONVENTION, 'PtychoPINN convention (default; datagen rule has no exact match)'
    reason = (
        'ptycho_torch datagen file (keys probeName, label): patches cut with grid_sample '
        f'around (M-1)/2 of a {obj_shape[-2]}x{obj_shape[-1]} object'
    )
    dataset.note(f'position convention {found.value}: {reason}')
    return found, reason


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
    chosen = layout or _detect_layout(dataset, key, shape, num)
    if len(shape) != LAYOUT_RANK[chosen] or (chosen == Layout.NHW1 and shape[3] != 1):
        raise InvalidInputError(store.path, f'{key} has shape {shape}, which is not {chosen}')
    count, height, width = pattern_axes(chosen, shape)
    if num is not None and count < num:
        _drop_trailing_positions(dataset, count)
    elif num is not None and count != num:
        raise InvalidInputError(
            store.path,
            f'{key} holds {count} patterns but there are {num} scan positions '
            '(every pattern needs a position)',
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


def _drop_trailing_positions(dataset: PtychoPINNDataset, count: int) -> None:
    """More positions than patterns: keep the first ``count``, as PtychoPINN's torch loader does.

    ``ptycho_torch/dataloader.py`` (``_align_coords_to_diffraction``) drops the
    trailing coordinates with a warning; we do the same and record it.
    """
    positions = dataset.positions
    num = int(positions.x_px.shape[0])
    for name in ('x_px', 'y_px', 'x_actual', 'y_actual', 'x_start', 'y_start'):
        value = getattr(positions, name)
        if value is not None:
            setattr(positions, name, value[:count])
    dataset.source_positions = num
    dataset.note(
        f'{num} scan positions for {count} diffraction patterns: the trailing {num - count} positions '
        "were dropped (as PtychoPINN's torch data loader does)"
    )


def _detect_layout(dataset: PtychoPINNDataset, key: str, shape: tuple[int, ...], num: int | None) -> Layout:
    """The pattern axis: the one that matches the positions, else PtychoPINN's loaders' rule."""
    path = dataset.store.path
    if num is None:  # no positions to match: canonical order by convention
        return Layout.NHW1 if len(shape) == 4 else Layout.NHW
    if len(shape) == 4:
        if shape[3] == 1 and shape[0] <= num:
            return Layout.NHW1
        raise InvalidInputError(path, f'{key} has shape {shape}; only (M, N, N, 1) is understood in 4D')
    if len(shape) != 3:
        raise InvalidInputError(path, f'{key} must be 3-dimensional, got shape {shape}')
    axes = {layout: pattern_axes(layout, shape) for layout in (Layout.NHW, Layout.HWN, Layout.HNW)}
    matching = [layout for layout, (count, _, _) in axes.items() if count == num]
    if len(matching) == 1:
        if matching[0] == Layout.HNW:
            logger.info('%s: %s %s stored as (H, M, W)', path.name, key, shape)
        return matching[0]
    if Layout.NHW in matching:
        # PtychoPINN's loaders (ptycho_torch/dataloader.py _canonical_diffraction_layout, RawData)
        # take such a stack as (M, N, N); so do we, and say how to choose otherwise.
        dataset.note(
            f'{key} has shape {shape} and {num} positions: more than one axis matches; read as NHW '
            "(M, N, N) as PtychoPINN's loaders do (pass --layout HWN or layout='HWN' if it is not)"
        )
        return Layout.NHW
    if matching:
        raise AmbiguousLayoutError(
            path,
            f'{key} has shape {shape} and {num} positions: the pattern axis is ambiguous '
            '(choose the layout explicitly: --layout HWN or HNW)',
        )
    # No axis matches: more positions than patterns? PtychoPINN's loader takes the square axes.
    square = [
        layout
        for layout in (Layout.NHW, Layout.HWN)
        if axes[layout][1] == axes[layout][2] and axes[layout][0] < num
    ]
    if len(square) == 1:
        return square[0]
    raise InvalidInputError(
        path,
        f'{key} has shape {shape} but no axis matches the {num} scan positions '
        '(and the patterns are not told apart by being square; choose --layout)',
    )



_Choice = TypeVar('_Choice', bound=Enum)

def _recorded_choice(dataset: PtychoPINNDataset, key: str, kind: type[_Choice]) -> tuple[_Choice, str] | None:
    """A choice this package recorded in the file (``key``), or None; a value it cannot mean is refused."""
    value = _our_text(dataset, key)
    if value is None:
        return None
    try:
        return kind(value), f'recorded in the file ({key})'
    except ValueError:
        allowed = ', '.join(str(member.value) for member in kind)
        raise InvalidInputError(dataset.store.path, f'{key}={value!r} is not one of {allowed}') from None


def _decide_domain(
    dataset: PtychoPINNDataset, info: DiffractionInfo, explicit: Domain | None
) -> tuple[Domain, str]:
    """Explicit choice, then our own key, then the file's metadata, then dtype and key name."""
    if explicit is not None:
        return explicit, 'chosen explicitly'
    recorded = _recorded_choice(dataset, DOMAIN_KEY, Domain)
    if recorded is not None:
        return recorded
    measured = (dataset.metadata or {}).get('measurement_domain')
    if isinstance(measured, str):
        if 'intensity' in measured or 'count' in measured:
            return Domain.INTENSITY, f'file metadata measurement_domain={measured!r}'
        if 'amplitude' in measured:
            return Domain.AMPLITUDE, f'file metadata measurement_domain={measured!r}'
    if info.dtype.kind in 'iu':
        return Domain.INTENSITY, f'integer dtype {info.dtype} means photon counts'
    return _decide_float_domain(dataset, info)


def _domain_sample(dataset: PtychoPINNDataset, info: DiffractionInfo) -> list[np.ndarray]:
    """A few patterns from the start, middle and end of the stack (bounded memory).

    A deflated pattern-major member is sampled at its start only: reaching its end
    would inflate the whole stream once more just to decide.
    """
    reader = dataset.reader(info)
    total, size = info.num_patterns, min(DOMAIN_SAMPLE_PATTERNS, info.num_patterns)
    member = dataset.store.info(info.key)
    if member.compressed and not member.fortran_order and info.layout not in (Layout.HWN, Layout.HNW):
        return [reader.raw_block(0, size, None)]
    starts = sorted({0, max(0, total // 2 - size // 2), total - size})
    return [reader.raw_block(start, start + size, None) for start in starts]


def _decide_float_domain(dataset: PtychoPINNDataset, info: DiffractionInfo) -> tuple[Domain, str]:
    """A float stack: whole numbers above 1 are counts whatever the key; else the key's convention.

    PtychoPINN's ``transpose_rename_convert_tool.py`` casts uint16 counts to float32
    under ``diffraction`` without a square root, and its torch datagen writes
    Poisson counts as float32 ``diff3d``; amplitudes are never all whole numbers.
    """
    blocks = _domain_sample(dataset, info)
    verdicts = [whole_number_verdict(block) for block in blocks]
    places = 'start, middle and end' if len(blocks) > 1 else 'the start (deflated member)'
    where = f'sampled {min(DOMAIN_SAMPLE_PATTERNS, info.num_patterns)} patterns at {places}'
    if verdicts and all(v is not False for v in verdicts) and any(verdicts):
        reason = f'{info.key} holds non-negative whole numbers above 1 (photon counts; {where})'
        if info.key == 'diffraction':
            dataset.note(
                f"{info.key} ({info.dtype}) holds photon counts, not PtychoPINN's amplitudes: {where}, "
                'all whole numbers, some above 1 (as transpose_rename_convert_tool.py writes); taken as '
                'intensity (choose --diffraction-domain amplitude if they are amplitudes)'
            )
        return Domain.INTENSITY, reason
    convention = (
        'PtychoPINN convention: "diffraction" holds amplitudes'
        if info.key == 'diffraction'
        else 'diff3d holds non-integral floats (amplitudes)'
    )
    if any(verdicts) or all(v is None for v in verdicts):
        dataset.note(
            f'{info.key} ({info.dtype}) is ambiguous: {where}, whole numbers in some blocks only or '
            'none above 1; taken as amplitude (choose --diffraction-domain if that is wrong)'
        )
        return Domain.AMPLITUDE, f'{convention}; ambiguous sample'
    return Domain.AMPLITUDE, convention
