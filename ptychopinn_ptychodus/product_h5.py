"""The Ptychodus product HDF5 (and Ptychodus's assembled-diffraction HDF5), with h5py only.

Layout as Ptychodus 1.7 reads it, plus the legacy attribute spellings that
Ptychodus <= 1.6 reads, plus PtychoPINN's ``/raw_data`` bundle, which every
Ptychodus version ignores.
"""

from __future__ import annotations

import collections
import json
import os
import select
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py

try:  # zlib-ng: the same zlib streams, about twice as fast
    from zlib_ng import zlib_ng as _zlib
except ImportError:  # pragma: no cover - optional speed-up
    import zlib as _zlib  # type: ignore[no-redef]
import numpy as np
import numpy.typing as npt

from .atomic import raise_if_interrupted
from .errors import InvalidInputError
from .geometry import ObjectGrid

Compression = Literal['none', 'gzip', 'lzf']
DEFAULT_COMPRESSION: Compression = 'gzip'
DEFAULT_GZIP_LEVEL = 4
RAW_GROUP = 'raw_data'


@dataclass(frozen=True)
class ProductMetadata:
    """Root attributes of a product (units in the names)."""

    name: str = ''
    comments: str = ''
    detector_distance_m: float = 0.0
    photon_energy_eV: float = 0.0  # noqa: N815
    probe_photon_count: float = 0.0
    exposure_time_s: float = 0.0
    mass_attenuation_m2_per_kg: float = 0.0
    tomography_angle_deg: float = 0.0


@dataclass
class Product:
    """What a product file holds, in the PtychoPINN-facing shapes."""

    metadata: ProductMetadata
    probe: npt.NDArray[Any]
    probe_pixel_width_m: float
    probe_pixel_height_m: float
    object: npt.NDArray[Any]
    grid: ObjectGrid
    position_indexes: npt.NDArray[np.int64]
    position_x_m: npt.NDArray[np.float64]
    position_y_m: npt.NDArray[np.float64]
    layer_spacing_m: npt.NDArray[np.float64] = field(
        default_factory=lambda: np.zeros(0, dtype=np.float64)
    )
    extra_attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class RawBundle:
    """The ``/raw_data`` group, read back."""

    xcoords: npt.NDArray[np.float64]
    ycoords: npt.NDArray[np.float64]
    scan_index: npt.NDArray[Any] | None
    diffraction: h5py.Dataset | None
    extras: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    metadata_json: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


