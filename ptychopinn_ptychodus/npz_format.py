"""The PtychoPINN NPZ dataset: which keys mean what, in every flavour found in the wild.

Opening a dataset reads only the small arrays (positions, probe, object); the
diffraction stack stays in the file and is served block by block in canonical
NHW order, cropped and converted between amplitude and intensity on the way.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt

from .errors import AmbiguousLayoutError, InvalidInputError
from .npz_archive import CORRUPT_ERRORS, NpzArchive, read_into

logger = logging.getLogger(__name__)

DIFFRACTION_KEYS = ('diffraction', 'diff3d')
#: Keys this project writes so that a re-read is lossless; PtychoPINN ignores them.
GEOMETRY_KEYS = (
    'object_pixel_width_m',
    'object_pixel_height_m',
    'object_center_x_m',
    'object_center_y_m',
    'probe_pixel_width_m',
    'probe_pixel_height_m',
    'photon_energy_eV',
    'detector_distance_m',
    'detector_pixel_width_m',
    'detector_pixel_height_m',
    'exposure_time_s',
    'probe_photon_count',
    'mass_attenuation_m2_per_kg',
    'tomography_angle_deg',
)
DOMAIN_KEY = 'diffraction_domain'
NAME_KEY = 'product_name'
COMMENTS_KEY = 'product_comments'
PositionChoice = Literal['actual', 'nominal']
SPOOL_CHUNK_BYTES = 8 << 20


class Domain(StrEnum):
    """What the numbers of a diffraction stack are."""

    AMPLITUDE = 'amplitude'
    INTENSITY = 'intensity'


class Layout(StrEnum):
    """How the pattern axis is stored."""

    NHW = 'NHW'
    HWN = 'HWN'
    NHW1 = 'NHW1'


@dataclass(frozen=True)
class DiffractionInfo:
    key: str
    layout: Layout
    source_shape: tuple[int, ...]
    dtype: np.dtype[Any]
    domain: Domain
    domain_reason: str
    num_patterns: int
    height: int
    width: int

    @property
    def nhw_shape(self) -> tuple[int, int, int]:
        return self.num_patterns, self.height, self.width

    def output_dtype(self, domain: Domain) -> np.dtype[Any]:
        """Dtype of patterns delivered in ``domain`` (integers stay exact)."""
        if domain == self.domain and self.dtype.kind in 'iuf':
            return self.dtype
        return np.dtype(np.float64 if self.dtype == np.float64 else np.float32)


@dataclass
class PtychoPINNDataset:
    """An open PtychoPINN NPZ; call :meth:`close` (or use ``with``) when done."""

    path: Path
    archive: NpzArchive
    x_px: npt.NDArray[np.float64]
    y_px: npt.NDArray[np.float64]
    positions: PositionChoice
    diffraction: DiffractionInfo | None = None
    probe: npt.NDArray[np.complexfloating[Any, Any]] | None = None
    probe_source_shape: tuple[int, ...] | None = None
    object_guess: npt.NDArray[np.complexfloating[Any, Any]] | None = None
    xcoords_start: npt.NDArray[np.float64] | None = None
    ycoords_start: npt.NDArray[np.float64] | None = None
    xcoords_actual: npt.NDArray[np.float64] | None = None
    ycoords_actual: npt.NDArray[np.float64] | None = None
    scan_index: npt.NDArray[np.integer[Any]] | None = None
    bad_pixels: npt.NDArray[np.bool_] | None = None
    metadata: dict[str, Any] | None = None
    stored_values: dict[str, float] = field(default_factory=dict)
    stored_name: str | None = None
    stored_comments: str | None = None
    notes: list[str] = field(default_factory=list)
    _spool: IO[bytes] | None = None
    _direct: IO[bytes] | None = None
    _stream: IO[bytes] | None = None
    _stream_row: int = 0

    def __enter__(self) -> PtychoPINNDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for handle in (self._stream, self._spool, self._direct):
            if handle is not None:
                handle.close()
        self._stream = self._spool = self._direct = None
        self.archive.close()

    has_positions: bool = True

    @property
    def num_positions(self) -> int:
        if not self.has_positions and self.diffraction is not None:
            return self.diffraction.num_patterns
        return int(self.x_px.shape[0])

    def note(self, message: str) -> None:
        """Record a decision or a stand-in default: logged now, written to outputs later."""
        logger.warning('%s: %s', self.path.name, message)
        self.notes.append(message)

    # -- diffraction access ---------------------------------------------------
    def _require_diffraction(self) -> DiffractionInfo:
        if self.diffraction is None:
            raise InvalidInputError(self.path, 'has no diffraction stack (diffraction or diff3d)')
        return self.diffraction

    def read_patterns(
        self,
        start: int,
        stop: int,
        *,
        domain: Domain | None = None,
        region: tuple[slice, slice] | None = None,
        dtype: np.dtype[Any] | None = None,
    ) -> np.ndarray:
        """Patterns ``start:stop`` as (n, H, W), cropped, then put in ``domain``."""
        info = self._require_diffraction()
        raw = self._raw_block(info, start, stop, region)
        return convert_domain(raw, info, domain or info.domain, dtype)

    def iter_pattern_blocks(
        self,
        block_patterns: int,
        *,
        domain: Domain | None = None,
        region: tuple[slice, slice] | None = None,
        dtype: np.dtype[Any] | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Every pattern, block by block; a full pass also checks the zip CRC-32.

        Positioned reads of stored members bypass zipfile's own CRC check, so a
        complete pass (no crop) verifies it here: incrementally for
        pattern-major stacks, with one extra sequential read otherwise. The
        check fails after the last block, before any output is published.
        """
        info = self._require_diffraction()
        member = self.archive.info(info.key)
        verify = region is None and not member.compressed
        incremental = verify and info.layout != Layout.HWN and not member.fortran_order
        crc = self.archive.header_crc(info.key) if incremental else 0
        for start in range(0, info.num_patterns, block_patterns):
            stop = min(start + block_patterns, info.num_patterns)
            raw = self._raw_block(info, start, stop, region)
            if incremental:
                crc = zlib.crc32(raw.data, crc)
            yield start, convert_domain(raw, info, domain or info.domain, dtype)
        if incremental and crc != member.crc:
            raise InvalidInputError(self.path, f'{info.key} fails its CRC-32 check (corrupt data)')
        if verify and not incremental:
            self.archive.verify_crc(info.key)

    def _raw_block(
        self, info: DiffractionInfo, start: int, stop: int, region: tuple[slice, slice] | None
    ) -> np.ndarray:
        """Source-dtype patterns ``start:stop`` in NHW, cropped, in bounded memory.

        Stored members are read with positioned reads straight into the block
        (HWN: one read per detector pixel inside the crop), so neither the file
        nor the uncropped stack ever becomes resident. Deflated pattern-major
        stacks are inflated sequentially; deflated HWN (or Fortran-ordered)
        stacks are first spooled to a temporary file, since a block of patterns
        is spread over the whole compressed stream.
        """
        rows, cols = region if region is not None else (slice(None), slice(None))
        member = self.archive.info(info.key)
        pattern_major = info.layout != Layout.HWN
        if member.compressed and pattern_major and not member.fortran_order:
            block = self._streamed_rows(info, start, stop)
        elif member.fortran_order:
            return self._fortran_block(info, start, stop, rows, cols)
        else:
            handle, base = self._random_access(info)
            if not pattern_major:
                return _gather_hwn(handle, base, member.shape, member.dtype, start, stop, rows, cols)
            block = np.empty((stop - start, *member.shape[1:]), dtype=member.dtype)
            row_bytes = block[0].nbytes if block.shape[0] else 0
            _pread_into(handle, base + start * row_bytes, block)
        cropped = block[:, rows, cols, 0] if info.layout == Layout.NHW1 else block[:, rows, cols]
        return np.ascontiguousarray(cropped)

    def _random_access(self, info: DiffractionInfo) -> tuple[IO[bytes], int]:
        """A file and offset where the member's raw array bytes can be read directly."""
        offset = self.archive.data_offset(info.key)
        if offset is not None:
            if self._direct is None:
                self._direct = open(self.path, 'rb')  # closed in close()
            return self._direct, offset
        if self._spool is None:
            member = self.archive.info(info.key)
            logger.info('%s: spooling deflated %r (%.2f GiB) to a temporary file',
                        self.path.name, info.key, member.nbytes / 2**30)
            self._spool = tempfile.TemporaryFile(prefix='ptychopinn-spool-')
            with self.archive.open_data(info.key) as stream:
                shutil.copyfileobj(stream, self._spool, SPOOL_CHUNK_BYTES)
            self._spool.flush()
        return self._spool, 0

    def _fortran_block(
        self, info: DiffractionInfo, start: int, stop: int, rows: slice, cols: slice
    ) -> np.ndarray:
        member = self.archive.info(info.key)
        handle, base = self._random_access(info)
        source = np.memmap(handle, dtype=member.dtype, mode='r', offset=base, shape=member.shape, order='F')
        if info.layout == Layout.HWN:
            view = np.moveaxis(source[rows, cols, start:stop], -1, 0)
        elif info.layout == Layout.NHW1:
            view = source[start:stop, rows, cols, 0]
        else:
            view = source[start:stop, rows, cols]
        block = np.array(view, order='C')
        del view, source
        return block

    def _streamed_rows(self, info: DiffractionInfo, start: int, stop: int) -> np.ndarray:
        member = self.archive.info(info.key)
        row_shape = member.shape[1:]
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * member.dtype.itemsize
        if self._stream is None or start < self._stream_row:
            if self._stream is not None:
                self._stream.close()
            self._stream = self.archive.open_data(info.key)
            self._stream_row = 0
        skip = (start - self._stream_row) * row_bytes
        while skip > 0:
            got = len(self._stream.read(min(skip, SPOOL_CHUNK_BYTES)))
            if not got:
                raise InvalidInputError(self.path, f'{info.key} ends early (corrupt archive?)')
            skip -= got
        out = np.empty((stop - start, *row_shape), dtype=member.dtype)
        try:
            read_into(self._stream, out)
        except CORRUPT_ERRORS as exc:
            problem = f'{info.key} cannot be read (corrupt archive?): {exc}'
            raise InvalidInputError(self.path, problem) from exc
        self._stream_row = stop
        return out


