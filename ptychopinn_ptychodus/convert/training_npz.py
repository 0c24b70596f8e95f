"""One PtychoPINN training NPZ from assembled data: patterns, probe, object, positions, metadata.

The keys are the ones PtychoPINN's loaders read (checked in its sources):
``ptycho/raw_data.py`` ``RawData.from_file`` reads ``diff3d`` (3-D, square
patterns), a 2-D ``probeGuess``, ``objectGuess``, ``xcoords``/``ycoords`` and
takes ``xcoords_start``/``ycoords_start``/``scan_index`` when present;
``ptycho/workflows/components.py`` ``load_data`` reads ``diff3d`` (else
``diffraction``) and requires ``xcoords_start``/``ycoords_start``. We write the
stack once, under ``diff3d``, and ``_metadata`` as PtychoPINN's
``ptycho/metadata.py`` does: a 0-d object array holding a JSON string.

Positions use the faithful mapping: the exact inverse of what our readers
apply (:class:`~ptychopinn_ptychodus.facts.geometry.PositionMapping`), so a
probe lands on the same object pixel in PtychoPINN as it did in Ptychodus.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._version import __version__
from ..facts.errors import InvalidInputError
from ..facts.geometry import ObjectGrid, PositionMapping
from ..facts.stack import Domain, convert_domain, probe_size_mismatch
from ..npz.archive import StreamedArray, metadata_array, write_npz
from ..safeio.atomic import atomic_output

logger = logging.getLogger(__name__)

#: The stack key both PtychoPINN loaders read (``RawData.from_file`` knows no other).
STACK_KEY = 'diff3d'
#: Where the full probe stack goes when ``keep_probe_modes`` is asked for.
PROBE_MODES_KEY = 'probe_modes'
#: PtychoPINN's ``_metadata`` value for count stacks (``ptycho/metadata.py`` conventions).
COUNT_DOMAIN = 'count_intensity'


@dataclass
class TrainingData:
    """Everything one training file holds, in Ptychodus's units (metres, intensities).

    ``probe`` may be 2-D (N, N), 3-D (modes, N, N) or 4-D (OPR, modes, N, N);
    the first mode of the first OPR component becomes ``probeGuess``.
    ``position_x_m``/``position_y_m`` are probe centres in the core convention
    (object pixel ``j`` at ``centre + pixel * (j - (W - 1) / 2)``).
    """

    intensity_blocks: Iterable[np.ndarray]
    pattern_shape: tuple[int, int, int]
    probe: npt.NDArray[Any]
    object: npt.NDArray[Any]
    grid: ObjectGrid
    position_x_m: npt.NDArray[np.float64]
    position_y_m: npt.NDArray[np.float64]
    bad_pixels: npt.NDArray[np.bool_] | None = None
    physics: dict[str, float | None] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingReport:
    """What was written and every assumption made (also recorded in ``_metadata``)."""

    path: Path
    patterns: int
    pattern_px: tuple[int, int]
    domain: str
    notes: tuple[str, ...]


def training_coordinates(
    grid: ObjectGrid, x_m: npt.ArrayLike, y_m: npt.ArrayLike, probe_hw: tuple[int, int]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Probe centres in metres -> PtychoPINN ``xcoords``/``ycoords`` (inverse of our readers)."""
    x_px, y_px = grid.metres_to_pixels(x_m, y_m)
    mapping = PositionMapping(probe_width_px=probe_hw[1], probe_height_px=probe_hw[0])
    return mapping.to_file_coordinates(x_px, y_px)


def _probe_guess(probe: np.ndarray, keep_modes: bool, notes: list[str]) -> dict[str, np.ndarray]:
    """A 2-D ``probeGuess`` (PtychoPINN's ``RawData`` asserts rank 2), modes kept apart on request."""
    array = np.asarray(probe)
    if array.ndim < 2:
        raise InvalidInputError(None, f'probe must be at least 2-D, got shape {array.shape}')
    stack = array.reshape((-1, *array.shape[-2:]))
    out = {'probeGuess': np.ascontiguousarray(stack[0])}
    if stack.shape[0] > 1:
        notes.append(
            f'probe has {stack.shape[0]} modes (shape {array.shape}); probeGuess is the first mode'
            + (f', all modes under {PROBE_MODES_KEY!r}' if keep_modes else '')
        )
        if keep_modes:
            out[PROBE_MODES_KEY] = np.ascontiguousarray(stack)
    return out


def _object_guess(obj: np.ndarray, notes: list[str]) -> np.ndarray:
    array = np.asarray(obj)
    if array.ndim == 3:
        if array.shape[0] > 1:
            notes.append(f'object has {array.shape[0]} layers; objectGuess is layer 0')
        array = array[0]
    if array.ndim != 2 or 0 in array.shape:
        raise InvalidInputError(None, f'object must be a non-empty 2-D array, got shape {np.shape(obj)}')
    return np.ascontiguousarray(array)