def stack_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    if len(shape) != 3:
        return tuple(int(n) for n in h5py.filters.guess_chunk(shape, None, itemsize))
    count, height, width = shape
    rows = max(1, min(count, 256, (16 << 20) // max(1, height * width * itemsize)))
    return rows, min(height, 8), min(width, 8)


def dataset_options(
    compression: Compression, level: int | None, shape: tuple[int, ...], itemsize: int
) -> dict[str, Any]:
    """h5py ``create_dataset`` keywords for a pattern stack.

    Compressed stacks use small pixel tiles through many patterns (up to 256 x
    8 x 8): the shuffled byte planes of one detector pixel across patterns
    compress far better than whole patterns, a centred crop stays cheap to read,
    and a row of chunks stays under 16 MB whatever the stack size, which bounds
    the memory of the parallel writer.
    """
    if compression == 'none' or not shape or int(np.prod(shape)) == 0:
        return {}
    options: dict[str, Any] = {'chunks': stack_chunks(shape, itemsize), 'shuffle': True}
    if compression == 'gzip':
        options.update(compression='gzip', compression_opts=DEFAULT_GZIP_LEVEL if level is None else level)
    else:
        options.update(compression='lzf')
    return options


def create_h5(path: Path) -> h5py.File:
    """A new HDF5 file whose metadata cache stays small.

    libhdf5 grows its metadata cache (up to 32 MB) with the chunk index of a
    large stack; our writes only ever append, so 4 MB keeps peak memory flat
    however many chunks a stack has.
    """
    h5 = h5py.File(path, 'w')
    config = h5.id.get_mdc_config()
    config.set_initial_size = True
    config.initial_size = 2 << 20
    config.max_size = 4 << 20
    config.min_size = 1 << 20
    h5.id.set_mdc_config(config)
    return h5


def write_product(h5: h5py.File, product: Product) -> None:
    meta = product.metadata
    attrs = h5.attrs
    attrs['name'] = meta.name
    attrs['comments'] = meta.comments
    attrs['detector_object_distance_m'] = float(meta.detector_distance_m)
    attrs['photon_energy_eV'] = float(meta.photon_energy_eV)
    attrs['probe_energy_eV'] = float(meta.photon_energy_eV)  # Ptychodus <= 1.6
    attrs['probe_photon_count'] = float(meta.probe_photon_count)
    attrs['exposure_time_s'] = float(meta.exposure_time_s)
    attrs['mass_attenuation_m2_per_kg'] = float(meta.mass_attenuation_m2_per_kg)
    attrs['mass_attenuation_m2_kg'] = float(meta.mass_attenuation_m2_per_kg)  # Ptychodus <= 1.6
    attrs['tomography_angle_deg'] = float(meta.tomography_angle_deg)
    attrs['focus_object_distance_m'] = 0.0
    attrs['tilt_angle_deg'] = 0.0
    attrs['far_field'] = True
    for key, value in product.extra_attrs.items():
        attrs[key] = value

    probe = h5.create_dataset('probe', data=product.probe)
    probe.attrs['pixel_width_m'] = float(product.probe_pixel_width_m)
    probe.attrs['pixel_height_m'] = float(product.probe_pixel_height_m)
    obj = h5.create_dataset('object', data=product.object)
    grid = product.grid
    obj.attrs['center_x_m'] = float(grid.center_x_m)
    obj.attrs['center_y_m'] = float(grid.center_y_m)
    obj.attrs['pixel_width_m'] = float(grid.pixel_width_m)
    obj.attrs['pixel_height_m'] = float(grid.pixel_height_m)
    h5.create_dataset('object_layer_spacing_m', data=np.asarray(product.layer_spacing_m, np.float64))
    h5.create_dataset('probe_position_indexes', data=np.asarray(product.position_indexes, np.int64))
    h5.create_dataset('probe_position_x_m', data=np.asarray(product.position_x_m, np.float64))
    h5.create_dataset('probe_position_y_m', data=np.asarray(product.position_y_m, np.float64))
    h5.create_dataset('loss_epochs', data=np.zeros(0, dtype=np.int64))
    h5.create_dataset('loss_values', data=np.zeros(0, dtype=np.float64))


def write_raw_bundle(
    h5: h5py.File,
    *,
    xcoords: npt.NDArray[np.float64],
    ycoords: npt.NDArray[np.float64],
    scan_index: npt.NDArray[Any] | None,
    extras: dict[str, npt.NDArray[Any]],
    metadata: dict[str, Any] | None,
) -> h5py.Group:
    """``/raw_data`` minus the diffraction stack (see :func:`write_pattern_stack`)."""
    group = h5.create_group(RAW_GROUP)
    group.create_dataset('xcoords', data=xcoords)
    group.create_dataset('ycoords', data=ycoords)
    group.create_dataset(
        'scan_index', data=np.zeros(len(xcoords), np.int64) if scan_index is None else scan_index
    )
    for key, value in extras.items():
        group.create_dataset(key, data=value)
    group['probeGuess'] = h5['probe']  # hard links: one copy on disk
    group['objectGuess'] = h5['object']
    if metadata is not None:
        group.create_dataset('_metadata', data=json.dumps(metadata), dtype=h5py.string_dtype())
    return group


def write_pattern_stack(
    parent: h5py.Group,
    name: str,
    shape: tuple[int, int, int],
    dtype: np.dtype[Any],
    blocks: Iterable[tuple[int, np.ndarray]],
    *,
    compression: Compression,
    level: int | None,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> h5py.Dataset:
    """Write an (M, N, N) stack from in-order (start, block) pairs, never holding it whole.

    gzip chunks are shuffled and deflated on every core and written with
    ``write_direct_chunk``; the dataset declares the standard shuffle + deflate
    filters, so any HDF5 library decodes the result.
    """
    options = dataset_options(compression, level, shape, dtype.itemsize)
    dset = parent.create_dataset(name, shape=shape, dtype=dtype, **options)
    if compression == 'gzip' and options:
        _write_gzip_chunks(dset, blocks, options, progress, workers)
        return dset
    for start, block in blocks:
        raise_if_interrupted()
        dset[start : start + block.shape[0]] = block
        if progress is not None:
            progress(block.shape[0])
    return dset


def _deflate(data: bytes, level: int) -> bytes:
    # compressobj releases the GIL while deflating (one-shot compress() may not)
    compressor = _zlib.compressobj(level)
    return compressor.compress(data) + compressor.flush()


def _compress_row_group(
    group: np.ndarray, chunks: tuple[int, ...], level: int
) -> list[tuple[tuple[int, int], bytes]]:
    """Shuffle + deflate every chunk of one row of chunks, as HDF5's filters would."""
    _, height, width = group.shape
    rows, tile_h, tile_w = chunks
    out = []
    for y0 in range(0, height, tile_h):
        for x0 in range(0, width, tile_w):
            tile = group[:, y0 : y0 + tile_h, x0 : x0 + tile_w]
            if tile.shape != (rows, tile_h, tile_w):  # edge chunks are stored full-size
                padded = np.zeros((rows, tile_h, tile_w), dtype=tile.dtype)
                padded[: tile.shape[0], : tile.shape[1], : tile.shape[2]] = tile
                tile = padded
            planes = np.ascontiguousarray(tile).reshape(-1).view(np.uint8).reshape(-1, tile.dtype.itemsize)
            out.append(((y0, x0), _deflate(np.ascontiguousarray(planes.T).tobytes(), level)))
    return out


def _write_gzip_chunks(
    dset: h5py.Dataset,
    blocks: Iterable[tuple[int, np.ndarray]],
    options: dict[str, Any],
    progress: Callable[[int], None] | None,
    workers: int | None,
) -> None:
    chunks = tuple(int(n) for n in options['chunks'])
    rows = chunks[0]
    level = int(options['compression_opts'])
    total = int(dset.shape[0])
    workers = workers or os.cpu_count() or 1
    pending: collections.deque[tuple[int, Future[list[tuple[tuple[int, int], bytes]]]]] = collections.deque()
    carry: np.ndarray | None = None
    carry_start = 0

    def drain(limit: int) -> None:
        while len(pending) > limit:
            row, future = pending.popleft()
            for (y0, x0), payload in future.result():
                dset.id.write_direct_chunk((row, y0, x0), payload)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start, block in blocks:
            raise_if_interrupted()
            if carry is None:
                carry, carry_start = block, start
            else:
                carry = np.concatenate([carry, block])
            at_end = carry_start + carry.shape[0] == total
            usable = carry.shape[0] if at_end else carry.shape[0] // rows * rows
            for offset in range(0, usable, rows):
                group = carry[offset : offset + rows]
                future = pool.submit(_compress_row_group, group, chunks, level)
                pending.append((carry_start + offset, future))
                drain(workers)  # bounded: one row of chunks per worker in flight
            carry = carry[usable:] if usable < carry.shape[0] else None
            carry_start += usable
            if progress is not None:
                progress(block.shape[0])
        drain(0)


def write_diffraction_layout(
    h5: h5py.File,
    *,
    num_patterns: int,
    bad_pixels: npt.NDArray[np.bool_],
) -> None:
    """Indexes and bad pixels of Ptychodus's assembled-diffraction file."""
    h5.create_dataset('indexes', data=np.arange(num_patterns, dtype=np.int64))
    h5.create_dataset('bad_pixels', data=bad_pixels.astype(bool))


#: How long libhdf5 may take to walk a product's metadata in the watchdog child.
PROBE_SECONDS_VARIABLE = 'PTYCHOPINN_HDF5_PROBE_SECONDS'
DEFAULT_PROBE_SECONDS = 10.0


def _walk_metadata(path: Path) -> None:
    with h5py.File(path, 'r') as h5:
        dict(h5.attrs)

        def visit(name: str, item: Any) -> None:
            dict(item.attrs)
            if isinstance(item, h5py.Dataset):
                _ = (item.shape, item.dtype, item.chunks, item.compression)

        h5.visititems(visit)


def _single_threaded() -> bool:
    """No other Python thread exists that could hold h5py's lock across a fork.

    Native helper threads (BLAS pools) are harmless: they never call h5py.
    """
    return threading.active_count() == 1


def check_hdf5_terminates(path: Path, timeout_s: float | None = None) -> None:
    """Walk an untrusted HDF5 file's metadata in a child process first.

    Some corrupt files make libhdf5 loop forever (or crash) while reading
    attributes, inside C code that no signal can interrupt. The child takes that
    risk; the parent gives up after ``timeout_s`` and refuses the file. Only
    done where forking is safe: a single-threaded process on a POSIX system.
    """
    if not hasattr(os, 'fork') or not _single_threaded():
        return  # forking a multi-threaded process (a GUI) could deadlock the child
    if timeout_s is None:
        timeout_s = float(os.environ.get(PROBE_SECONDS_VARIABLE, DEFAULT_PROBE_SECONDS))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report 0 (walked) or 1 (raised); a crash reports nothing
        os.close(read_end)
        try:
            _walk_metadata(path)
            status = b'0'
        except BaseException:  # noqa: BLE001 - the parent reads the file itself for the message
            status = b'1'
        os.write(write_end, status)
        os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], timeout_s)
        if not ready:
            raise InvalidInputError(
                path, f'libhdf5 did not finish reading the file metadata within {timeout_s:g} s '
                '(a corrupt file can make it loop forever)'
            )
        if not os.read(read_end, 1):
            raise InvalidInputError(path, 'libhdf5 crashed while reading the file metadata (corrupt file)')
    finally:
        os.close(read_end)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def check_untrusted_h5(path: Path, *, check_terminates: bool = True) -> None:
    """Refuse what is not a regular file, then (optionally) run the libhdf5 watchdog."""
    if not path.exists():
        raise InvalidInputError(path, 'no such file')
    if path.is_dir():
        raise InvalidInputError(path, 'is a directory, not a product file')
    if not path.is_file():
        raise InvalidInputError(path, 'is not a regular file')
    if check_terminates:
        check_hdf5_terminates(path)


def read_product(
    path: str | Path, *, check_terminates: bool = False
) -> tuple[Product, RawBundle | None, h5py.File]:
    """Open a product; the caller closes the returned file (raw patterns stay lazy).

    ``check_terminates`` first walks the metadata in a watchdog child process
    (see :func:`check_hdf5_terminates`); use it for files from elsewhere in
    single-threaded programs such as the CLI.
    """
    path = Path(path)
    check_untrusted_h5(path, check_terminates=check_terminates)
    try:
        h5 = h5py.File(path, 'r')
    except (OSError, RuntimeError, ValueError) as exc:
        raise InvalidInputError(path, f'not a readable HDF5 file: {exc}') from exc
    try:
        return (*_read_open_product(path, h5), h5)
    except InvalidInputError:
        h5.close()
        raise
    except (KeyError, ValueError, TypeError, OSError, RuntimeError) as exc:
        h5.close()
        raise InvalidInputError(path, f'not a valid Ptychodus product: {exc}') from exc
    except BaseException:
        h5.close()
        raise


def _read_open_product(path: Path, h5: h5py.File) -> tuple[Product, RawBundle | None]:
    def dataset(name: str, group: h5py.Group = h5) -> np.ndarray:
        item = group.get(name)
        if not isinstance(item, h5py.Dataset):
            raise InvalidInputError(path, f'product has no dataset {name!r}')
        return item[()]

    def attr(obj: h5py.HLObject, *names: str, default: float | None = None) -> float:
        for name in names:
            if name in obj.attrs:
                return float(obj.attrs[name])
        if default is None:
            raise InvalidInputError(path, f'product lacks attribute {names[0]!r}')
        return default

    try:
        meta = ProductMetadata(
            name=_text(h5.attrs.get('name', '')),
            comments=_text(h5.attrs.get('comments', '')),
            detector_distance_m=attr(h5, 'detector_object_distance_m', default=0.0),
            photon_energy_eV=attr(h5, 'photon_energy_eV', 'probe_energy_eV', default=0.0),
            probe_photon_count=attr(h5, 'probe_photon_count', default=0.0),
            exposure_time_s=attr(h5, 'exposure_time_s', default=0.0),
            mass_attenuation_m2_per_kg=attr(
                h5, 'mass_attenuation_m2_per_kg', 'mass_attenuation_m2_kg', default=0.0
            ),
            tomography_angle_deg=attr(h5, 'tomography_angle_deg', default=0.0),
        )
        obj = dataset('object')
        obj_ds = h5['object']
        grid = ObjectGrid(
            width_px=int(obj.shape[-1]),
            height_px=int(obj.shape[-2]),
            pixel_width_m=attr(obj_ds, 'pixel_width_m'),
            pixel_height_m=attr(obj_ds, 'pixel_height_m'),
            center_x_m=attr(obj_ds, 'center_x_m'),
            center_y_m=attr(obj_ds, 'center_y_m'),
        )
        probe = dataset('probe')
        probe_ds = h5['probe']
        product = Product(
            metadata=meta,
            probe=probe,
            probe_pixel_width_m=attr(probe_ds, 'pixel_width_m', default=grid.pixel_width_m),
            probe_pixel_height_m=attr(probe_ds, 'pixel_height_m', default=grid.pixel_height_m),
            object=obj,
            grid=grid,
            position_indexes=dataset('probe_position_indexes'),
            position_x_m=dataset('probe_position_x_m').astype(np.float64),
            position_y_m=dataset('probe_position_y_m').astype(np.float64),
            layer_spacing_m=(
                dataset('object_layer_spacing_m') if 'object_layer_spacing_m' in h5 else np.zeros(0)
            ),
        )
    except (KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(path, f'not a valid Ptychodus product: {exc}') from exc
    if not (len(product.position_indexes) == len(product.position_x_m) == len(product.position_y_m)):
        raise InvalidInputError(path, 'probe position arrays have different lengths')

    group = h5.get(RAW_GROUP)
    if not isinstance(group, h5py.Group):
        return product, None
    diffraction = group.get('diffraction')
    extras = {
        key: group[key][()]
        for key in ('xcoords_start', 'ycoords_start', 'bad_pixels')
        if isinstance(group.get(key), h5py.Dataset)
    }
    metadata = group.get('_metadata')
    bundle = RawBundle(
        xcoords=dataset('xcoords', group).astype(np.float64),
        ycoords=dataset('ycoords', group).astype(np.float64),
        scan_index=dataset('scan_index', group) if 'scan_index' in group else None,
        diffraction=diffraction if isinstance(diffraction, h5py.Dataset) else None,
        extras=extras,
        metadata_json=_text(metadata[()]) if isinstance(metadata, h5py.Dataset) else None,
        attrs=dict(diffraction.attrs) if isinstance(diffraction, h5py.Dataset) else {},
    )
    return product, bundle


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode('utf-8', errors='replace')
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)