def _pread_into(handle: IO[bytes], offset: int, out: np.ndarray) -> None:
    view = memoryview(out.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    filled = 0
    while filled < len(view):
        got = os.preadv(handle.fileno(), [view[filled:]], offset + filled)
        if got <= 0:
            raise EOFError(f'file ends after {offset + filled} bytes')
        filled += got


def _gather_hwn(
    handle: IO[bytes],
    base: int,
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    start: int,
    stop: int,
    rows: slice,
    cols: slice,
) -> np.ndarray:
    """Patterns ``start:stop`` of a C-ordered (H, W, M) stack, reading only cropped pixels."""
    height, width, total = shape
    ys = range(height)[rows]
    xs = range(width)[cols]
    count = stop - start
    buffer = np.empty((len(ys), len(xs), count), dtype=dtype)
    flat = memoryview(buffer.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    run = count * dtype.itemsize
    fd = handle.fileno()
    position = 0
    for y in ys:
        for x in xs:
            offset = base + ((y * width + x) * total + start) * dtype.itemsize
            filled = 0
            while filled < run:
                got = os.preadv(fd, [flat[position + filled : position + run]], offset + filled)
                if got <= 0:
                    raise EOFError(f'file ends inside pixel ({y}, {x})')
                filled += got
            position += run
    return np.ascontiguousarray(np.moveaxis(buffer, -1, 0))


def convert_domain(
    raw: np.ndarray, info: DiffractionInfo, domain: Domain, dtype: np.dtype[Any] | None = None
) -> np.ndarray:
    """Square amplitudes or root intensities (computed in ``dtype`` when given)."""
    if domain == info.domain:
        return raw if dtype is None else raw.astype(dtype, copy=False)
    out_dtype = dtype or info.output_dtype(domain)
    values = raw.astype(out_dtype, copy=True)
    if domain == Domain.INTENSITY:
        np.square(values, out=values)
    else:
        np.maximum(values, 0, out=values)
        np.sqrt(values, out=values)
    return values


# ---------------------------------------------------------------------------
# opening and validation
# ---------------------------------------------------------------------------


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
) -> PtychoPINNDataset:
    """Open and validate a PtychoPINN NPZ, loading only the small arrays.

    ``load_guesses=False`` skips ``probeGuess``/``objectGuess`` (diffraction-only
    readers do not need them, and an object can be large).

    ``require_positions=False`` (diffraction-only reading) accepts an archive
    without scan positions; its stack is then taken as canonical NHW unless a
    layout is given, since there is nothing to match the pattern axis against.
    """
    archive = NpzArchive(path)
    try:
        return _interpret(
            archive,
            domain=Domain(domain) if domain is not None else None,
            positions=positions,
            layout=Layout(layout) if layout is not None else None,
            require_probe=require_probe,
            require_diffraction=require_diffraction,
            require_positions=require_positions,
            load_guesses=load_guesses,
        )
    except BaseException:
        archive.close()
        raise


def _interpret(
    archive: NpzArchive,
    *,
    domain: Domain | None,
    positions: PositionChoice,
    layout: Layout | None,
    require_probe: bool,
    require_diffraction: bool,
    require_positions: bool = True,
    load_guesses: bool = True,
) -> PtychoPINNDataset:
    path = archive.path

    def fail(problem: str) -> InvalidInputError:
        return InvalidInputError(path, problem)

    x_actual = _read_coords(archive, 'xcoords')
    y_actual = _read_coords(archive, 'ycoords')
    x_start = _read_coords(archive, 'xcoords_start')
    y_start = _read_coords(archive, 'ycoords_start')
    notes: list[str] = []
    if (x_actual is None) != (y_actual is None) or (x_start is None) != (y_start is None):
        raise fail('has only one of xcoords/ycoords (or of xcoords_start/ycoords_start)')
    if positions == 'nominal':
        if x_start is None or y_start is None:
            raise fail('nominal positions requested but xcoords_start/ycoords_start are missing')
        x_px, y_px = x_start, y_start
    elif x_actual is not None and y_actual is not None:
        x_px, y_px = x_actual, y_actual
    elif x_start is not None and y_start is not None:
        x_px, y_px = x_start, y_start
        notes.append('xcoords/ycoords missing; using the nominal xcoords_start/ycoords_start')
    elif require_positions:
        raise fail('missing required key xcoords/ycoords (scan positions)')
    else:
        x_px = y_px = np.zeros(0, dtype=np.float64)
    has_positions = x_px.shape[0] > 0 or x_actual is not None or x_start is not None
    num = int(x_px.shape[0])
    if num == 0 and has_positions:
        raise fail('the scan is empty (xcoords has no positions)')
    for key, arr in (
        ('xcoords', x_actual), ('ycoords', y_actual),
        ('xcoords_start', x_start), ('ycoords_start', y_start),
    ):
        if arr is not None and arr.shape[0] != num:
            raise fail(f'{key} has {arr.shape[0]} positions but the scan has {num}')

    dataset = PtychoPINNDataset(
        path=path,
        archive=archive,
        x_px=x_px,
        y_px=y_px,
        positions=positions,
        xcoords_start=x_start,
        ycoords_start=y_start,
        xcoords_actual=x_actual,
        ycoords_actual=y_actual,
        has_positions=has_positions,
    )
    for message in notes:
        dataset.note(message)

    dataset.metadata = archive.read_metadata('_metadata')
    _read_stored_values(dataset)
    if load_guesses or require_probe:
        dataset.probe, dataset.probe_source_shape = _read_probe(archive, require_probe)
        dataset.object_guess = _read_object(archive)
    dataset.diffraction = _diffraction_info(dataset, num if has_positions else None, domain, layout)
    if require_diffraction and dataset.diffraction is None:
        raise fail('has no diffraction stack (diffraction or diff3d)')
    if not has_positions and dataset.diffraction is None:
        raise fail('has neither scan positions nor a diffraction stack')
    num = dataset.num_positions

    if 'scan_index' in archive:
        scan_index = _read_numeric(archive, 'scan_index', kinds='iu')
        if scan_index.shape != (num,):
            raise fail(f'scan_index has shape {scan_index.shape}, expected ({num},)')
        dataset.scan_index = scan_index
    if 'bad_pixels' in archive:
        bad = _read_numeric(archive, 'bad_pixels', kinds='biuf')
        info = dataset.diffraction
        if bad.ndim != 2 or (info is not None and bad.shape != (info.height, info.width)):
            raise fail(f'bad_pixels has shape {bad.shape}, which does not match the patterns')
        dataset.bad_pixels = bad.astype(bool)
    return dataset


def _read_numeric(archive: NpzArchive, key: str, *, kinds: str) -> np.ndarray:
    info = archive.info(key)
    if info.is_object or info.dtype.kind not in kinds:
        raise InvalidInputError(
            archive.path, f'{key} has dtype {info.dtype}, expected a numeric array'
        )
    return archive.read(key)


def _read_coords(archive: NpzArchive, key: str) -> npt.NDArray[np.float64] | None:
    if key not in archive:
        return None
    arr = _read_numeric(archive, key, kinds='iuf')
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise InvalidInputError(archive.path, f'{key} must be one-dimensional, got shape {arr.shape}')
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InvalidInputError(
            archive.path, f'{key} has {int(bad.sum())} non-finite values (first at {int(np.argmax(bad))})'
        )
    return arr


def _read_complex(archive: NpzArchive, key: str) -> np.ndarray:
    arr = _read_numeric(archive, key, kinds='iufc')
    if arr.dtype.kind != 'c':
        arr = arr.astype(np.complex64 if arr.dtype.itemsize <= 4 else np.complex128)
    if not np.isfinite(arr).all():
        raise InvalidInputError(archive.path, f'{key} contains non-finite values')
    return arr


def _read_probe(archive: NpzArchive, required: bool) -> tuple[np.ndarray | None, tuple[int, ...] | None]:
    if 'probeGuess' not in archive:
        if required:
            raise InvalidInputError(archive.path, 'missing required key probeGuess')
        return None, None
    probe = _read_complex(archive, 'probeGuess')
    shape = probe.shape
    if probe.ndim == 3 and shape[2] == 1 and shape[0] == shape[1] and shape[0] > 1:
        probe = probe[:, :, 0]  # (N, N, 1): one mode stored channels-last
    elif probe.ndim == 4 and shape[0] == 1:
        probe = probe[0]  # Ptychodus-style (1, modes, N, N)
    if probe.ndim not in (2, 3) or min(probe.shape) < 1:
        raise InvalidInputError(
            archive.path, f'probeGuess has shape {shape}; expected (N, N), (modes, N, N) or (N, N, 1)'
        )
    return probe, shape


def _read_object(archive: NpzArchive) -> np.ndarray | None:
    if 'objectGuess' not in archive:
        return None
    obj = _read_complex(archive, 'objectGuess')
    if obj.ndim == 3 and obj.shape[0] == 1:
        obj = obj[0]
    elif obj.ndim == 3 and obj.shape[2] == 1:
        obj = obj[:, :, 0]
    if obj.ndim != 2 or min(obj.shape) < 1:
        raise InvalidInputError(archive.path, f'objectGuess has shape {obj.shape}; expected (H, W)')
    return obj


def _read_stored_values(dataset: PtychoPINNDataset) -> None:
    archive = dataset.archive
    for key in GEOMETRY_KEYS:
        if key in archive:
            value = _read_numeric(archive, key, kinds='iuf')
            if value.size != 1 or not np.isfinite(value).all():
                raise InvalidInputError(archive.path, f'{key} must be one finite number')
            dataset.stored_values[key] = float(value.reshape(()))
    for key, attr in ((NAME_KEY, 'stored_name'), (COMMENTS_KEY, 'stored_comments')):
        if key in archive and archive.info(key).dtype.kind == 'U':
            setattr(dataset, attr, str(archive.read(key).reshape(())))


def _diffraction_info(
    dataset: PtychoPINNDataset, num: int | None, domain: Domain | None, layout: Layout | None
) -> DiffractionInfo | None:
    archive = dataset.archive
    present = [key for key in DIFFRACTION_KEYS if key in archive]
    if not present:
        return None
    key = present[0]
    if len(present) > 1:
        dataset.note(f'both diffraction and diff3d present; using {key!r}')
    member = archive.info(key)
    if member.is_object or member.dtype.kind not in 'iuf':
        raise InvalidInputError(
            archive.path, f'{key} has dtype {member.dtype}; expected real numbers (amplitude or counts)'
        )
    shape = member.shape
    chosen = layout or _detect_layout(archive.path, key, shape, num)
    expected = {Layout.NHW: 3, Layout.HWN: 3, Layout.NHW1: 4}[chosen]
    if len(shape) != expected or (chosen == Layout.NHW1 and shape[3] != 1):
        raise InvalidInputError(archive.path, f'{key} has shape {shape}, which is not {chosen}')
    if chosen == Layout.HWN:
        height, width, count = shape
    else:
        count, height, width = shape[:3]
    if num is not None and count != num:
        raise InvalidInputError(
            archive.path, f'{key} holds {count} patterns but there are {num} scan positions'
        )
    if height < 1 or width < 1:
        raise InvalidInputError(archive.path, f'{key} has empty patterns {shape}')
    info = DiffractionInfo(
        key=key, layout=chosen, source_shape=shape, dtype=member.dtype,
        domain=Domain.AMPLITUDE, domain_reason='', num_patterns=count, height=height, width=width,
    )
    decided, reason = _decide_domain(dataset, info, domain)
    logger.info('%s: %s is %s (%s)', archive.path.name, key, decided.value, reason)
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
            path, f'{key} has shape {shape} and {num} positions: the pattern axis is ambiguous '
            '(choose the layout explicitly: NHW or HWN)',
        )
    if first:
        return Layout.NHW
    if last:
        return Layout.HWN
    raise InvalidInputError(
        path, f'{key} has shape {shape} but no axis matches the {num} scan positions'
    )


def _decide_domain(
    dataset: PtychoPINNDataset, info: DiffractionInfo, explicit: Domain | None
) -> tuple[Domain, str]:
    if explicit is not None:
        return explicit, 'chosen explicitly'
    archive = dataset.archive
    if DOMAIN_KEY in archive and archive.info(DOMAIN_KEY).dtype.kind == 'U':
        value = str(archive.read(DOMAIN_KEY).reshape(()))
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
    sample = dataset._raw_block(info, 0, min(8, info.num_patterns), None)
    if sample.size and np.all(sample == np.rint(sample)) and float(sample.max()) > 1.0:
        return Domain.INTENSITY, 'diff3d holds integral values (photon counts)'
    return Domain.AMPLITUDE, 'diff3d holds non-integral floats (amplitudes)'


def blocks_for(info: DiffractionInfo, target_bytes: int = 16 * 2**20) -> int:
    """How many patterns make a block of about ``target_bytes``."""
    per_pattern = info.height * info.width * max(info.dtype.itemsize, 4)
    return max(1, min(info.num_patterns, math.floor(target_bytes / per_pattern)))