def _stream(
    blocks: Iterable[np.ndarray],
    domain: Domain,
    dtype: np.dtype[Any],
    progress: Callable[[int], None] | None,
) -> Iterator[tuple[int, np.ndarray]]:
    start = 0
    for block in blocks:
        array = np.asarray(block)
        yield start, convert_domain(array, Domain.INTENSITY, domain, dtype)
        start += array.shape[0]
        if progress is not None:
            progress(array.shape[0])


def write_training_npz(
    path: str | Path,
    data: TrainingData,
    *,
    counts: bool = False,
    keep_probe_modes: bool = False,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> TrainingReport:
    """Write one PtychoPINN training NPZ, streaming the patterns block by block, atomically.

    Parameters
    ----------
    path: destination ``.npz`` (published only when complete).
    data: patterns (intensity blocks in pattern order), probe, object, grid, positions, physics.
    counts: store intensities (photon counts) instead of amplitudes; declared in ``_metadata``
        as ``measurement_domain = 'count_intensity'``.
    keep_probe_modes: also store every probe mode under ``probe_modes``.
    overwrite: replace an existing file.
    progress: called with the number of patterns after each block.
    """
    dest = Path(path)
    notes: list[str] = []
    count, height, width = data.pattern_shape
    if height != width:
        raise InvalidInputError(dest, f'PtychoPINN needs square patterns, got {height}x{width}')
    if len(data.position_x_m) != count or len(data.position_y_m) != count:
        raise InvalidInputError(
            dest, f'{count} patterns but {len(data.position_x_m)} positions; they must pair one to one'
        )
    arrays: dict[str, np.ndarray | StreamedArray] = {}
    probes = _probe_guess(data.probe, keep_probe_modes, notes)
    probe_hw = (int(probes['probeGuess'].shape[0]), int(probes['probeGuess'].shape[1]))
    mismatch = probe_size_mismatch(probe_hw, (height, width))
    if mismatch is not None:
        # such a file loads (RawData does not check) and then fails, or trains wrong, later
        raise InvalidInputError(
            dest,
            f'{mismatch}; PtychoPINN needs probeGuess at the pattern size: use a product '
            'reconstructed at this crop (or no --crop)',
        )
    obj = _object_guess(data.object, notes)
    if obj.shape != (data.grid.height_px, data.grid.width_px):
        raise InvalidInputError(dest, f'object shape {obj.shape} does not match its grid')
    xcoords, ycoords = training_coordinates(data.grid, data.position_x_m, data.position_y_m, probe_hw)
    domain = Domain.INTENSITY if counts else Domain.AMPLITUDE
    dtype = np.dtype(np.float32)
    arrays[STACK_KEY] = StreamedArray(
        shape=(count, height, width),
        dtype=dtype,
        blocks=_stream(data.intensity_blocks, domain, dtype, progress),
    )
    arrays.update(probes)
    arrays['objectGuess'] = obj
    arrays['xcoords'] = xcoords
    arrays['ycoords'] = ycoords
    arrays['xcoords_start'] = xcoords.copy()
    arrays['ycoords_start'] = ycoords.copy()
    arrays['scan_index'] = np.zeros(count, dtype=np.int64)  # one scan, one object (not a point index)
    if data.bad_pixels is not None:
        bad = np.asarray(data.bad_pixels, dtype=bool)
        if bad.shape != (height, width):
            raise InvalidInputError(dest, f'bad pixels {bad.shape} do not match patterns {(height, width)}')
        arrays['bad_pixels'] = bad
        if bad.any():
            notes.append(f'{int(bad.sum())} bad pixels kept as measured (mask under bad_pixels)')
    metadata = {
        'measurement_domain': COUNT_DOMAIN if counts else 'amplitude',
        'diffraction_key': STACK_KEY,
        'position_convention': 'ptychopinn (xcoords = Ptychodus object pixel + N//2 - (N-1)/2)',
        'physics': {k: v for k, v in data.physics.items() if v is not None},
        'object_pixel_size_m': [data.grid.pixel_height_m, data.grid.pixel_width_m],
        'object_center_m': [data.grid.center_y_m, data.grid.center_x_m],
        'provenance': {**data.provenance, 'ptychopinn_ptychodus_version': __version__},
        'notes': notes,
    }
    for note in notes:
        logger.warning('%s: %s', dest.name, note)
    with atomic_output(dest, overwrite=overwrite) as tmp:
        arrays['_metadata'] = metadata_array(json.dumps(metadata, indent=2, default=_plain))
        write_npz(tmp, arrays)
    return TrainingReport(dest, count, (height, width), str(metadata['measurement_domain']), tuple(notes))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f'not JSON: {type(value).__name__}')


def blocks_of(array: np.ndarray, rows: int = 256) -> Iterator[np.ndarray]:
    """Consecutive blocks of the leading axis (views: no copy)."""
    for start in range(0, array.shape[0], rows):
        yield array[start : start + rows]


def physics_from(values: Mapping[str, float | None]) -> dict[str, float | None]:
    """Only finite, known values (``None``/NaN dropped)."""
    return {k: float(v) for k, v in values.items() if v is not None and np.isfinite(v)}
